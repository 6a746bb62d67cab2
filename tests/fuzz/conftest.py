"""The fuzzers' corpus: a small model, a GPU plan and a wafer plan, built once per module."""

from __future__ import annotations

import pytest

from tests.fuzz.harness import Corpus, build_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("fuzz"))
