"""Simulate a plan: latency, throughput, bottleneck and link loads from the same cost model.

GPU plans: per-stage compute, collective, transfer and host I/O seconds and
the pipeline period; per GPU and link class (NVLink, network, host) the bytes
it sends, tensor-parallel collectives included, and how much of the period
that keeps the link busy; the busiest point-to-point links; and, when the plan
records it, where the planner says a step's time goes (compute, HBM traffic,
kernel launches, collective latency and bandwidth, transfers). Wafer plans: per-region
compute, utilisation and SRAM per core, every fabric link's load (X-then-Y
routes over parallel lanes), the busiest links, Σ bytes × hops and the
critical path. The simulation is checked against the estimate the plan records.

The plan is first checked against the rules that need no model (the target
spec and its sha256, ids, devices, memory within capacity, wafer regions inside
the grid and apart): exit 1 names the first violation, as `partition validate`
does. Exit 2 for bad input, a plan that fails its schema included.

Serving (`--workload`/`--rate`): request-level simulation of the plan's load model
(decode graphs planned with --dim batch=N --dim past=N); `--deployment` serves
pools of plans with a router and a fallback, `--fail` takes a pool down.

examples:
  partition simulate gpt2.h100x4.plan.json
  partition simulate llama.wse3.plan.json --png llama-floorplan.png
  partition simulate plan.json --json
  partition simulate llama8b.h100x4.plan.json --workload chat
  partition simulate llama70b.h100x8.plan.json --workload mlperf-llama2-70b-server --rate-sweep --png curve.png
  partition simulate --deployment hybrid.yaml --workload chat --fail wafer@30:60
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from partitioner.commands._common import console, err_console
from partitioner.commands.deployment import (
    add_deployment_arguments,
    deployment_command,
    wants_deployment,
)
from partitioner.commands.serving import add_serving_arguments, serving_command, wants_serving
from partitioner.errors import UsageError
from partitioner.outputs import Outputs
from partitioner.plan import HOST, Plan
from partitioner.plan.io import load_plan
from partitioner.plan.validate import validate_plan
from partitioner.simulate import (
    FabricReport,
    PipelineReport,
    SimulationReport,
    breakdown_lines,
    estimate_differences,
    simulate_plan,
)
from partitioner.simulate.breakdown import bottleneck_words
from partitioner.simulate.schedule import makespan_s
from partitioner.simulate.trace import chrome_trace, predicted_spans
from partitioner.units import human_bytes, human_seconds, per_million_tokens

__all__ = ["add_arguments", "run"]

MAX_REGION_ROWS = 64
MAX_GPU_LINK_ROWS = 32
TOP_LINKS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", type=Path, nargs="?",
                        help="the plan JSON (left out with --deployment, whose pools "
                        "name their plans)")  # fmt: skip
    parser.add_argument(
        "--png",
        type=Path,
        metavar="FILE",
        help="also draw the plan: floorplan, utilisation and link load per wafer; "
        "time per stage, a pipeline Gantt chart and link utilisation per GPU for GPUs",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        metavar="FILE.json",
        help="write the predicted timeline as a Chrome trace (GPU plans; one track per stage), "
        "the format `partition run --trace` measures in",
    )
    parser.add_argument(
        "--microbatches",
        type=int,
        default=None,
        metavar="M",
        help="micro-batches drawn in --trace (default: the plan's)",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_serving_arguments(parser)
    add_deployment_arguments(parser)


def _device(device: int) -> str:
    return "host" if device == HOST else str(device)


def _devices(devices: tuple[int, ...]) -> str:
    """``0-7`` for a run of consecutive devices, else the list (as `partition` prints them)."""
    if len(devices) > 2 and list(devices) == list(range(devices[0], devices[-1] + 1)):
        return f"{devices[0]}-{devices[-1]}"
    return ",".join(map(str, devices))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _share(busy_s: float, period_s: float) -> str:
    return f"{100 * busy_s / period_s:.0f}%" if period_s > 0 else "-"


def _stage_table(plan: Plan, report: PipelineReport) -> Table:
    overlap = "transfers overlap compute" if report.overlap_transfers else "blocking transfers"
    tp = f", tensor-parallel {plan.parallelism.tp}" if plan.parallelism.tp > 1 else ""
    table = Table(
        title=f"{plan.target.name}: {_count(len(report.stages), 'stage')}{tp}, {overlap}",
        title_justify="left",
    )
    columns = ("stage", "devices", "compute", "collectives", "recv", "send", "host I/O")
    for col in (*columns, "period", "busy", ""):
        table.add_column(col, justify="right")
    b = report.estimate.bottleneck
    worst = b.index if b.kind in ("compute", "transfer", "host") else None
    for index, (s, p) in enumerate(zip(report.stages, plan.partitions, strict=True)):
        table.add_row(
            str(index),
            _devices(p.devices),
            human_seconds(s.compute_s),
            human_seconds(s.collective_s),
            human_seconds(s.recv_s),
            human_seconds(s.send_s),
            human_seconds(s.host_s),
            human_seconds(s.period_s),
            _share(s.period_s, report.period_s),
            "◀ bottleneck" if index == worst else "",
        )
    return table


def _gpu_link_table(report: PipelineReport) -> Table:
    """Per GPU and link class: what it sends, collectives included, and how busy that keeps it."""
    rows = list(report.gpu_links)
    title = "link load per GPU (bytes it sends per item; collectives: its ring share)"
    if len(rows) > MAX_GPU_LINK_ROWS:
        busiest = sorted(rows, key=lambda g: -g.busy_s)[:MAX_GPU_LINK_ROWS]
        rows = [g for g in rows if g in busiest]
        title += f" (the {MAX_GPU_LINK_ROWS} busiest; --json lists all)"
    table = Table(title=title, title_justify="left")
    for col in ("GPU", "link", "bytes", "of which collectives", "busy", "of period"):
        table.add_column(col, justify="right")
    for g in rows:
        table.add_row(
            str(g.device),
            f"{g.link_name} ({g.link_class})",
            human_bytes(g.bytes),
            f"{human_bytes(g.collective_bytes)} in {_count(g.collectives, 'call')}"
            if g.collectives
            else "-",
            human_seconds(g.busy_s),
            f"{100 * g.utilisation:.0f}%",
        )
    return table


def _pair_link_table(report: PipelineReport) -> Table:
    links = Table(title="busiest links (point-to-point transfers)", title_justify="left")
    for col in ("from", "to", "link", "bytes", "busy", "of period"):
        links.add_column(col, justify="right")
    for link in report.links[:TOP_LINKS]:
        links.add_row(
            _device(link.src_device),
            _device(link.dst_device),
            f"{link.link_class} ({link.link_name})",
            human_bytes(link.bytes),
            human_seconds(link.busy_s),
            f"{100 * link.utilisation:.0f}%",
        )
    return links


def _class_line(report: PipelineReport) -> str:
    parts = []
    for c in report.link_classes:
        calls = f", {_count(c.collectives, 'collective')}" if c.collectives else ""
        parts.append(
            f"{c.link_class} ({c.link_name}) {human_bytes(c.bytes)} in "
            f"{human_seconds(c.busy_s)}{calls}, busiest GPU {100 * c.utilisation:.0f}% of the period"
        )
    return "per class: " + "; ".join(parts)


def _print_gpu(plan: Plan, report: PipelineReport) -> None:
    console.print(_stage_table(plan, report))
    if report.gpu_links:
        console.print(_gpu_link_table(report))
        console.print(_class_line(report), markup=False)
    if report.links:
        console.print(_pair_link_table(report))


def _shown_regions(report: FabricReport) -> list[int]:
    indices = list(range(len(report.regions)))
    if len(indices) <= MAX_REGION_ROWS:
        return indices
    busiest = sorted(indices, key=lambda i: -report.regions[i].utilisation)[:MAX_REGION_ROWS]
    return sorted(busiest)


def _print_wafer(plan: Plan, report: FabricReport) -> None:
    shown = _shown_regions(report)
    more = len(report.regions) - len(shown)
    width, height = report.grid
    title = f"{plan.target.name}: {len(report.regions)} regions on {width}x{height}-core wafers"
    if more:
        title += f" (the {len(shown)} busiest; --json lists all)"
    table = Table(title=title, title_justify="left")
    for col in ("region", "wafer", "x", "y", "w×h", "cores", "compute", "busy", "SRAM/core", ""):
        table.add_column(col, justify="right")
    where = report.bottleneck.where
    for i in shown:
        r = report.regions[i]
        mark = "◀ bottleneck" if where == f"region {r.partition} on wafer {r.wafer}" else ""
        table.add_row(
            str(r.partition),
            str(r.wafer),
            str(r.x),
            str(r.y),
            f"{r.w}×{r.h}",
            f"{r.cores:,}",
            human_seconds(r.compute_s),
            f"{100 * r.utilisation:.0f}%",
            f"{human_bytes(r.sram_bytes_per_core)} ({100 * r.sram_fraction:.0f}%)",
            mark,
        )
    console.print(table)
    _print_wafer_links(report)


def _print_wafer_links(report: FabricReport) -> None:
    if report.busiest_links:
        links = Table(title="busiest links", title_justify="left")
        for col in ("link", "bytes", "busy", "of period"):
            links.add_column(col, justify="right")
        for link in report.busiest_links:
            links.add_row(
                link.where,
                human_bytes(link.bytes),
                human_seconds(link.busy_s),
                f"{100 * link.utilisation:.0f}%",
            )
        console.print(links)
    console.print(
        f"Σ bytes × hops {report.byte_hops:,}; SRAM per core up to "
        f"{human_bytes(report.max_sram_bytes_per_core)} of {human_bytes(report.usable_sram_bytes_per_core)} usable; "
        f"critical path through {len(report.critical_path)} regions",
        markup=False,
    )


def _print_details(plan: Plan, report: SimulationReport) -> None:
    """The tables of the report's kind: stages and device links, or regions and fabric links."""
    if isinstance(report, PipelineReport):
        _print_gpu(plan, report)
    elif isinstance(report, FabricReport):
        _print_wafer(plan, report)
    else:
        raise TypeError(f"no tables for a {report.kind} report")


