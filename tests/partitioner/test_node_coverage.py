"""ONNX backend node tests for the core (non-NN) kernels: each op passes >= 95 %.

The ops checked are those whose kernels live outside ``nn_*`` modules (the NN
family is tested by its own suite). Every case of those ops runs, their
``_expanded`` function-body variants too; unsupported cases (an op or opset
without a kernel) are not counted. Loading the ~1900 cases takes a few seconds.
"""

from __future__ import annotations

import pytest

from partitioner.executor.conformance import (
    EXPANDED,
    CaseResult,
    load_node_cases,
    run_cases,
    summarize,
)
from partitioner.executor.registry import lookup, registered_ops

MIN_PASS_RATE = 0.95
# A handful of ops were checked case by case; more must never be silently lost.
MIN_CORE_OPS = 120


def _core_ops() -> set[str]:
    ops = set()
    for domain, op in registered_ops():
        registration = lookup(op, domain, 10**6)
        if registration is not None and ".kernels.nn_" not in registration.fn.__module__:
            ops.add(f"{domain}::{op}" if domain else op)
    return ops


@pytest.fixture(scope="module")
def core_results() -> list[CaseResult]:
    return run_cases(load_node_cases(), ops=_core_ops(), timeout_s=20.0)


def test_core_ops_are_many() -> None:
    assert len(_core_ops()) >= MIN_CORE_OPS


def test_every_core_op_passes_95_percent(core_results: list[CaseResult]) -> None:
    core = _core_ops()
    low = {
        row.op: f"{row.passed}/{row.supported}"
        for row in summarize(core_results)
        if row.op.removesuffix(EXPANDED) in core
        and row.supported
        and row.passed < MIN_PASS_RATE * row.supported
    }
    failures = [f"{r.name}: {r.error}" for r in core_results if r.status == "failed"]
    assert not low, f"ops below {MIN_PASS_RATE:.0%}: {low}; failing cases: {failures[:20]}"


def test_core_ops_are_exercised(core_results: list[CaseResult]) -> None:
    # Each core op with backend cases has at least one supported (run) case.
    rows = {r.op: r for r in summarize(core_results)}
    unexercised = [op for op, row in rows.items() if EXPANDED not in op and row.supported == 0]
    assert not unexercised
    assert sum(r.status == "passed" for r in core_results) >= 800
