"""Micro-benchmarks of this machine's CPU through onnxruntime, as a `partition run` rank runs.

Each figure is the median of repeated runs after one warm-up, with the
intra-op thread count a rank uses (one by default):

- GEMM: float32 (and float16 where onnxruntime's CPU provider runs it) chains
  of MatMuls at shapes transformer layers use, the weights initializers as in a
  stage's model and too many for the cache, as a stage's are; the best
  shape's rate is the achieved peak;
- stream: an elementwise Add over 64 MB arrays (two reads, one write);
- per-op overhead: a chain of small ops of a transformer's kinds, total time over
  the kernels onnxruntime runs for it (its optimiser fuses some of the chain);
- per-step overhead: one ``session.run`` of a one-op model, the fixed cost a
  stage pays per step whatever it computes (`step_model` builds that model,
  which the link workers also time while ranks pass messages).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from targets.optime import OpTime

__all__ = [
    "Measured",
    "GEMM_SHAPES",
    "gemm_rates",
    "stream_rate",
    "per_op_overhead",
    "step_overhead",
    "step_model",
    "STEP_ELEMENTS",
    "median_s",
]

# (M, K, N): a decode step's projection (a few tokens), a prefill MLP, a square block
GEMM_SHAPES: tuple[tuple[int, int, int], ...] = (
    (8, 4096, 4096),
    (64, 768, 3072),
    (512, 1024, 1024),
)
STREAM_ELEMENTS = 1 << 24  # 64 MB of float32 per array: far past the caches
CHAIN_OPS = 200
STEP_ELEMENTS = 64  # the one-op step model's float32 input and output
DEFAULT_CACHE_BYTES = 32 << 20  # a server CPU's L3, where the OS does not tell
SECONDS_PER_SHAPE = 0.5  # timing budget of one GEMM shape


@dataclass(frozen=True)
class Measured:
    """One calibrated figure and how it was measured (written beside it in the target)."""

    value: float
    how: str


def median_s(run: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_model() -> onnx.GraphProto:
    """One Add over `STEP_ELEMENTS` floats: a step with next to nothing to compute."""
    f = TensorProto.FLOAT
    return helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])], "step",
        [helper.make_tensor_value_info("x", f, [STEP_ELEMENTS])],
        [helper.make_tensor_value_info("y", f, [STEP_ELEMENTS])],
    )  # fmt: skip


def session(graph: onnx.GraphProto, threads: int, optimized_path: str | None = None) -> Any:
    """An onnxruntime CPU session of ``graph`` with ``threads`` intra-op threads; with
    ``optimized_path``, onnxruntime also writes the graph it runs there."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if optimized_path is not None:
        options.optimized_model_filepath = optimized_path
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def kernels_run(graph: onnx.GraphProto, threads: int) -> tuple[Any, int]:
    """A session of ``graph`` and how many kernels it runs: onnxruntime's optimiser fuses
    and removes nodes (the per-op chain's 198 nodes run as 99 kernels: a scalar Mul and
    the Transposes go into FusedMatMul and Softmax), so an overhead per kernel must be
    divided by what runs, not by what the graph declares."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "optimized.onnx")
        run = session(graph, threads, path)
        return run, len(onnx.load(path, load_external_data=False).graph.node)


def cache_bytes() -> int:
    """This CPU's last-level cache, or `DEFAULT_CACHE_BYTES` where the OS does not say."""
    try:
        size = os.sysconf("SC_LEVEL3_CACHE_SIZE") or os.sysconf("SC_LEVEL2_CACHE_SIZE")
    except (ValueError, OSError):  # not a name this OS knows
        size = 0
    return size if size > 0 else DEFAULT_CACHE_BYTES


