"""Plan one model on several targets and serve the same workload on each, side by side.

On a GPU target, every replica count that divides its GPUs is tried: one
replica is planned on its share (tp x pp searched, as `partition --dp N` does),
it serves the workload (`partition simulate PLAN --workload W`), and the shape
serving most is kept: the highest rate meeting the SLO, offline the most tokens/s,
or else the lowest mean latency (`--parallelism plan` keeps the planner's own batch-1 choice
instead). A wafer target uses the fewest wafers that fit. When the workload has an SLO, each
target's highest arrival rate meeting it is found too. A target the model does
not fit on is a row that says why. The model must be a decode-step graph with
its batch and past dims given (--dim batch=1 --dim past=4095), so that each plan
carries the load model that prices every iteration.

examples:
  partition compare llama70b-decode.onnx --targets h100x8,h200x8,b200x8,wse3x4 \\
      --dim batch=1 --dim past=4095 --workload mlperf-llama2-70b-server
  partition compare model.onnx --targets h100x8,my-cluster.yaml --dim batch=1 --dim past=2047 \\
      --rate 4 --requests 500 --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from partitioner.commands._common import add_model_arguments, console, err_console, load_graph
from partitioner.commands.api_compare import api_comparison_line
from partitioner.commands.compare_shapes import best_shape
from partitioner.commands.plan_prefill import add_prefill_arguments, prepare_prefill, with_prefill
from partitioner.commands.serving import add_serving_arguments, serve, workload_of
from partitioner.errors import InfeasibleError, UsageError
from partitioner.outputs import Outputs
from partitioner.plan import Plan
from partitioner.planning import GpuOptions, WaferOptions, plan_model
from partitioner.planning.serving_dims import serving_dims
from partitioner.simulate.breakdown import bottleneck_cell
from partitioner.units import human_seconds
from passes.ir import Graph
from targets import Target, WaferTarget, load_target

__all__ = ["add_arguments", "run", "compare_targets"]

MAX_TARGETS = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--targets", required=True, metavar="T1,T2,...",
                        help="presets or target files, comma-separated")  # fmt: skip
    parser.add_argument("--time-limit", type=float, default=20.0, metavar="SEC",
                        help="solver budget per target (default 20 s)")  # fmt: skip
    parser.add_argument("--parallelism", choices=("serve", "plan"), default="serve",
                        help="GPU targets. serve (default): try every replica count, each "
                        "replica's tp x pp planned, and keep the one serving the workload best; "
                        "plan: the planner's choice for one stream's latency (one plan, faster)")  # fmt: skip
    parser.add_argument("--png", type=Path, metavar="FILE",
                        help="latency against throughput for every target (needs an SLO)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_prefill_arguments(parser.add_argument_group("prefill from a second file"))
    add_serving_arguments(parser)


def _targets(spec: str) -> list[tuple[str, Target]]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise UsageError("--targets: give at least one preset or target file")
    if len(names) > MAX_TARGETS:
        raise UsageError(f"--targets: at most {MAX_TARGETS} targets, got {len(names)}")
    return [(name, load_target(name)) for name in names]


def _options(target: Target, args: argparse.Namespace) -> GpuOptions | WaferOptions:
    if isinstance(target, WaferTarget):
        return WaferOptions(devices="auto", time_limit_s=args.time_limit, seed=0)
    return GpuOptions(time_limit_s=args.time_limit, seed=0)


def _served(plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    # sweep the rate when the workload names an SLO (probing needs one)
    sweep = args.rate_sweep or workload_of(args).slo is not None
    return serve(plan, argparse.Namespace(**{**vars(args), "rate_sweep": sweep}))


def _plan_and_serve(
    name: str, graph: Graph, target: Target, args: argparse.Namespace
) -> tuple[Plan, dict[str, Any], list[dict[str, Any]] | None]:
    """The plan kept for ``target``, its serving document and (searched) every shape tried."""
    options = _options(target, args)

    def plan_with(o: GpuOptions | WaferOptions) -> Plan:
        plan = plan_model(graph, target, o).plan
        return with_prefill(getattr(args, "prefill_graph", None), plan, graph, target, Path.cwd())

    if isinstance(options, WaferOptions) or args.parallelism == "plan":
        err_console.print(f"planning on {name} ...", markup=False)
        plan = plan_with(options)
        err_console.print(f"serving on {name} ...", markup=False)
        return plan, _served(plan, args), None
    return best_shape(
        options, target.num_devices,
        plan_with=plan_with,
        serve=lambda plan: _served(plan, args),
        say=lambda line: err_console.print(f"{name}: {line}", markup=False),
        offline=workload_of(args).arrivals.process == "offline",
    )  # fmt: skip


def _row(name: str, graph: Graph, target: Target, args: argparse.Namespace) -> dict[str, Any]:
    """One target's row: plan, serve, and the figures the table shows."""
    try:
        plan, served, tried = _plan_and_serve(name, graph, target, args)
    except InfeasibleError as err:
        return {"target": name, "fits": False, "reason": f"does not fit on {name}: {err}"}
    row: dict[str, Any] = {"target": name, "fits": True}
    row["devices"] = len({d for p in plan.partitions for d in p.devices}) * plan.parallelism.dp
    row["parallelism"] = {k: getattr(plan.parallelism, k) for k in ("tp", "pp", "dp")}
    b, breakdown = plan.estimate.bottleneck, plan.estimate.extra.get("time_breakdown")
    row["bottleneck"] = bottleneck_cell(b.kind, b.where, breakdown)
    row.update(served)
    if tried is not None:
        row["shapes_tried"] = tried
    return row


