"""Fuzz `validate`, `simulate` and `verify` with broken plans, GPU and wafer.

JSON edits (see `tests.fuzz.plan_mutations`) and byte damage of the file. A plan
is user input: whatever it says, each command exits 0, 1 (the plan breaks the
contract) or 2 (bad input, one line), and writes nothing.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.cases import plan_commands, plan_text_case
from tests.fuzz.harness import FUZZ, run_checked
from tests.fuzz.mutations import apply_bytes, byte_mutations
from tests.fuzz.plan_mutations import apply_plan, plan_mutations, serialize


@pytest.mark.parametrize("kind", ["gpu", "wafer"])
@settings(FUZZ, max_examples=250)
@given(data=st.data())
def test_plan_json_mutations(corpus, kind, data):
    ops = data.draw(plan_mutations(corpus["plans"][kind][1]), label="ops")
    allow_nan = data.draw(st.booleans(), label="allow_nan")
    plan_text_case(corpus, serialize(apply_plan(corpus["plans"][kind][1], ops), allow_nan))


@pytest.mark.parametrize("kind", ["gpu", "wafer"])
@settings(FUZZ, max_examples=50)
@given(data=st.data())
def test_plan_byte_mutations(corpus, kind, data):
    """Byte-level damage to the plan file: truncation, invalid UTF-8, stray bytes."""
    text = corpus["plans"][kind][0]
    mutation = data.draw(byte_mutations(len(text)), label="mutation")
    plan_text_case(corpus, apply_bytes(text, mutation))


def test_unmutated_plans_pass(corpus):
    """The baseline: the fixture's plans pass every command the fuzzer runs."""
    for kind in corpus["plans"]:
        plan_text_case(corpus, serialize(corpus["plans"][kind][1], False))
    for argv in plan_commands(corpus["plan"], corpus["model"]):
        assert run_checked(*argv).code == 0, argv
