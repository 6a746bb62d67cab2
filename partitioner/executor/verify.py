"""Verification: the plan, executed partition by partition, equals onnxruntime.

Inputs are generated when none are given (seeded): token ids within the range
of the table they index, attention masks of ones, position ids counting up
from the cached length, and floats from a normal distribution. onnxruntime
runs the whole model; the NumPy executor runs the plan. Outputs are compared
with tolerances chosen per dtype. On a mismatch the tensors crossing partition
boundaries, and those a tensor-parallel group's collectives made whole, are
compared with onnxruntime's own intermediate values (added as extra graph
outputs) to name the first partition, and tensor, that diverges.

Errors are measured two ways: ``max_abs`` = max |ours - ort| and ``max_rel`` =
max |ours - ort| / max |ort| (relative to the output's scale, so values near
zero do not blow it up). A tensor matches when ``max_abs <= atol + rtol *
max |ort|``: rounding differences from a different summation order grow with
the magnitudes summed, not with each element's own size, so an element-wise
``allclose`` fails on logits near zero for no fault. NaNs must match NaNs, and
integer and boolean outputs must be equal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from partitioner.executor.errors import FeedError
from partitioner.executor.graph_run import PlanRun, run_plan
from partitioner.executor.reference import run_reference
from partitioner.executor.weights import WeightStore
from partitioner.plan import Plan
from passes.ir import Graph

__all__ = [
    "Tolerance",
    "TOLERANCES",
    "Comparison",
    "VerifyReport",
    "make_inputs",
    "check_inputs",
    "verify_plan",
    "compare_output",
]


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float


# Half precision rounds at ~1e-3 (float16) and ~8e-3 (bfloat16) per op; float32
# kernels differ from onnxruntime's in summation order only.
TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(1e-7, 1e-9),
    "float32": Tolerance(1e-4, 1e-5),
    "float16": Tolerance(1e-2, 1e-3),
    "bfloat16": Tolerance(5e-2, 1e-2),
}
EXACT = Tolerance(0.0, 0.0)


@dataclass(frozen=True)
class Comparison:
    name: str
    dtype: str
    max_abs: float
    max_rel: float
    tolerance: Tolerance
    ok: bool


@dataclass(frozen=True)
class VerifyReport:
    outputs: tuple[Comparison, ...]
    partitions: tuple  # PartitionRun
    first_divergent_partition: int | None
    divergent_tensor: str | None
    ok: bool
    reference: str = "onnxruntime"
    over_memory: tuple[int, ...] = ()  # partitions that held more than their plan gives them

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "reference": self.reference,
            "outputs": [
                {
                    "name": c.name,
                    "dtype": c.dtype,
                    "max_abs": c.max_abs,
                    "max_rel": c.max_rel,
                    "rtol": c.tolerance.rtol,
                    "atol": c.tolerance.atol,
                    "ok": c.ok,
                }
                for c in self.outputs
            ],
            "partitions": [
                {"id": p.id, "peak_bytes": p.peak_bytes, "planned_bytes": p.planned_bytes}
                for p in self.partitions
            ],
            "over_memory": list(self.over_memory),
            "first_divergent_partition": self.first_divergent_partition,
            "divergent_tensor": self.divergent_tensor,
        }


def _index_range(graph: Graph, name: str) -> int | None:
    """The size of the table an integer input indexes (Gather's data dim), if it does."""
    for c in graph.tensors[name].consumers:
        node = graph.nodes[c]
        if node.op_type == "Gather" and len(node.inputs) > 1 and node.inputs[1] == name:
            data = graph.tensors.get(node.inputs[0])
            if data is not None and data.is_static and data.shape:
                axis = int(node.attributes.get("axis", 0))
                return int(data.shape[axis])  # type: ignore[arg-type]
    return None


def make_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid, seeded inputs for every runtime graph input."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    past = int(graph.dims.get("past", 0))
    for name in graph.inputs:
        t = graph.tensors[name]
        shape = tuple(int(d) for d in t.shape)  # type: ignore[union-attr]
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))
        lowered = name.lower()
        if dtype.kind == "b":
            feeds[name] = np.ones(shape, dtype)
        elif dtype.kind in "iu":
            if "mask" in lowered:
                feeds[name] = np.ones(shape, dtype)
            elif "position" in lowered and shape:
                feeds[name] = np.broadcast_to(np.arange(shape[-1]) + past, shape).astype(dtype)
            else:
                high = _index_range(graph, name) or 2
                feeds[name] = rng.integers(0, high, size=shape).astype(dtype)
        elif dtype.kind == "c":
            # complex inputs get an imaginary part too (a real draw would test half the data)
            feeds[name] = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(
                dtype
            )
        else:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _check_index_range(graph: Graph, name: str, array: np.ndarray, source: str) -> None:
    """Token ids must index their table: Gather accepts -rows..rows-1."""
    if array.dtype.kind not in "iu" or array.size == 0:
        return
    rows = _index_range(graph, name)
    if rows is None:
        return
    low, high = int(array.min()), int(array.max())
    if low < -rows or high >= rows:
        bad = high if high >= rows else low
        raise FeedError(
            f"{source}: input {name!r} holds {bad:,}, outside the {rows:,} rows of the table it "
            f"indexes (valid: {-rows:,}..{rows - 1:,})"
        )


