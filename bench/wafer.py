"""Wafer-scale mapping: planning time, fabric cost against baselines, decode speed against published figures.

1. Planning time and peak RSS (fresh process each): GPT-2 small -> wse3, Llama-3.1-70B decode -> wse3x4.
2. The fewest WSE-3 systems 70B fits on (`--devices auto` on wse3x8), and the error on 3.
3. Fabric cost Σ bytes × hops of the CP-SAT floorplan against the serpentine (snake) and
   graph-blind baselines and the geometric lower bound, on GPT-2, ResNet-18 and Llama-8B decode.
4. Predicted decode tokens/s next to published figures, with the ratio and what the
   critical path is made of (FMAC time, the mesh term, transfers). The hardware
   constants come from HARDWARE.md and are never fitted to these figures.

Usage::

    python bench/wafer.py
    python bench/wafer.py --skip-torch     # Llama only
"""

from __future__ import annotations

import argparse
import json

from _common import DIMS, console, dim_args, machine, model, print_table, timed

from partitioner.plan import Plan
from partitioner.planning import WaferOptions
from partitioner.planning.wafer.planner import plan_wafer
from partitioner.units import human_bytes, human_seconds
from passes.load import load
from targets import load_target
from targets.cost import CostModel

PUBLISHED = [
    # model, target, published tok/s per user, source
    ("llama3.1-8b-decode", "wse3", 1800.0, "Cerebras Inference, Aug 2024, one CS-3"),
    ("llama3.1-70b-decode", "wse3x4", 450.0, "Cerebras Inference, Aug 2024, four CS-3"),
    ("llama3.1-8b-decode", "wse2", 2700.0, "WaferLLM (OSDI'25), Llama3-8B on a WSE-2"),
]


def planning_time() -> None:
    rows = []
    for name, target in (("gpt2-small", "wse3"), ("llama3.1-70b-decode", "wse3x4")):
        out = f"/tmp/bench-{name}.{target}.plan.json"
        run = timed([str(model(name)), "--target", target, *dim_args(name), "-o", out, "-q"])
        with open(out) as f:
            solver = json.load(f)["solver"]
        rows.append(
            [
                f"{name} -> {target}",
                f"{run.wall_s:.1f}",
                human_bytes(run.max_rss_bytes),
                solver["status"],
            ]
        )
    print_table("Wafer planning (default budgets)", ["plan", "wall s", "peak RSS", "status"], rows)


def fewest_wafers() -> None:
    name = "llama3.1-70b-decode"
    out = "/tmp/bench-70b-auto.plan.json"
    auto = timed(
        [
            str(model(name)),
            "--target",
            "wse3x8",
            "--devices",
            "auto",
            *dim_args(name),
            "-o",
            out,
            "-q",
        ]
    )
    with open(out) as f:
        used = json.load(f)["estimate"]["devices_used"]
    three = timed(
        [
            str(model(name)),
            "--target",
            "wse3x4",
            "--devices",
            "3",
            *dim_args(name),
            "-o",
            "/tmp/x.json",
            "-q",
        ]
    )
    console.print(f"70B decode, --devices auto on wse3x8: {used} wafers ({auto.wall_s:.1f} s)")
    console.print(f"70B decode on 3 wafers: exit {three.returncode}")


def fabric_cost(names: list[str]) -> None:
    rows = []
    for name in names:
        graph = load(model(name), DIMS[name])
        target = load_target("wse3")
        costs = {}
        for solver in ("cpsat", "snake", "blind"):
            plan = plan_wafer(graph, target, WaferOptions(solver=solver)).plan
            costs[solver] = plan.estimate.extra["floorplan"][0]
        c = costs["cpsat"]
        rows.append(
            [
                name,
                f"{c['regions']}",
                f"{c['byte_hops']:.4g}",
                f"{costs['snake']['byte_hops']:.4g}",
                f"{costs['blind']['byte_hops']:.4g}",
                f"{c['byte_hops_bound']:.4g}",
                f"{c['byte_hops'] / costs['snake']['byte_hops']:.3f}",
                f"{costs['blind']['byte_hops'] / c['byte_hops']:.2f}",
                f"{c['byte_hops'] / max(c['byte_hops_bound'], 1):.3f}",
            ]
        )
    print_table(
        "Fabric cost Σ bytes × hops on one WSE-3 (cpsat = snake + CP-SAT LNS, default budget)",
        [
            "model",
            "regions",
            "cpsat",
            "snake",
            "blind",
            "lower bound",
            "cpsat/snake",
            "blind/cpsat",
            "cpsat/bound",
        ],
        rows,
    )


def breakdown(plan: Plan) -> tuple[float, float, float]:
    """Critical path seconds split into FMAC time, the mesh term, and transfers."""
    cost = CostModel(load_target(plan.target.name))
    path = set(plan.estimate.extra["critical_path"])
    fmac = mesh = 0.0
    for p in plan.partitions:
        if p.id in path:
            pure = cost.region_compute_s(p.flops, p.region.w, p.region.h, "bfloat16", 0)
            fmac += pure
            mesh += p.compute_s - pure
    moved = plan.estimate.latency_s - fmac - mesh
    return fmac, mesh, moved


def decode_speed() -> None:
    rows = []
    for name, target, published, source in PUBLISHED:
        graph = load(model(name), DIMS[name])
        plan = plan_wafer(graph, load_target(target), WaferOptions()).plan
        extra = plan.estimate.extra
        per_stream = extra["tokens_per_s_per_stream"]
        fmac, mesh, moved = breakdown(plan)
        total = plan.estimate.latency_s
        rows.append(
            [
                f"{name} on {target}",
                f"{per_stream:,.0f}",
                f"{published:,.0f}",
                f"{per_stream / published:.2f}",
                human_seconds(total),
                f"{100 * fmac / total:.0f}%",
                f"{100 * mesh / total:.0f}%",
                f"{100 * moved / total:.0f}%",
                f"{extra['devices_used']}",
                source,
            ]
        )
    print_table(
        "Decode tokens/s per stream (batch 1, past 4095): simulator vs published",
        [
            "model",
            "predicted",
            "published",
            "ratio",
            "ms/token",
            "FMAC",
            "mesh",
            "transfers",
            "wafers",
            "published by",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--only", choices=["time", "auto", "fabric", "decode"], default=None)
    args = parser.parse_args()
    console.print(f"machine: {machine()}")
    if args.only in (None, "time") and not args.skip_torch:
        planning_time()
    if args.only in (None, "auto"):
        fewest_wafers()
    if args.only in (None, "fabric"):
        fabric_cost(
            ["llama3.1-8b-decode"]
            if args.skip_torch
            else ["gpt2-small", "resnet18", "llama3.1-8b-decode"]
        )
    if args.only in (None, "decode"):
        decode_speed()


if __name__ == "__main__":
    main()