def _gemm_chain(m: int, k: int, n: int, dtype: np.dtype) -> tuple[onnx.GraphProto, int]:
    """MatMuls ``[m, k] @ [k, n] @ [n, k] ...`` with distinct initializer weights, twice the
    cache in all: a stage's weights stream from memory, and the same weight timed over and
    over from the cache runs 5-15 % faster than a real stage's GEMMs (measured side by side).
    Distinct in value too: weights of one value everywhere ran as if cached (8 x 768 x 768:
    74.5 against 50.8 GFLOP/s; 1 x 768 x 768: 26.9 against 11.2). Each is uniform with
    variance 1 / its input width, so the chain keeps its activations' scale.
    Returns the graph and its FLOPs."""
    kind = helper.np_dtype_to_tensor_dtype(dtype)
    pairs = max(1, -(-2 * cache_bytes() // (2 * k * n * dtype.itemsize)))
    nodes, weights, x = [], [], "x0"
    rng = np.random.default_rng(0)
    for i in range(pairs):
        for name, shape in ((f"up{i}", (k, n)), (f"down{i}", (n, k))):
            half_width = np.sqrt(3.0 / shape[0])  # uniform on ±this: variance 1 / fan-in
            value = rng.uniform(-half_width, half_width, shape).astype(dtype)
            weights.append(numpy_helper.from_array(value, name))
            nodes.append(helper.make_node("MatMul", [x, name], [f"{name}_out"]))
            x = f"{name}_out"
    graph = helper.make_graph(
        nodes, "gemm", [helper.make_tensor_value_info("x0", kind, [m, k])],
        [helper.make_tensor_value_info(x, kind, [m, k])], weights,
    )  # fmt: skip
    return graph, 2 * 2 * m * k * n * pairs


def _gemm_rate(m: int, k: int, n: int, dtype: np.dtype, threads: int, repeats: int) -> float:
    """FLOP/s of a `_gemm_chain`, the weights initializers as in a stage's model (which
    onnxruntime pre-packs: up to 2x faster than weights fed per run). Fewer repeats than
    ``repeats`` where one run is long, so each shape times for about `SECONDS_PER_SHAPE`."""
    graph, flops = _gemm_chain(m, k, n, dtype)
    run = session(graph, threads)
    feeds = {"x0": np.random.default_rng(1).random((m, k)).astype(dtype)}
    start = time.perf_counter()
    run.run(None, feeds)
    once_s = time.perf_counter() - start
    repeats = max(3, min(repeats, int(SECONDS_PER_SHAPE / max(once_s, 1e-9))))
    return flops / median_s(lambda: run.run(None, feeds), repeats)


def gemm_rates(
    threads: int, repeats: int = 15, shapes: Sequence[tuple[int, int, int]] = GEMM_SHAPES
) -> dict[str, Measured]:
    """Achieved MatMul FLOP/s per dtype: the best of ``shapes`` (dtypes onnxruntime cannot
    run on this CPU are left out)."""
    out = {}
    for dtype in (np.dtype(np.float32), np.dtype(np.float16)):
        try:
            rates = {s: _gemm_rate(*s, dtype, threads, repeats) for s in shapes}
        except Exception:  # onnxruntime has no kernel for this dtype here  # noqa: BLE001
            continue
        (m, k, n), best = max(rates.items(), key=lambda item: item[1])
        listed = ", ".join(f"{a}x{b}x{c} {r / 1e9:.1f}" for (a, b, c), r in rates.items())
        out[dtype.name] = Measured(
            best,
            f"onnxruntime CPU MatMul chains {dtype.name}, weights initializers twice the "
            f"{cache_bytes() >> 20} MiB cache, {threads} thread(s), median; "
            f"best of GFLOP/s at MxKxN: {listed}",
        )
    return out


#: The GEMM that tells whether compute hides its memory traffic: decode-shaped (8 rows),
#: its distinct weights past the cache, neither bound at a roofline's max.
OVERLAP_SHAPE = (8, 2048, 2048)


def overlaps(measured_s: float, compute_s: float, memory_s: float) -> bool:
    """Whether ``measured_s`` is nearer the cost model's time with compute and memory
    overlapped (the roofline's max) than in turn (their sum); a tie counts as overlapping,
    the GPU's and the default's way."""
    both, in_turn = (OpTime(compute_s, memory_s, 0.0, o).total_s for o in (True, False))
    return abs(measured_s - both) <= abs(measured_s - in_turn)


def compute_memory_overlap(
    threads: int, peak_flops_per_s: float, bandwidth_bytes_per_s: float, repeats: int = 9
) -> Measured:
    """Whether a GEMM's arithmetic hides its weights' stream on this CPU (`overlaps`): a
    float32 MatMul chain at `OVERLAP_SHAPE`, timed against the two models priced with
    the peak and bandwidth just measured."""
    m, k, n = OVERLAP_SHAPE
    flops = 2 * m * k * n
    measured_s = flops / _gemm_rate(m, k, n, np.dtype(np.float32), threads, repeats)
    compute_s, memory_s = flops / peak_flops_per_s, 4 * k * n / bandwidth_bytes_per_s
    both, in_turn = (OpTime(compute_s, memory_s, 0.0, o).total_s for o in (True, False))
    return Measured(
        overlaps(measured_s, compute_s, memory_s),
        f"a {m}x{k}x{n} float32 MatMul (its weights streamed) took {measured_s * 1e6:.0f} µs: "
        f"max(compute, memory) {both * 1e6:.0f} µs, their sum {in_turn * 1e6:.0f} µs; "
        f"{threads} thread(s), median",
    )


def stream_rate(threads: int, repeats: int = 7) -> Measured:
    """Achieved memory bandwidth: bytes an elementwise Add moves per second."""
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])], "stream",
        [helper.make_tensor_value_info(x, f, [STREAM_ELEMENTS]) for x in ("a", "b")],
        [helper.make_tensor_value_info("c", f, [STREAM_ELEMENTS])],
    )  # fmt: skip
    run = session(graph, threads)
    feeds = {x: np.ones(STREAM_ELEMENTS, np.float32) for x in ("a", "b")}
    seconds = median_s(lambda: run.run(None, feeds), repeats)
    return Measured(
        3 * 4 * STREAM_ELEMENTS / seconds,
        f"onnxruntime CPU Add of two {4 * STREAM_ELEMENTS >> 20} MiB float32 arrays "
        f"(2 reads + 1 write), {threads} thread(s), median of {repeats}",
    )