def _print_summary(plan: Plan, report: SimulationReport, differences: list[str]) -> None:
    b = report.bottleneck
    breakdown = plan.estimate.extra.get("time_breakdown")
    console.print(
        f"latency {human_seconds(report.latency_s)}   throughput {report.throughput_per_s:,.1f}/s   "
        f"period {human_seconds(report.period_s)}   "
        f"bottleneck: {bottleneck_words(b.kind, b.where, breakdown)}",
        markup=False,
    )
    decode = report.decode
    if decode:
        console.print(
            f"decode: {decode['tokens_per_s']:,.0f} tokens/s (batch {decode['batch']}), "
            f"{human_seconds(decode['s_per_token'])} per token per stream"
            + (
                f", {per_million_tokens(decode['usd_per_token'] * 1e6)}"
                if "usd_per_token" in decode
                else ""
            ),
            markup=False,
        )
    # The planner's record of where a step's time goes (GPU plans); the simulation has no ops.
    for line in breakdown_lines(breakdown):
        console.print(line, markup=False)
    if differences:
        console.print("differs from the plan's estimate: " + "; ".join(differences), markup=False)
    else:
        console.print("matches the plan's estimate")


def _violations(plan: Plan, args: argparse.Namespace) -> int | None:
    """Exit 1 naming what is wrong when the plan breaks a rule checkable without its model."""
    violations = validate_plan(plan)
    if not violations:
        return None
    if args.json:
        doc = {"plan": str(args.plan), "valid": False, "violations": [str(v) for v in violations]}
        print(json.dumps(doc, indent=1))
    else:
        err_console.print(
            f"invalid: {violations[0]} (simulating an invalid plan means nothing; "
            f"`partition validate {args.plan} --all` lists every violation)",
            markup=False,
        )
    return 1


