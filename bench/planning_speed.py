"""Analysis and planning speed, peak memory, and parameter totals.

Each command runs in a fresh process (wall time and that process's peak RSS).
Parameter totals are checked against torch's ``sum(p.numel())`` for the torch
examples and the analytic count for the Llama shapes.

Usage::

    python bench/planning_speed.py
    python bench/planning_speed.py --skip-torch      # Llama shapes only (no torch needed)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from _common import console, dim_args, machine, model, print_table, timed

from partitioner.units import human_bytes, human_count
from targets.fabric import mesh_link_loads

ANALYZE = [
    "gpt2-small",
    "llama3.1-8b-decode",
    "llama3.1-70b-decode",
    "llama3.1-70b-prefill",
    "llama3.1-405b-decode",
]
PLAN = [
    ("gpt2-small", "h100x4"),
    ("bert-base", "h100x4"),
    ("llama3.1-70b-prefill", "h100x8"),
    ("llama3.1-70b-decode", "h100x8"),
    ("llama3.1-405b-decode", "h100x16"),
]
TORCH_MODELS = {"gpt2-small", "bert-base", "mlp", "resnet18"}


def expected_params(name: str) -> tuple[int, str]:
    """The count to compare against, and where it comes from."""
    if name.startswith("llama"):
        from examples.llama import CONFIGS, analytic_param_count

        config = name.rsplit("-", 1)[0]
        return analytic_param_count(CONFIGS[config]), "analytic"
    import examples.bert as bert
    import examples.gpt2 as gpt2
    import examples.mlp as mlp
    import examples.resnet as resnet

    module, size = {
        "gpt2-small": (gpt2, "small"),
        "bert-base": (bert, "base"),
        "mlp": (mlp, "base"),
        "resnet18": (resnet, "resnet18"),
    }[name]
    config = module.CONFIGS[size]
    count = module.torch_param_count(config)
    if module is resnet:
        return count + module.torch_buffer_count(config), "torch params + BN statistics"
    return count, "torch sum(p.numel())"


def mesh_loads_row(flows: int = 50_000, repeats: int = 5) -> list[str]:
    """Median wall time of `mesh_link_loads` for ``flows`` random flows on the WSE-3 grid
    (762 x 1176 cores), with its busiest links and per-core maximum, as the wafer planner
    asks for them."""
    rng = np.random.default_rng(0)
    src = np.stack([rng.integers(0, 762, flows), rng.integers(0, 1176, flows)], axis=1)
    dst = np.stack([rng.integers(0, 762, flows), rng.integers(0, 1176, flows)], axis=1)
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        loads = mesh_link_loads(762, 1176, src, dst, np.full(flows, 10))
        loads.busiest(5)
        loads.core_max()
        walls.append(time.perf_counter() - started)
    return [f"{flows:,} flows, 762 x 1176 cores", f"{statistics.median(walls) * 1e3:.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--skip-torch", action="store_true", help="skip the torch-exported examples"
    )
    args = parser.parse_args()
    console.print(f"machine: {machine()}")
    names = [n for n in ANALYZE if not (args.skip_torch and n in TORCH_MODELS)]
    rows, param_rows = [], []
    for name in names:
        path = model(name)
        run = timed(["analyze", str(path), *dim_args(name), "--json"])
        totals = json.loads(run.stdout)["totals"]
        rows.append(
            [
                name,
                f"{run.wall_s:.2f}",
                human_bytes(run.max_rss_bytes),
                f"{totals['num_nodes']:,}",
                human_count(totals["param_count"]),
            ]
        )
        expected, source = expected_params(name)
        ok = (
            "equal"
            if totals["param_count"] == expected
            else f"DIFFERS by {totals['param_count'] - expected:+,}"
        )
        param_rows.append([name, f"{totals['param_count']:,}", f"{expected:,}", source, ok])
    for name in ("bert-base", "resnet18", "mlp"):
        if args.skip_torch:
            continue
        run = timed(["analyze", str(model(name)), *dim_args(name), "--json"])
        count = json.loads(run.stdout)["totals"]["param_count"]
        expected, source = expected_params(name)
        param_rows.append(
            [
                name,
                f"{count:,}",
                f"{expected:,}",
                source,
                "equal" if count == expected else "DIFFERS",
            ]
        )
    print_table("partition analyze", ["model", "wall s", "peak RSS", "nodes", "params"], rows)
    print_table("Parameter totals", ["model", "analyze", "expected", "source", ""], param_rows)

    plan_rows = []
    for name, target in PLAN:
        if args.skip_torch and name in TORCH_MODELS:
            continue
        out = f"/tmp/bench-{name}.{target}.plan.json"
        run = timed([str(model(name)), "--target", target, *dim_args(name), "-o", out, "-q"])
        with open(out) as f:
            solver = json.load(f)["solver"]
        plan_rows.append(
            [
                f"{name} -> {target}",
                f"{run.wall_s:.2f}",
                human_bytes(run.max_rss_bytes),
                solver["status"],
                f"{100 * solver['gap']:.2f}%",
            ]
        )
    print_planning(plan_rows)


def print_planning(plan_rows: list[list[str]]) -> None:
    """The planning table, then the wafer planner's fabric link loads timed."""
    print_table(
        "partition MODEL --target T (cpsat, default 30 s budget)",
        ["plan", "wall s", "peak RSS", "status", "gap"],
        plan_rows,
    )
    print_table("Fabric link loads (targets.fabric.mesh_link_loads), median of 5",
                ["flows", "wall ms"], [mesh_loads_row()])  # fmt: skip


if __name__ == "__main__":
    main()
