"""The NumPy executor on the exported examples, against onnxruntime and onnx.reference.

All three run the same model on the same inputs in the same process: our
executor (whole graph, and the 4-stage plan partition by partition),
onnxruntime (a session made once), and onnx.reference.ReferenceEvaluator (made
once). Times are the best of N runs; weights are loaded before timing, as a
session does at creation. Then `partition verify` on a 4-stage GPT-2 plan runs
as a fresh process, timed end to end.

Usage::

    python bench/executor_models.py
    python bench/executor_models.py --models gpt2-small --runs 5 --skip-reference
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _common import DIMS, best_of, console, machine, model, print_table, timed

from partitioner.executor.graph_run import constant_values, run_graph, run_plan
from partitioner.executor.verify import make_inputs
from partitioner.executor.weights import WeightStore
from partitioner.planning import GpuOptions, plan_pipeline
from passes.load import load
from targets import load_target


def bench_model(name: str, runs: int, skip_reference: bool) -> list[object]:
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    path = model(name)
    graph = load(path, DIMS[name])
    feeds = make_inputs(graph, seed=0)
    weights = WeightStore(graph)
    constant_values(graph, weights)  # decode every weight before timing
    output = graph.outputs[0]
    ours_s, ours = best_of(runs, lambda: run_graph(graph, feeds, weights)[output])
    plan = plan_pipeline(graph, load_target("h100x4"), GpuOptions(time_limit_s=10)).plan
    plan_s, split = best_of(runs, lambda: run_plan(graph, plan, feeds, weights).outputs[output])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ort_s, theirs = best_of(runs, lambda: session.run([output], feeds)[0])
    diff = float(np.max(np.abs(np.asarray(ours, np.float64) - theirs)))
    scale = float(np.max(np.abs(theirs)))
    np.testing.assert_array_equal(ours, split)
    ref_s = None
    if not skip_reference:
        evaluator = ReferenceEvaluator(onnx.load(str(path)))
        ref_s, ref = best_of(1, lambda: evaluator.run([output], feeds)[0])
        diff = max(diff, float(np.max(np.abs(np.asarray(ours, np.float64) - ref))))
    return [
        name,
        f"{ours_s * 1e3:.1f}",
        f"{plan_s * 1e3:.1f} ({len(plan.partitions)} parts)",
        f"{ort_s * 1e3:.1f}",
        f"{ours_s / ort_s:.2f}x",
        f"{ref_s * 1e3:.0f}" if ref_s else "-",
        f"{ref_s / ours_s:.1f}x" if ref_s else "-",
        f"{diff / scale:.1e}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="*", default=["gpt2-small", "resnet18"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    console.print(f"machine: {machine()}")
    rows = [bench_model(name, args.runs, args.skip_reference) for name in args.models]
    print_table(
        "Executor speed (best of N, ms)",
        [
            "model",
            "ours: graph",
            "ours: plan",
            "onnxruntime",
            "ours / ort",
            "onnx.reference",
            "reference / ours",
            "max rel diff",
        ],
        rows,
    )
    if "gpt2-small" in args.models:
        path = model("gpt2-small")
        plan_path = "/tmp/bench-gpt2-small.h100x4.verify.plan.json"
        dims = [a for k, v in DIMS["gpt2-small"].items() for a in ("--dim", f"{k}={v}")]
        timed([str(path), "--target", "h100x4", *dims, "-o", plan_path, "-q"])
        run = timed(["verify", str(path), plan_path, "--json"])
        doc = json.loads(run.stdout)
        out = doc["outputs"][0]
        print_table(
            "partition verify, GPT-2 small on a 4-stage h100x4 plan",
            ["wall s", "peak RSS MB", "max abs", "max rel", "ok"],
            [
                [
                    f"{run.wall_s:.2f}",
                    f"{run.max_rss_bytes / 1e6:.0f}",
                    f"{out['max_abs']:.2e}",
                    f"{out['max_rel']:.2e}",
                    doc["ok"],
                ]
            ],
        )


if __name__ == "__main__":
    main()
