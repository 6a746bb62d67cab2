"""Wafer-scale mapping: planning time, fabric cost against baselines, decode speed against published figures.

1. Planning time and peak RSS (fresh process each): GPT-2 small -> wse3, Llama-3.1-70B decode -> wse3x4.
2. The fewest WSE-3 systems 70B fits on (`--devices auto` on wse3x8), and the error on 3.
3. Fabric cost Σ bytes × hops of the CP-SAT floorplan against the serpentine (snake) and
   graph-blind baselines and the geometric lower bound, on GPT-2, ResNet-18 and Llama-8B decode.
4. Predicted decode tokens/s next to published figures, with the ratio and what the
   critical path is made of (FMAC time, the mesh term, transfers). The hardware
   constants come from HARDWARE.md and are never fitted to these figures. Llama-3.1-405B
   needs more WSE-3s than any preset has, so it is planned with ``--devices auto`` on a
   target file written here (wse3 with 32 systems), as a user would.

Usage::

    python bench/wafer.py
    python bench/wafer.py --skip-torch     # Llama only
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from _common import DIMS, console, dim_args, machine, model, print_table, timed

from partitioner.plan import Plan
from partitioner.planning import WaferOptions
from partitioner.planning.wafer.planner import plan_wafer
from partitioner.units import human_bytes, human_seconds
from passes.load import load
from targets import Target, load_target
from targets.cost import CostModel

# 405B in bf16 is 812 GB of weights against 38.5 GB of usable SRAM a WSE-3: at least 22
# systems by bytes alone, and no preset has more than 8. 32 leaves room for packing and
# activations; `--devices auto` then picks the fewest that fit.
MANY_WSE3 = 32
MANY_WSE3_NAME = f"wse3x{MANY_WSE3}"
# --time-limit for the 405B plans. The default budgets (5 s for the split, 3 s per wafer's
# floorplan) come to 77 deterministic seconds on 24 wafers, about 7 minutes of wall time on
# two cores; 30 s gives the split 6 s and each floorplan 1 s, and moved the 405B estimate
# by 2 % (127 against 125 tokens/s).
LARGE_PLAN_TIME_LIMIT_S = 30.0


class Published(NamedTuple):
    model: str
    target: str
    tokens_per_s: float  # per user, as published
    source: str
    options: WaferOptions = WaferOptions()


PUBLISHED = [
    Published("llama3.1-8b-decode", "wse3", 1800.0, "Cerebras, Aug 2024: one CS-3, 16-bit"),
    Published("llama3.1-70b-decode", "wse3x4", 450.0, "Cerebras, Aug 2024: four CS-3, 16-bit"),
    Published("llama3.1-70b-decode", "wse3x4", 2100.0, "Cerebras, Oct 2024: speculative decoding"),
    Published(
        "llama3.1-405b-decode",
        MANY_WSE3_NAME,
        969.0,
        "Cerebras, Nov 2024: systems not disclosed",
        WaferOptions(devices="auto", time_limit_s=LARGE_PLAN_TIME_LIMIT_S),
    ),
    # The same figure on every system of the file: how much the unknown count can matter.
    Published(
        "llama3.1-405b-decode",
        MANY_WSE3_NAME,
        969.0,
        f"the same, on all {MANY_WSE3} systems",
        WaferOptions(devices=MANY_WSE3, time_limit_s=LARGE_PLAN_TIME_LIMIT_S),
    ),
    Published("llama3.1-8b-decode", "wse2", 2700.0, "WaferLLM (OSDI'25), Llama3-8B on a WSE-2"),
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


def many_wse3_target() -> Target:
    """wse3 with MANY_WSE3 systems, from a target file (no preset is that large)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{MANY_WSE3_NAME}.yaml"
        path.write_text(
            "extends: wse3\n"
            f"num_wafers: {MANY_WSE3}\n"
            f"description: {MANY_WSE3} x WSE-3 (762 x 1176 cores), layer-pipelined, "
            "weights resident in SRAM\n"
        )
        return load_target(path)


def bench_target(name: str) -> Target:
    return many_wse3_target() if name == MANY_WSE3_NAME else load_target(name)


def breakdown(plan: Plan, target: Target) -> tuple[float, float, float]:
    """Critical path seconds split into FMAC time, the mesh term, and transfers."""
    cost = CostModel(target)
    path = set(plan.estimate.extra["critical_path"])
    fmac = mesh = 0.0
    for p in plan.partitions:
        if p.id in path:
            pure = cost.region_compute_s(p.flops, p.region.w, p.region.h, "bfloat16", 0)
            fmac += pure
            mesh += p.compute_s - pure
    moved = plan.estimate.latency_s - fmac - mesh
    return fmac, mesh, moved


@functools.cache
def decode_plan(name: str, target_name: str, options: WaferOptions) -> tuple[Plan, Target]:
    """One plan per model, target and options (two published figures share the 70B plan)."""
    target = bench_target(target_name)
    start = time.perf_counter()
    plan = plan_wafer(load(model(name), DIMS[name]), target, options).plan
    wall_s = time.perf_counter() - start
    console.print(f"[dim]planned {name} on {target_name} in {wall_s:.0f} s[/dim]")
    return plan, target


def decode_row(row: Published) -> list[str]:
    plan, target = decode_plan(row.model, row.target, row.options)
    extra = plan.estimate.extra
    per_stream = extra["tokens_per_s_per_stream"]
    fmac, mesh, moved = breakdown(plan, target)
    total = plan.estimate.latency_s
    return [
        f"{row.model} on {row.target}",
        f"{per_stream:,.0f}",
        f"{row.tokens_per_s:,.0f}",
        f"{per_stream / row.tokens_per_s:.2f}",
        human_seconds(total),
        f"{100 * fmac / total:.0f}%",
        f"{100 * mesh / total:.0f}%",
        f"{100 * moved / total:.0f}%",
        f"{extra['devices_used']}",
        row.source,
    ]


def decode_speed() -> None:
    rows = [decode_row(row) for row in PUBLISHED]
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
