"""`partition simulate ... --deployment D.yaml [--fail POOL@T[:DURATION]]`: pools of plans, routed.

The deployment file (format in `partitioner.simulate.serving.deployment`) names
pools, each a plan with replicas, and how requests are routed between them. The
workload (``--workload``, or ``--rate ...``, as for one plan) is served by every
pool on one clock (`partitioner.simulate.serving.fleet`); ``--fail`` takes a
pool down mid-run and its requests move to the deployment's fallback pool. Each
pool's plan is priced as ``simulate --workload`` prices one plan (its load model,
its KV headroom, ``--max-batch``/``--token-budget`` unless the pool sets its
own); its $ per hour is its replicas' devices at the target's ``usd_per_hour``.
The report (`partitioner.simulate.serving.fleet_report`) gives the figures
overall, per pool, per request class and per fault, with ``lost_requests``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from partitioner.commands._common import console
from partitioner.commands.api_compare import api_comparison, api_comparison_line
from partitioner.commands.serving import Served, add_prices, workload_of
from partitioner.errors import PartitionError, UsageError
from partitioner.plan.io import load_plan
from partitioner.plan.validate import validate_plan
from partitioner.simulate.serving.deployment import (
    PoolSpec,
    check_faults,
    load_deployment,
    parse_fault,
)
from partitioner.simulate.serving.fleet import FleetPool, simulate_fleet
from partitioner.simulate.serving.fleet_report import fleet_report
from partitioner.units import human_seconds, per_million_tokens

__all__ = [
    "add_deployment_arguments",
    "wants_deployment",
    "run_deployment",
    "print_deployment",
    "deployment_command",
]


def add_deployment_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "deployment (pools of plans and a router; the workload flags above give the requests)"
    )
    group.add_argument("--deployment", type=Path, metavar="FILE",
                       help="a deployment YAML file: pools (a plan and replicas each), "
                       "routing (slo-class, prompt-length, overflow or weighted), fallback")  # fmt: skip
    group.add_argument("--fail", action="append", metavar="POOL@T[:DURATION]",
                       help="take POOL down at T seconds, for DURATION seconds or to the end; "
                       "its requests restart on the fallback pool (repeatable)")  # fmt: skip


def wants_deployment(args: argparse.Namespace) -> bool:
    return args.deployment is not None or bool(args.fail)


def _limits(spec: PoolSpec, args: argparse.Namespace) -> argparse.Namespace:
    """The serving flags with the pool's own engine limits in place of the command line's."""
    own = {"max_batch": spec.max_batch, "token_budget": spec.token_budget}
    return argparse.Namespace(**(vars(args) | {k: v for k, v in own.items() if v is not None}))


def _pool(spec: PoolSpec, args: argparse.Namespace, label: str) -> tuple[FleetPool, dict[str, Any]]:
    """The pool's engines, and what the report says of its plan and price."""
    where = f"{label}: pool {spec.name} ({spec.plan_path.name})"
    try:
        plan = load_plan(spec.plan_path)
        violations = validate_plan(plan)
        if violations:
            raise UsageError(f"the plan is invalid: {violations[0]}")
        served = Served(plan, _limits(spec, args))
    except PartitionError as err:
        raise UsageError(f"{where}: {err}") from None
    usd = served.usd_per_hour
    info = {
        "plan": str(spec.plan_path),
        "target": plan.target.name,
        "replicas": spec.replicas,
        "kv_capacity_tokens": served.config.kv_capacity_tokens,
        "max_batch": served.config.max_num_seqs,
        "token_budget": served.config.max_num_batched_tokens,
        "usd_per_hour": None if usd is None else usd * spec.replicas,
        "power_w": served.power_w * spec.replicas if served.power_w else None,
    }
    comparison = api_comparison(plan)  # a wafer pool: Cerebras' API price beside ours
    if comparison is not None:
        info["cerebras_api_prices"] = comparison
    engines = spec.replicas * served.replicas
    return FleetPool(spec.name, served.cost, served.config, engines), info