def _trace_json(plan: Plan, report: SimulationReport, args: argparse.Namespace) -> str:
    """The predicted timeline of --microbatches items (the plan's by default)."""
    if not isinstance(report, PipelineReport):
        raise UsageError(
            "--trace draws GPU pipeline plans; a wafer plan's regions run as a dataflow, "
            "with no stage schedule to draw"
        )
    items = args.microbatches if args.microbatches is not None else plan.parallelism.microbatches
    if not 1 <= items <= 1 << 16:
        raise UsageError(f"--microbatches {items}: give a whole number from 1 to {1 << 16}")
    meta = {"tool": "partition simulate", "plan": str(args.plan), "microbatches": items,
            "makespan_s": makespan_s(report.stages, report.period_s, items)}  # fmt: skip
    return json.dumps(chrome_trace(predicted_spans(report, items), meta))


def run(args: argparse.Namespace) -> int:
    if wants_deployment(args):
        return deployment_command(args)
    if args.plan is None:
        raise UsageError("give the PLAN to simulate (or --deployment FILE)")
    outputs = Outputs([args.plan])
    for flag, path in (("--png", args.png), ("--trace", args.trace)):
        if path is not None:
            outputs.add(flag, path)
    plan = load_plan(args.plan)
    invalid = _violations(plan, args)
    if invalid is not None:
        return invalid
    if wants_serving(args):
        return serving_command(plan, args, outputs)
    report = simulate_plan(plan)
    differences = estimate_differences(report, plan)
    with outputs:
        if args.png is not None:
            from partitioner.simulate.plot import render_png

            title = f"{Path(plan.model.path).name or 'model'} on {plan.target.name}"
            outputs.stage(args.png, render_png(report, title))
        if args.trace is not None:
            outputs.stage(args.trace, _trace_json(plan, report, args))
        outputs.commit()
    if args.json:
        doc = {
            "plan": str(args.plan),
            "valid": True,
            "report": report.to_dict(),
            "time_breakdown": plan.estimate.extra.get("time_breakdown"),
            "matches_plan_estimate": not differences,
            "differences": differences,
            "png": str(args.png) if args.png is not None else None,
        }
        print(json.dumps(doc, indent=1))
        return 0
    _print_details(plan, report)
    _print_summary(plan, report, differences)
    if args.png is not None:
        console.print(f"picture written to {args.png}", markup=False)
    if args.trace is not None:
        console.print(f"predicted timeline written to {args.trace} (Chrome trace)", markup=False)
    return 0
