"""Runs ONNX backend node test cases of one op straight through our NN kernels (no runner).

Used by ``test_kernels_nn_nodecases.py`` and runnable as a script to print pass rates:
``python -m tests.partitioner.nn_nodecase_harness [Op ...]``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from types import SimpleNamespace

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.backend.test.case.test_case import TestCase

from partitioner.executor import registry

__all__ = [
    "CaseResult",
    "ORT_SIDED_CASES",
    "import_nn_kernels",
    "node_cases",
    "run_case",
    "pass_rates",
]

# Cases whose stored expectation contradicts onnxruntime (our verification baseline): these are
# checked against onnxruntime's output instead of the stored one. Case name -> why.
ORT_SIDED_CASES = {
    "test_resize_downsample_scales_linear_align_corners": (
        "ONNX reference uses the fractional in*scale as length_resized; the spec text and "
        "onnxruntime use the integer output length"
    ),
    "test_resize_downsample_scales_cubic_align_corners": "same as the linear align_corners case",
}


def import_nn_kernels() -> None:
    """Import every ``partitioner.executor.kernels.nn_*`` module so its kernels register."""
    package = importlib.import_module("partitioner.executor.kernels")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("nn_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


@cache
def _all_cases() -> tuple:
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(load_model_tests(kind="node"))


def node_cases(op_types: Iterable[str]) -> dict[str, list]:
    """Single-node backend test cases of the default domain, grouped by op type."""
    wanted = set(op_types)
    grouped: dict[str, list] = defaultdict(list)
    for case in _all_cases():
        nodes = case.model.graph.node
        if len(nodes) == 1 and nodes[0].domain in ("", "ai.onnx") and nodes[0].op_type in wanted:
            grouped[nodes[0].op_type].append(case)
    return grouped


def _decode(attr: onnx.AttributeProto) -> object:
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    return list(value) if isinstance(value, list) else value


def _attributes(node: onnx.NodeProto, opset: int) -> dict:
    schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    attrs = {
        name: _decode(a.default_value)
        for name, a in schema.attributes.items()
        if a.default_value.name
    }
    attrs.update({a.name: _decode(a) for a in node.attribute})
    return attrs


@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    message: str


def _onnxruntime_outputs(model: onnx.ModelProto, inputs: list) -> list:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: v for i, v in zip(model.graph.input, inputs, strict=False)}
    return session.run(None, feeds)


def run_case(case: TestCase) -> CaseResult:
    """Run one single-node case through the registered kernel and compare every output.

    Cases in `ORT_SIDED_CASES` are compared with onnxruntime's outputs, not the stored ones.
    """
    model = case.model
    node = model.graph.node[0]
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    reg = registry.lookup(node.op_type, node.domain, opset)
    if reg is None:
        return CaseResult(case.name, False, f"no kernel for {node.op_type} at opset {opset}")
    attrs = _attributes(node, opset)
    graph_inputs = [i.name for i in model.graph.input]
    graph_outputs = [o.name for o in model.graph.output]
    for inputs, expected in case.data_sets:
        if case.name in ORT_SIDED_CASES:
            expected = _onnxruntime_outputs(model, inputs)
        feeds = dict(zip(graph_inputs, inputs, strict=False))
        args = [feeds[name] if name else None for name in node.input]
        context = {}
        if reg.needs_context:  # what a runner's KernelContext would say about this node
            context["ctx"] = SimpleNamespace(
                opset=opset, run_subgraph=None, outer_values={}, num_outputs=len(node.output)
            )
        try:
            with np.errstate(all="ignore"):
                results = reg.fn(*args, **attrs, **context)
        except Exception as exc:  # noqa: BLE001 - a failing case is a result, not a crash
            return CaseResult(case.name, False, f"{type(exc).__name__}: {exc}")
        produced = dict(zip(node.output, results, strict=False))
        for name, want in zip(graph_outputs, expected, strict=True):
            got = np.asarray(produced.get(name))
            want = np.asarray(want)
            if got.dtype != want.dtype or got.shape != want.shape:
                return CaseResult(
                    case.name,
                    False,
                    f"{name}: got {got.dtype}{got.shape} want {want.dtype}{want.shape}",
                )
            try:
                if want.dtype.kind in "fc" or want.dtype.name == "bfloat16":
                    np.testing.assert_allclose(
                        got.astype(np.float64),
                        want.astype(np.float64),
                        rtol=case.rtol,
                        atol=case.atol,
                    )
                else:
                    np.testing.assert_array_equal(got, want)
            except AssertionError as exc:
                return CaseResult(case.name, False, f"{name}: {str(exc).strip().splitlines()[-4:]}")
    return CaseResult(case.name, True, "")


def pass_rates(op_types: Iterable[str]) -> dict[str, list[CaseResult]]:
    import_nn_kernels()
    grouped = node_cases(op_types)
    return {op: [run_case(c) for c in grouped.get(op, [])] for op in sorted(set(op_types))}


def main(argv: list[str]) -> int:
    from tests.partitioner.test_kernels_nn_nodecases import CLAIMED_OPS

    ops = argv or sorted(CLAIMED_OPS)
    verbose = bool(argv)
    total = passed = 0
    for op, results in pass_rates(ops).items():
        n_ok = sum(r.passed for r in results)
        total += len(results)
        passed += n_ok
        rate = n_ok / len(results) if results else float("nan")
        print(f"{op:28s} {n_ok:3d}/{len(results):3d}  {rate:6.1%}")
        for r in results:
            if not r.passed and (verbose or len(results) < 30):
                print(f"    FAIL {r.name}: {r.message[:300]}")
    print(f"{'TOTAL':28s} {passed:3d}/{total:3d}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
