"""Every pipeline solver side by side, one table per example model.

For each model and target: each solver's bottleneck (the steady-state period
of the slowest stage), its ratio to CP-SAT's, the proven lower bound, the
solver's status and wall time. Ratios are within one run, so machine noise
cancels; wall times are this machine's.

Usage::

    python bench/solvers.py                    # all models (builds them once into bench/.cache)
    python bench/solvers.py --models gpt2-small llama3.1-70b-prefill --time-limit 30
"""

from __future__ import annotations

import argparse
import time

from _common import DIMS, console, machine, model, print_table

from partitioner.planning import GPU_SOLVERS, GpuOptions, InfeasibleError, plan_pipeline
from partitioner.units import human_seconds
from passes.load import load
from targets import load_target

CASES = [
    ("mlp", "h100x4"),
    ("resnet18", "h100x4"),
    ("gpt2-small", "h100x4"),
    ("bert-base", "h100x4"),
    ("llama3.1-8b-prefill", "h100x4"),
    ("llama3.1-70b-prefill", "h100x8"),
    ("llama3.1-70b-decode", "h100x8"),
    ("llama3.1-405b-decode", "h100x16"),
]


def run_case(name: str, target_name: str, time_limit_s: float) -> dict[str, float | None]:
    graph = load(model(name), DIMS[name])
    target = load_target(target_name)
    results: dict[str, tuple] = {}
    for solver in GPU_SOLVERS:
        start = time.perf_counter()
        try:
            outcome = plan_pipeline(
                graph, target, GpuOptions(solver=solver, time_limit_s=time_limit_s)
            )
        except InfeasibleError as err:
            results[solver] = (None, None, "does not fit", time.perf_counter() - start, str(err))
            continue
        s = outcome.plan.solver
        results[solver] = (s.objective_s, s.bound_s, s.status, time.perf_counter() - start, "")
    best = results["cpsat"][0]
    rows = []
    for solver, (objective, bound, status, wall, why) in results.items():
        ratio = f"{objective / best:.3f}x" if objective and best else "-"
        rows.append(
            [
                solver,
                human_seconds(objective) if objective else why[:60],
                ratio,
                human_seconds(bound) if bound is not None else "-",
                status,
                f"{wall:.2f}",
            ]
        )
    print_table(
        f"{name} -> {target_name} ({graph.num_nodes:,} nodes)",
        ["solver", "bottleneck", "vs cpsat", "lower bound", "status", "wall s"],
        rows,
    )
    return {solver: r[0] for solver, r in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="*", default=[m for m, _ in CASES])
    parser.add_argument("--time-limit", type=float, default=30.0)
    args = parser.parse_args()
    console.print(f"machine: {machine()}")
    summary = []
    for name, target_name in CASES:
        if name not in args.models:
            continue
        objective = run_case(name, target_name, args.time_limit)
        if objective.get("cpsat") and objective.get("params"):
            summary.append([name, target_name, f"{objective['params'] / objective['cpsat']:.3f}x"])
        elif objective.get("cpsat"):
            summary.append([name, target_name, "params does not fit"])
    print_table(
        "CP-SAT against DeepSpeed's parameter-balanced split",
        ["model", "target", "params / cpsat"],
        summary,
    )


if __name__ == "__main__":
    main()