# One cycle of the per-op chain: kernels a transformer graph is full of, each of which the
# cost model charges a launch for (no views), on a [4, 8] float tensor too small to compute.
_CYCLE = ("Add", "Transpose", "Softmax", "Transpose", "Mul", "MatMul")


def _chain_node(op: str, i: int) -> onnx.NodeProto:
    x, y = f"x{i}", f"x{i + 1}"
    if op == "Transpose":
        return helper.make_node(op, [x], [y], perm=[1, 0])
    if op == "Softmax":
        return helper.make_node(op, [x], [y], axis=-1)
    second = {"Add": "one", "Mul": "half", "MatMul": "w"}[op]
    return helper.make_node(op, [x, second], [y])


def per_op_overhead(threads: int, repeats: int = 30) -> Measured:
    """Seconds onnxruntime spends per op on a chain of small ops of the kinds a
    transformer runs (elementwise, transposes, softmax, matmul), too small to compute
    anything: what each of a real graph's kernels costs beyond its roofline."""
    f = TensorProto.FLOAT
    count = CHAIN_OPS - CHAIN_OPS % len(_CYCLE)
    nodes = [_chain_node(_CYCLE[i % len(_CYCLE)], i) for i in range(count)]
    constants = [
        numpy_helper.from_array(np.ones((1,), np.float32), "one"),
        numpy_helper.from_array(np.full((1,), 0.5, np.float32), "half"),
        numpy_helper.from_array(np.eye(8, dtype=np.float32), "w"),
    ]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x0", f, [4, 8])],
        [helper.make_tensor_value_info(f"x{count}", f, [4, 8])], constants,
    )  # fmt: skip
    run, kernels = kernels_run(graph, threads)
    feeds = {"x0": np.zeros((4, 8), np.float32)}
    seconds = median_s(lambda: run.run(None, feeds), repeats) / kernels
    return Measured(
        seconds,
        f"onnxruntime CPU chain of {count} small ops ({', '.join(_CYCLE)} in turn) on a 4x8 "
        f"tensor, run as {kernels} kernels after onnxruntime's optimiser, {threads} "
        f"thread(s), median of {repeats}, per kernel",
    )


def step_overhead(threads: int, repeats: int = 300) -> Measured:
    """Seconds one ``session.run`` of a one-op model takes on an idle rank."""
    run = session(step_model(), threads)
    feeds = {"x": np.zeros(STEP_ELEMENTS, np.float32)}
    seconds = median_s(lambda: run.run(None, feeds), repeats)
    return Measured(
        seconds,
        f"onnxruntime CPU session.run of a one-op model, {threads} thread(s), alone, "
        f"median of {repeats}",
    )