def check_inputs(graph: Graph, feeds: Mapping[str, np.ndarray], source: str) -> None:
    """Every runtime input present with the right shape and dtype (FeedError otherwise)."""
    for name in graph.inputs:
        t = graph.tensors[name]
        if name not in feeds:
            raise FeedError(
                f"{source} has no array named {name!r}; the model's inputs are: {', '.join(graph.inputs)}"
            )
        array = feeds[name]
        want_dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))
        if array.dtype != want_dtype:
            raise FeedError(
                f"{source}: input {name!r} is {array.dtype}, the model wants {want_dtype}"
            )
        if tuple(array.shape) != tuple(t.shape):  # type: ignore[arg-type]
            raise FeedError(
                f"{source}: input {name!r} has shape {list(array.shape)}, the model (with its dims) wants {list(t.shape)}"  # type: ignore[arg-type]
            )
        _check_index_range(graph, name, array, source)
    unknown = sorted(set(feeds) - set(graph.inputs))
    if unknown:
        raise FeedError(
            f"{source}: {unknown[0]!r} is not a model input; the inputs are: {', '.join(graph.inputs)}"
        )


def compare_output(
    name: str, ours: Any, ref: Any, override: Tolerance | None, widened: bool = False
) -> Comparison:
    ours_a, ref_a = np.asarray(ours), np.asarray(ref)
    # Against a float32 copy of a bfloat16 model, the model's own dtype sets the tolerance.
    dtype = ours_a.dtype.name if widened else ref_a.dtype.name
    kind = ours_a.dtype.kind if widened else ref_a.dtype.kind
    tol = override or (
        TOLERANCES.get(dtype, EXACT) if kind in "fc" or dtype == "bfloat16" else EXACT
    )
    a = ours_a.astype(np.float64)
    b = ref_a.astype(np.float64)
    if a.shape != b.shape:
        return Comparison(name, dtype, float("inf"), float("inf"), tol, False)
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.nanmax(np.abs(b))) if b.size and not np.all(np.isnan(b)) else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    nan_mismatch = bool(np.any(np.isnan(a) != np.isnan(b)))
    ok = not nan_mismatch and max_abs <= tol.atol + tol.rtol * scale
    return Comparison(name, dtype, max_abs, max_rel, tol, ok)


def _tensor_type(graph: Graph, name: str) -> onnx.TypeProto:
    t = graph.tensors[name]
    return onnx.helper.make_tensor_type_proto(t.elem_type, list(t.shape))  # type: ignore[arg-type]


def verify_plan(
    graph: Graph,
    plan: Plan,
    feeds: Mapping[str, np.ndarray],
    *,
    tolerance: Tolerance | None = None,
) -> VerifyReport:
    """Run ``plan`` with the executor and the whole model with onnxruntime; compare."""
    assert graph.path is not None
    # onnxruntime first: a model it refuses (an op fed a type outside its schema, say
    # complex64 into Add) is reported in its words, before our kernels run it anyway.
    reference = run_reference(graph.path, feeds)
    weights = WeightStore(graph)
    ours: PlanRun = run_plan(graph, plan, feeds, weights)
    widened = reference.float32_copy
    comparisons = tuple(
        compare_output(name, ours.outputs[name], reference.outputs[name], tolerance, widened)
        for name in graph.outputs
    )
    ok = all(c.ok for c in comparisons)
    first, tensor = None, None
    over = tuple(r.id for r in ours.partitions if r.peak_bytes > r.planned_bytes)
    if not ok:
        failing = [c.name for c in comparisons if not c.ok]
        first, tensor = _first_divergence(graph, plan, feeds, ours, tolerance, failing)
    source = REFERENCE_FLOAT32 if widened else "onnxruntime"
    return VerifyReport(comparisons, ours.partitions, first, tensor, ok and not over, source, over)


REFERENCE_FLOAT32 = "onnxruntime on a float32 copy (its CPU provider has no bfloat16 kernels)"


def _boundary_checks(graph: Graph, plan: Plan, ours: PlanRun) -> list[tuple[int, str, Any]]:
    """``(partition, tensor, our value)`` of every value worth comparing, in the order
    they were made: each partition's collectives (in node order), then what it sends."""
    position = {p.id: k for k, p in enumerate(plan.partitions)}
    owner = {n: p.id for p in plan.partitions for n in p.nodes}
    checks: list[tuple[tuple[int, float], int, str, Any]] = [
        ((position[t.src], math.inf), t.src, t.tensor, ours.transferred[t.tensor])
        for t in plan.transfers
        if t.src >= 0 and t.tensor in ours.transferred
    ]
    for name, value in ours.collected.items():
        producer = graph.tensors[name].producer
        if producer in owner:
            checks.append(((position[owner[producer]], producer), owner[producer], name, value))
    checks.sort(key=lambda check: check[0])
    return [(pid, name, value) for _, pid, name, value in checks]


def _first_divergence(
    graph: Graph,
    plan: Plan,
    feeds: Mapping[str, np.ndarray],
    ours: PlanRun,
    tolerance: Tolerance | None,
    failing_outputs: list[str],
) -> tuple[int | None, str | None]:
    """The first partition (in plan order) one of whose collectives or outgoing tensors
    differs from onnxruntime's, and that tensor."""
    checks = _boundary_checks(graph, plan, ours)
    names = sorted({name for _, name, _ in checks})
    run = run_reference(graph.path, feeds, [(n, _tensor_type(graph, n)) for n in names])  # type: ignore[arg-type]
    reference, widened = run.outputs, run.float32_copy
    for pid, name, value in checks:
        if (
            name in reference
            and not compare_output(name, value, reference[name], tolerance, widened).ok
        ):
            return pid, name
    # Boundaries agree: the divergence is inside the partition that makes the output.
    for name in failing_outputs:
        producer = graph.tensors[name].producer
        if producer is not None:
            for p in plan.partitions:
                if producer in p.nodes:
                    return p.id, name
    return None, None