def _total(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def run_deployment(args: argparse.Namespace) -> dict[str, Any]:
    """Simulate the workload on the deployment (with its faults); the JSON document.

    Raises:
        UsageError: No --deployment, a bad deployment, fault, plan or workload.
    """
    if args.deployment is None:
        raise UsageError("--fail takes a pool of a deployment down: give --deployment FILE")
    if args.rate_sweep:
        raise UsageError("--rate-sweep sweeps one plan; leave it out with --deployment")
    deployment = load_deployment(args.deployment)
    label = f"deployment {args.deployment.name}"
    faults = [parse_fault(text, deployment) for text in args.fail or []]
    check_faults(faults)
    workload = workload_of(args)
    pools, infos = zip(*(_pool(spec, args, label) for spec in deployment.pools), strict=True)
    run = simulate_fleet(
        workload.sample(args.seed),
        pools,
        deployment.routing,
        fallback=deployment.fallback,
        faults=faults,
        label=label,
    )
    doc = fleet_report(
        run,
        slo=workload.slo,
        class_slos=dict(deployment.class_slos),
        recovery_window_s=deployment.recovery_window_s,
    )
    for (name, figures), info in zip(doc["pools"].items(), infos, strict=True):
        add_prices(figures, info["usd_per_hour"], info["power_w"])
        doc["pools"][name] = info | figures
    usd = _total([info["usd_per_hour"] for info in infos])
    add_prices(doc["serving"], usd, _total([info["power_w"] for info in infos]))
    head = {"deployment": deployment.name, "workload": workload.name, "source": workload.source}
    policy = {"routing": deployment.routing.to_json(), "fallback": deployment.fallback}
    return head | policy | doc


def _s(value: float | None) -> str:
    return "-" if value is None else human_seconds(value)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _pool_table(doc: dict[str, Any]) -> Table:
    table = Table(title=f"deployment {doc['deployment']}: {doc['workload']}", title_justify="left")
    columns = ("pool", "target", "engines", "requests", "TTFT p50", "TTFT p99", "TPOT p50",
               "TPOT p99", "tokens/s", "KV used", "$/h")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("pool", "target") else "right")
    for name, f in doc["pools"].items():
        usd = f["usd_per_hour"]
        table.add_row(
            name, f["target"], str(f["engines"]), f"{f['completed']}/{f['requests']}",
            _s(f["ttft_s"]["p50"]), _s(f["ttft_s"]["p99"]),
            _s(f["tpot_s"]["p50"]), _s(f["tpot_s"]["p99"]),
            f"{f['throughput_tokens_per_s']:,.0f}", _share(f["kv_cache_utilisation"]["mean"]),
            "-" if usd is None else f"{usd:,.2f}",
        )  # fmt: skip
    return table


def _class_table(classes: dict[str, Any]) -> Table:
    table = Table(title="request classes", title_justify="left")
    columns = ("class", "requests", "served by", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99",
               "SLO (TTFT / TPOT p99)", "in SLO", "p99s meet")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("class", "served by") else "right")
    for name, c in classes.items():
        slo = c["slo"]
        target = "-" if slo is None else f"{_s(slo['ttft_p99_s'])} / {_s(slo['tpot_p99_s'])}"
        meets = {None: "-", True: "yes", False: "no"}[c["meets_slo"]]
        table.add_row(
            name, str(c["requests"]), ", ".join(f"{p} {n}" for p, n in c["pools"].items()),
            _s(c["ttft_s"]["p50"]), _s(c["ttft_s"]["p99"]),
            _s(c["tpot_s"]["p50"]), _s(c["tpot_s"]["p99"]),
            target, _share(c["slo_attainment"]), meets,
        )  # fmt: skip
    return table


def _fault_line(fault: dict[str, Any], fallback: str | None) -> str:
    end, pool = fault["end_s"], fault["pool"]
    window = "to the end" if end is None else f"until {end:g} s"
    if fallback is None or fallback == pool:
        where = "nowhere to restart (no fallback)" if fallback is None else "nowhere to restart"
        where += " (it is the fallback)" if fallback == pool else ""
    else:
        where = f"{fault['restarted_requests']} restarted on {fallback}"
    line = (
        f"pool {pool} down at {fault['start_s']:g} s {window}: "
        f"{fault['moved_requests']} requests moved ({fault['moved_running']} running), "
        f"{where}, {fault['rerouted_arrivals']} arrivals rerouted, "
        f"{fault['lost_requests']} lost"
    )
    if fault["slo_violations"] is not None:
        recovery, window_s = fault["recovery_s"], fault["recovery_window_s"]
        line += (
            f"; {fault['slo_violations']} of {fault['arrivals']} arrivals in the window missed "
            "their SLO; "
            + (
                f"no {window_s:g} s stretch 99 % in SLO after it before the last arrival"
                if recovery is None
                else f"back in SLO {recovery:.3g} s after it"
            )
        )
    return line


def print_deployment(doc: dict[str, Any]) -> None:
    """The pools, the classes, the whole and each fault, as tables and lines."""
    console.print(_pool_table(doc))
    if doc["classes"]:
        console.print(_class_table(doc["classes"]))
    f = doc["serving"]
    usd = f["usd_per_million_tokens"]
    parts = [
        f"{f['throughput_tokens_per_s']:,.0f} output tokens/s",
        f"{f['completed']}/{f['requests']} completed",
        f"{f['lost_requests']} lost",
        f"{f['restarted_requests']} restarted",
        "$ unknown (no price)" if usd is None else per_million_tokens(usd),
    ]
    if f["meets_slo"] is not None:
        parts.append("meets the SLOs" if f["meets_slo"] else "misses the SLOs")
    console.print("all pools: " + "; ".join(parts), markup=False)
    for name, pool in doc["pools"].items():
        if pool.get("cerebras_api_prices"):
            console.print(f"pool {name}: {api_comparison_line(pool['cerebras_api_prices'])}",
                          markup=False)  # fmt: skip
    for fault in doc["faults"]:
        console.print(_fault_line(fault, doc["fallback"]), markup=False)


def deployment_command(args: argparse.Namespace) -> int:
    """`simulate --deployment D [--fail ...]`: check the flags, simulate, print."""
    if args.plan is not None:
        raise UsageError("--deployment names its pools' plans: leave PLAN out")
    for flag, value in (("--trace", args.trace), ("--png", args.png)):
        if value is not None:
            raise UsageError(f"{flag} draws one plan; leave it out with --deployment")
    if args.deployment is None:
        raise UsageError("--fail takes a pool of a --deployment down: give the deployment")
    doc = run_deployment(args)
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print_deployment(doc)
    return 0
