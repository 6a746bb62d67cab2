"""Per op family: onnxruntime's measured kernel time against the cost model's, on this CPU.

    python bench/op_audit.py [--model bert-base] [--target cpu.yaml] [--served]

onnxruntime runs the model five times with its profiler on (each node's
median counts). It uses one thread and graph optimisations off, so each ONNX node is one kernel
under its own name. Off, onnxruntime does not pre-pack MatMul weights either, which a
served graph does; ``--served`` runs with its optimisations on, as served: the nodes
it keeps are compared under their names, and the kernels it fused into new ones are
one row ("fused by onnxruntime", no estimate of their own). The profile's per-node kernel times are summed per op
type and put beside the cost model's seconds for the same nodes (the roofline
of `targets.cost` on the calibrated CPU target, from `passes.analysis`'s
FLOPs and bytes). The bytes it assumed are shown too, to point at the op
families whose byte counts are off. Without --target, `partition calibrate
--ranks 1` measures the machine first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import DIMS, calibrate, console, machine, model, print_table  # noqa: E402
from partitioner.executor.verify import make_inputs  # noqa: E402
from passes.analysis import node_costs  # noqa: E402
from passes.load import load  # noqa: E402
from targets.cost import CostModel  # noqa: E402
from targets.loader import load_target  # noqa: E402


def _profile(path: Path, feeds: dict, folder: Path, served: bool = False) -> dict[str, float]:
    """Node name -> median kernel seconds over 5 profiled runs (the first, cold, included
    in the count but outweighed)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    if not served:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / "ort")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(5):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    runs: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            runs[e["name"].removesuffix("_kernel_time")].append(e["dur"] / 1e6)
    return {name: statistics.median(times) for name, times in runs.items()}


FUSED = "fused by onnxruntime"


def _by_op(graph, cost: CostModel, measured: dict[str, float]) -> dict[str, list[float]]:
    """Per op type: [measured s, estimated s, bytes assumed, nodes]. Nodes onnxruntime fused
    away and the kernels it made of them are one `FUSED` row."""
    by_op: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0, 0])
    for node, c in zip(graph.nodes, node_costs(graph).nodes, strict=True):
        if node.folded or (c.is_view and node.name not in measured):
            continue
        row = by_op[node.op_type if node.name in measured else FUSED]
        row[0] += measured.get(node.name, 0.0)
        row[1] += cost.op_time_s(
            c.flops, c.bytes_moved, c.dtype or "float32", 0, 0 if c.is_view else 1
        )
        row[2] += c.bytes_moved
        row[3] += 1
    names = {node.name for node in graph.nodes}
    made = [seconds for name, seconds in measured.items() if name not in names]
    if made:
        by_op[FUSED][0] += sum(made)
    return by_op


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bert-base", choices=sorted(DIMS))
    parser.add_argument("--target", type=Path, help="a calibrated target (default: calibrate now)")
    parser.add_argument("--served", action="store_true",
                        help="onnxruntime's graph optimisations on, as a served graph runs")  # fmt: skip
    args = parser.parse_args()
    console.print(machine())
    path = model(args.model)
    with tempfile.TemporaryDirectory() as folder:
        target_path = args.target or Path(folder) / "cpu.yaml"
        if args.target is None:
            calibrate(target_path, ranks=1)
        cost = CostModel(load_target(target_path))
        graph = load(path, DIMS[args.model])
        measured = _profile(path, make_inputs(graph, 0), Path(folder), args.served)
    by_op = _by_op(graph, cost, measured)
    rows = sorted(by_op.items(), key=lambda item: -item[1][0])
    print_table(
        f"{args.model}: onnxruntime kernel time per op family against the cost model",
        ["op", "nodes", "measured ms", "estimate ms", "measured / estimate", "bytes assumed"],
        [(op, n, f"{m * 1e3:.2f}", f"{e * 1e3:.2f}", f"{m / e:.2f}" if e else "-", f"{b / 1e6:.1f} MB")
         for op, (m, e, b, n) in rows],
    )  # fmt: skip
    total_m = sum(r[0] for r in by_op.values())
    total_e = sum(r[1] for r in by_op.values())
    console.print(f"all nodes: measured {total_m * 1e3:.1f} ms, estimate {total_e * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
