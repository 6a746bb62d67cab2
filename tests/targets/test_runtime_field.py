"""The target's ``runtime`` field: how the serving runtime executes ops."""

from __future__ import annotations

import pytest

from targets.errors import TargetError
from targets.loader import load_target
from targets.presets import get_preset


def test_gpu_presets_run_fused_and_files_default_to_eager(tmp_path):
    assert get_preset("h100x8").runtime == "fused"
    path = tmp_path / "t.yaml"
    path.write_text("extends: h100x8\nruntime: eager\n")
    eager = load_target(path)
    assert eager.runtime == "eager" and "runtime" not in eager.to_dict()  # older specs' hash
    assert get_preset("h100x8").to_dict()["runtime"] == "fused"


def test_an_unknown_runtime_is_refused(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("extends: h100x8\nruntime: turbo\n")
    with pytest.raises(TargetError, match="runtime"):
        load_target(path)
