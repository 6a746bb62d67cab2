"""Run ONNX's backend node test cases through the NumPy executor.

The cases come from ``onnx.backend.test.loader.load_model_tests(kind="node")``:
each is a small model (one node, or an ``_expanded`` function body) built
in-process by the installed onnx, with inputs, expected outputs and tolerances.
Outputs are compared with the backend runner's own rules
(``Runner.assert_similar_outputs``: shape, dtype, ``assert_allclose`` with NaNs
equal, element-wise for sequences; bfloat16 gets two ULPs), plus ``None`` for an
empty optional. A case whose model uses an op without a kernel is
"unsupported", not failed.
"""

from __future__ import annotations

import signal
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from partitioner.executor.registry import registered_ops
from partitioner.executor.runtime import missing_kernels, run_model

__all__ = [
    "CaseResult",
    "OpCoverage",
    "load_node_cases",
    "case_op",
    "run_case",
    "run_cases",
    "summarize",
    "kernel_ops",
]

EXPANDED = " (expanded)"


@dataclass(frozen=True)
class CaseResult:
    """One node test case run.

    Attributes:
        name: the case name (``test_add_bcast``).
        op: the op under test; ``"Op (expanded)"`` for a function-body case.
        status: "passed", "failed" or "unsupported".
        error: first line of the failure or the missing op(s); "" when passed.
        wall_s: seconds spent running and comparing.
    """

    name: str
    op: str
    status: str
    error: str
    wall_s: float


@dataclass(frozen=True)
class OpCoverage:
    """Per-op tally. ``pass_rate`` is passed / supported (None when nothing is supported)."""

    op: str
    cases: int
    supported: int
    passed: int

    @property
    def failed(self) -> int:
        return self.supported - self.passed

    @property
    def unsupported(self) -> int:
        return self.cases - self.supported

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.supported if self.supported else None


def load_node_cases() -> list[Any]:
    """Every backend node test case of the installed onnx (about 1900; a few seconds)."""
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return load_model_tests(kind="node")


def _op_label(node: onnx.NodeProto) -> str:
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    return f"{domain}::{node.op_type}" if domain else node.op_type


def case_op(case: Any, single_node_ops: dict[str, str]) -> str:
    """The op a case tests: its node's op, or its base case's op plus " (expanded)"."""
    nodes = case.model.graph.node
    if "_expanded" in case.name:
        base = case.name.split("_expanded")[0]
        if base in single_node_ops:
            return single_node_ops[base] + EXPANDED
    return _op_label(nodes[0]) if len(nodes) == 1 else "<multi-node>"


def _single_node_ops(cases: Iterable[Any]) -> dict[str, str]:
    return {c.name: _op_label(c.model.graph.node[0]) for c in cases if len(c.model.graph.node) == 1}


def _as_value(item: Any) -> Any:
    if isinstance(item, onnx.TensorProto):
        return numpy_helper.to_array(item)
    if isinstance(item, list):
        return [_as_value(x) for x in item]
    return item


class _CaseTimeout(Exception):
    """A case ran past its time limit."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (SIGALRM; main thread only, else no limit)."""
    try:
        previous = signal.signal(signal.SIGALRM, _raise_timeout)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _raise_timeout(*_: Any) -> None:
    raise _CaseTimeout


def _compare(expected: Sequence[Any], actual: Sequence[Any], rtol: float, atol: float) -> None:
    from onnx.backend.test.runner import Runner

    if len(expected) != len(actual):
        raise AssertionError(f"{len(actual)} values, expected {len(expected)}")
    for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if want is None or got is None:
            if want is not got:
                raise AssertionError(f"value {i}: got {type(got).__name__}, expected {want!r}")
        elif isinstance(want, list):
            # The runner's own recursion treats each array of a sequence as a
            # sequence of rows (and fails on 0-d items), so recurse here.
            if not isinstance(got, list):
                raise AssertionError(f"value {i}: got {type(got).__name__}, expected a sequence")
            _compare(want, got, rtol, atol)
        else:
            Runner.assert_similar_outputs([want], [got], rtol=rtol, atol=atol)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def run_case(case: Any, op: str, *, timeout_s: float = 10.0) -> CaseResult:
    """Run one case's data sets and compare; never raises for a kernel or compare failure."""
    model = case.model
    opsets = {d.domain: d.version for d in model.opset_import}
    start = time.perf_counter()
    missing = missing_kernels(model.graph.node, opsets)
    if missing:
        ops = ", ".join(sorted({o for _, o in missing}))
        return CaseResult(case.name, op, "unsupported", f"no kernel: {ops}", 0.0)
    initialized = {t.name for t in model.graph.initializer}
    input_names = [v.name for v in model.graph.input if v.name not in initialized]
    try:
        with _time_limit(timeout_s), warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for inputs, expected in case.data_sets:
                feeds = dict(zip(input_names, (_as_value(x) for x in inputs), strict=False))
                outputs = run_model(model, feeds)
                _compare(
                    [_as_value(x) for x in expected], list(outputs.values()), case.rtol, case.atol
                )
    except _CaseTimeout:
        return CaseResult(case.name, op, "failed", f"timeout after {timeout_s} s", timeout_s)
    except Exception as error:  # a failing case is data for the table, not a crash
        return CaseResult(case.name, op, "failed", _first_line(error), time.perf_counter() - start)
    return CaseResult(case.name, op, "passed", "", time.perf_counter() - start)


def run_cases(
    cases: Sequence[Any], *, ops: Iterable[str] | None = None, timeout_s: float = 10.0
) -> list[CaseResult]:
    """Run every case (or those whose op, expanded or not, is in ``ops``)."""
    wanted = None if ops is None else set(ops)
    single = _single_node_ops(cases)
    results = []
    for case in cases:
        op = case_op(case, single)
        if wanted is not None and op.removesuffix(EXPANDED) not in wanted:
            continue
        results.append(run_case(case, op, timeout_s=timeout_s))
    return results


def summarize(results: Iterable[CaseResult]) -> list[OpCoverage]:
    """Per-op tallies, sorted by op name."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for result in results:
        tally = counts[result.op]
        tally[0] += 1
        tally[1] += result.status != "unsupported"
        tally[2] += result.status == "passed"
    return [OpCoverage(op, *counts[op]) for op in sorted(counts)]


def kernel_ops() -> set[str]:
    """Op labels (``"Op"`` or ``"domain::Op"``) with at least one registered kernel."""
    return {f"{d}::{op}" if d else op for d, op in registered_ops()}


def agrees_with_onnxruntime(case: Any) -> bool | None:
    """For a failing case: do our outputs match onnxruntime's (None if it cannot run it)?

    A few stored expectations disagree with onnxruntime (e.g. Resize with
    fractional output lengths); the executor follows onnxruntime, which
    `partition verify` compares against, and this says so case by case.
    """
    import onnxruntime as ort

    model = case.model
    initialized = {t.name for t in model.graph.initializer}
    input_names = [v.name for v in model.graph.input if v.name not in initialized]
    try:
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
    except Exception:  # noqa: BLE001 - onnxruntime lacks some ops; then there is no arbiter
        return None
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for inputs, _ in case.data_sets:
                feeds = dict(zip(input_names, (_as_value(x) for x in inputs), strict=False))
                reference = session.run(None, feeds)
                ours = list(run_model(model, feeds).values())
                _compare(reference, ours, case.rtol, case.atol)
    except Exception:  # noqa: BLE001 - any difference means "does not agree"
        return False
    return True