def compare_targets(graph: Graph, args: argparse.Namespace) -> list[dict[str, Any]]:
    return [_row(name, graph, target, args) for name, target in _targets(args.targets)]


def run(args: argparse.Namespace) -> int:
    outputs = Outputs([args.model])
    if args.png is not None:
        outputs.add("--png", args.png)
    graph = load_graph(args)
    if serving_dims(graph) is None:
        # refused before any target is planned: serving needs the plan's load model
        raise UsageError(
            f"compare serves a decode-step model: {args.model.name} needs a KV-cache input and "
            "its batch and past dims bound (--dim batch=1 --dim past=4095)"
        )
    args.prefill_graph = prepare_prefill(args, graph, outputs)
    rows = compare_targets(graph, args)
    with outputs:
        if args.png is not None:
            from partitioner.simulate.serving_plot import render_sweep_png

            swept = {r["target"]: r for r in rows if r["fits"] and "probes" in r}
            if not swept:
                raise UsageError("--png draws rate sweeps: give a workload with an slo:")
            outputs.stage(args.png, render_sweep_png(swept))
        outputs.commit()
    if args.json:
        print(json.dumps({"model": str(args.model), "rows": rows}, indent=1))
        return 0
    _print(rows)
    if args.png is not None:
        console.print(f"picture written to {args.png}", markup=False)
    return 0


def _p(stats: dict[str, Any], key: str) -> str:
    value = stats.get(key)
    return "-" if value is None else human_seconds(value)


def _cells(row: dict[str, Any]) -> list[str]:
    if not row["fits"]:
        return [row["target"], "no", "-", "-", "-", "-", "-", "-", "-", "-", "-", row["reason"]]
    f = row["serving"] or {}
    par = row["parallelism"]
    rate = row.get("max_rate_per_s")
    usd, joules = f.get("usd_per_million_tokens"), f.get("joules_per_token")
    return [
        row["target"], "yes", f"{row['devices']} (tp{par['tp']} pp{par['pp']} dp{par['dp']})",
        _p(f.get("ttft_s", {}), "p50"), _p(f.get("ttft_s", {}), "p99"),
        _p(f.get("tpot_s", {}), "p50"), _p(f.get("tpot_s", {}), "p99"),
        "-" if rate is None else f"{rate:.3g}/s",
        f"{f['throughput_tokens_per_s']:,.0f}" if f else "-",
        "-" if usd is None else f"${usd:.3g}",
        "-" if joules is None else f"{joules:.3g}",
        row["bottleneck"],
    ]  # fmt: skip


def _print(rows: list[dict[str, Any]]) -> None:
    table = Table(title="the same workload on each target")
    for column in ("target", "fits", "devices", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99",
                   "max rate at SLO", "tokens/s", "$/M tokens", "J/token", "bottleneck"):  # fmt: skip
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*_cells(row))
    console.print(table)
    for row in rows:
        if not row["fits"]:
            console.print(f"{row['target']}: {row['reason']}", markup=False)
            continue
        if row.get("cerebras_api_prices"):
            line = api_comparison_line(row["cerebras_api_prices"])
            console.print(f"{row['target']}: {line}", markup=False)
        if row.get("shapes_tried"):
            tried = "; ".join(_shape_said(t) for t in row["shapes_tried"])
            console.print(f"{row['target']} shapes tried: {tried}", markup=False)


def _shape_said(tried: dict[str, Any]) -> str:
    """One shape `compare` tried, as the line under the table says it."""
    if not tried["fits"]:
        return f"dp{tried['dp']} does not fit"
    shape = f"tp{tried['tp']} pp{tried['pp']} dp{tried['dp']}"
    rate, tokens = tried["max_rate_per_s"], tried["throughput_tokens_per_s"]
    if rate is not None:
        return f"{shape} {rate:.3g}/s at the SLO"
    return shape if tokens is None else f"{shape} {tokens:,.0f} tokens/s"
