"""`partition simulate PLAN --workload W` (or --rate ...): request-level serving of a plan.

The plan's load model (`partitioner.plan.load_model`, recorded for decode
graphs planned with ``--dim batch=... --dim past=...``) prices every iteration
of a vLLM-style engine (`partitioner.simulate.serving`) at its own batch and
context lengths; the KV cache holds what the plan's memory leaves free. With
``dp`` replicas in the plan, one replica is simulated at 1/dp of the arrival rate
(on the workload's full request count, so that its run is as long as one engine's).
Dollars come from the target's ``usd_per_hour`` (labelled in the presets), joules
from its ``power_w``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from rich.table import Table

from partitioner.commands._common import LiveStatus, console, err_console
from partitioner.commands.api_compare import api_comparison, api_comparison_line
from partitioner.errors import UsageError
from partitioner.outputs import Outputs
from partitioner.plan import Plan
from partitioner.simulate.common import devices_in_use, replica_devices
from partitioner.simulate.serving import (
    ServingConfig,
    ServingReport,
    Workload,
    load_workload,
    max_rate_under_slo,
    simulate_serving,
    workload_from_args,
)
from partitioner.simulate.serving_cost import iteration_cost, kv_capacity_tokens
from partitioner.units import human_seconds, per_million_tokens
from targets.cost import CostModel
from targets.formulas import joules_per_token, usd_per_token
from targets.loader import target_from_dict

__all__ = [
    "serving_command",
    "add_prices",
    "add_serving_arguments",
    "wants_serving",
    "workload_of",
    "serve",
    "print_serving",
    "Served",
]


def add_serving_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "serving (request-level; the plan needs a load model: plan a decode graph with "
        "--dim batch=N --dim past=N)"
    )
    group.add_argument("--workload", metavar="NAME|FILE",
                       help="a bundled workload (chat, offline, mlperf-llama2-70b-server, "
                       "mlperf-llama2-70b-interactive) or a workload YAML file")  # fmt: skip
    group.add_argument("--rate", type=float, metavar="R",
                       help="Poisson arrivals per second, instead of a workload file "
                       "(inf: all at once)")  # fmt: skip
    group.add_argument("--requests", type=int, default=None, metavar="N",
                       help="how many requests (default: the workload's; 1000 with --rate); a "
                       "plan of dp replicas simulates one replica on all of them at 1/dp of "
                       "the rate")  # fmt: skip
    group.add_argument("--prompt-len", type=int, default=512, metavar="N",
                       help="prompt tokens with --rate (default 512)")  # fmt: skip
    group.add_argument("--output-len", type=int, default=128, metavar="N",
                       help="output tokens with --rate (default 128)")  # fmt: skip
    group.add_argument("--seed", type=int, default=None, metavar="N",
                       help="draws arrivals and lengths (default: the workload's)")  # fmt: skip
    group.add_argument("--max-batch", type=int, default=256, metavar="N",
                       help="most sequences in flight per replica (vLLM --max-num-seqs, "
                       "default 256)")  # fmt: skip
    group.add_argument("--token-budget", type=int, default=8192, metavar="N",
                       help="tokens per iteration (vLLM --max-num-batched-tokens, "
                       "default 8192)")  # fmt: skip
    group.add_argument("--no-chunked-prefill", action="store_true",
                       help="prefill each prompt whole in one iteration")  # fmt: skip
    group.add_argument("--iteration-overhead", type=float, default=0.0, metavar="SEC",
                       help="host seconds per iteration not overlapped with the devices "
                       "(scheduling, inputs, sampling in a synchronous loop; default 0, "
                       "a runtime that overlaps them)")  # fmt: skip
    group.add_argument("--token-overhead", type=float, default=0.0, metavar="SEC",
                       help="host seconds more per token of an iteration, on the same terms "
                       "(the part of building inputs and sampling that grows with the "
                       "batch; default 0)")  # fmt: skip
    group.add_argument("--stage-overhead", type=float, default=0.0, metavar="SEC",
                       help="host seconds each pipeline stage after the first spends per "
                       "iteration on its own rank (its layout, gathering and writing back "
                       "its caches); default 0")  # fmt: skip
    group.add_argument("--rate-sweep", action="store_true",
                       help="find the highest arrival rate that meets the workload's SLO; "
                       "with --png, draw latency against throughput")  # fmt: skip


def wants_serving(args: argparse.Namespace) -> bool:
    return args.workload is not None or args.rate is not None or args.rate_sweep


def workload_of(args: argparse.Namespace) -> Workload:
    """The workload the serving flags name."""
    if args.workload is not None and args.rate is not None:
        raise UsageError("give --workload or --rate, not both (a workload has its own rate)")
    if args.workload is not None:
        workload = load_workload(args.workload)
        return workload if args.requests is None else workload.with_requests(args.requests)
    rate = args.rate if args.rate is not None else 1.0
    requests = 1000 if args.requests is None else args.requests
    return workload_from_args(rate, requests, args.prompt_len, args.output_len)


def _replica_share(workload: Workload, replicas: int) -> Workload:
    """What one of ``replicas`` engines serves: 1/replicas of the rate, and as many
    requests as the workload has. A replica's run is then as long as one engine's would
    be, so an overload shows as it would there: with 1/replicas of the requests, a
    replica's queue would build for 1/replicas of the time, and a rate sweep would pass
    rates no replica sustains."""
    if replicas == 1 or workload.arrivals.process == "offline":
        return workload
    rate = workload.arrivals.rate_per_s
    if rate is None:  # a trace at its own pace: its mean rate, from its arrivals
        arrivals = workload.sample().arrival_s
        span_s = float(arrivals[-1] - arrivals[0])
        if len(arrivals) < 2 or span_s <= 0:
            return workload
        rate = (len(arrivals) - 1) / span_s
    return workload.with_rate(rate / replicas)


class Served:
    """A plan's serving simulation set up: its cost, engine config and prices."""

    def __init__(self, plan: Plan, args: argparse.Namespace) -> None:
        if plan.load_model is None:
            why = plan.estimate.extra.get("no_load_model")
            hint = f"when planned, {why}" if why else (
                "plan a decode-step graph with --dim batch=N --dim past=N")  # fmt: skip
            raise UsageError(
                f"this plan has no load model, so it cannot price other batch sizes and "
                f"contexts: {hint}"
            )
        self.plan = plan
        self.target = target_from_dict(plan.target.spec)
        self.cost = iteration_cost(plan, self.target)
        self.replicas = plan.parallelism.dp
        tokens = kv_capacity_tokens(plan)
        if tokens < 16:
            raise UsageError(f"the plan leaves room for {tokens} tokens of KV cache: none to serve")
        self.config = ServingConfig(
            kv_capacity_tokens=tokens, max_num_seqs=args.max_batch,
            max_num_batched_tokens=args.token_budget,
            chunked_prefill=not args.no_chunked_prefill, seed=args.seed,
            iteration_overhead_s=args.iteration_overhead,
            token_overhead_s=args.token_overhead,
            stage_overhead_s=args.stage_overhead,
        )  # fmt: skip
        devices = replica_devices(devices_in_use(plan.partitions), self.replicas)
        model = CostModel(self.target)
        self.usd_per_hour = model.usd_per_hour(devices)
        self.power_w = model.power_w(devices)

    def run(
        self, workload: Workload, progress: Callable[[int, int], None] | None = None
    ) -> ServingReport:
        share = _replica_share(workload, self.replicas)
        return simulate_serving(share, self.cost, self.config, progress=progress)

    def figures(self, report: ServingReport) -> dict[str, Any]:
        """The report for all replicas together, with $ and joules per token."""
        doc = report.to_json()
        for key in ("throughput_tokens_per_s", "input_tokens_per_s", "requests_per_s"):
            doc[key] *= self.replicas
        if doc["goodput_requests_per_s"] is not None:
            doc["goodput_requests_per_s"] *= self.replicas
        doc["replicas"] = self.replicas
        doc["kv_capacity_tokens"] = self.config.kv_capacity_tokens
        add_prices(doc, self.usd_per_hour, self.power_w)
        return doc


def add_prices(figures: dict[str, Any], usd_per_hour: float | None, power_w: float | None) -> None:
    """Add the price per hour, $ per million tokens (all, and output only), output tokens
    per dollar and joules per output token to a serving report's ``figures`` (None where
    unknown or nothing made)."""
    out_s, in_s = figures["throughput_tokens_per_s"], figures["input_tokens_per_s"]

    def per_million(tokens_per_s: float) -> float | None:
        usd = usd_per_token(tokens_per_s, usd_per_hour) if tokens_per_s > 0 else None
        return None if usd is None else usd * 1e6

    figures["usd_per_hour"] = usd_per_hour
    figures["usd_per_million_tokens"] = per_million(out_s + in_s)
    figures["usd_per_million_output_tokens"] = per_million(out_s)
    # tokens per dollar at this load (at the SLO after --rate-sweep: its highest rate)
    usd_out = figures["usd_per_million_output_tokens"]
    figures["output_tokens_per_usd"] = None if not usd_out else 1e6 / usd_out
    # the dollars split between prompt and generated tokens by device time, each
    # iteration's by the share of its rows that are prompt chunks (a convention: API
    # prices are quoted this way, in and out)
    share, usd_in = figures.get("prompt_busy_share"), per_million(in_s)
    figures["usd_split"] = (
        None
        if share is None or usd_in is None or usd_out is None
        else {"prompt_share_of_device_time": share,
              "usd_per_million_input_tokens": usd_in * share,
              "usd_per_million_output_tokens": usd_out * (1 - share)}
    )  # fmt: skip
    figures["joules_per_token"] = joules_per_token(out_s, power_w) if out_s > 0 else None


class SimulationDisplay(LiveStatus):
    """How far a simulation is, as a live status line on stderr when it is a terminal
    (nothing otherwise, so that logs and scripts see only the result)."""

    def __init__(self) -> None:
        super().__init__("simulating…", err_console if err_console.is_terminal else None)

    def reporter(self, what: str) -> Callable[[int, int], None] | None:
        """A progress callback for `simulate_serving` naming ``what`` runs; None if unseen."""
        status = self.status
        if status is None:
            return None
        return lambda done, total: status.update(
            f"simulating {what}: {done:,} of {total:,} requests finished"
        )


def serve(plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    """Simulate the workload (or sweep its rate); the JSON document of the result."""
    with SimulationDisplay() as display:
        return _serve(plan, args, display)


def _serve(plan: Plan, args: argparse.Namespace, display: SimulationDisplay) -> dict[str, Any]:
    served, workload = Served(plan, args), workload_of(args)
    doc: dict[str, Any] = {"workload": workload.name, "source": workload.source}
    # which graph prices new prompts: the decode step's rows, or the plan's prefill file
    prefill = plan.load_model.prefill if plan.load_model is not None else None
    doc["prefill_model"] = None if prefill is None else dict(prefill.source or {}).get("path")
    comparison = api_comparison(plan)  # wafer plans: Cerebras' API price, beside ours
    if comparison is not None:
        doc["cerebras_api_prices"] = comparison
    if not args.rate_sweep:
        doc["serving"] = served.figures(served.run(workload, display.reporter(workload.name)))
        return doc
    rate = workload.arrivals.rate_per_s or 1.0  # the bracket: 64x either side of it
    sweep = max_rate_under_slo(_runner(served, workload, display), rate / 64, rate * 64)
    doc["max_rate_per_s"] = None if sweep.rate_per_s is None else sweep.rate_per_s
    doc["bounded"] = sweep.bounded
    doc["serving"] = None if sweep.report is None else served.figures(sweep.report)
    doc["probes"] = [
        {"rate_per_s": p.rate_per_s, **_probe_figures(served.figures(p.report))}
        for p in sweep.probes
    ]
    return doc


def _runner(
    served: Served, workload: Workload, display: SimulationDisplay | None = None
) -> Callable[[float], ServingReport]:
    def run(rate: float) -> ServingReport:
        seen = None if display is None else display.reporter(f"{rate:.3g} requests/s")
        return served.run(workload.with_rate(rate), seen)

    return run


def _probe_figures(doc: dict[str, Any]) -> dict[str, Any]:
    keys = ("throughput_tokens_per_s", "meets_slo")
    return {k: doc[k] for k in keys} | {
        "ttft_p99_s": doc["ttft_s"]["p99"],
        "tpot_p99_s": doc["tpot_s"]["p99"],
    }


def print_serving(doc: dict[str, Any]) -> None:
    figures = doc["serving"]
    if "max_rate_per_s" in doc:
        rate = doc["max_rate_per_s"]
        said = "no rate tried meets the SLO" if rate is None else f"{rate:.3g} requests/s"
        console.print(f"highest rate meeting the SLO: {said}"
                      + ("" if doc["bounded"] else " (or more: the highest rate tried met it)"),
                      markup=False)  # fmt: skip
        if figures is None:
            return
    table = Table(title=f"serving: {doc['workload']}")
    table.add_column("metric")
    for p in ("p50", "p90", "p95", "p99", "mean"):
        table.add_column(p, justify="right")
    for key, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("itl_s", "ITL"),
                       ("e2e_s", "E2E"), ("queue_s", "queueing")):  # fmt: skip
        stats = figures[key]
        table.add_row(label, *(_s(stats[p]) for p in ("p50", "p90", "p95", "p99", "mean")))
    console.print(table)
    console.print(_summary(figures), markup=False)
    if doc.get("prefill_model"):
        console.print(f"new prompts priced as passes of {doc['prefill_model']} (the plan's "
                      "prefill file), the other rows as decode steps", markup=False)  # fmt: skip
    if doc.get("cerebras_api_prices"):
        console.print(api_comparison_line(doc["cerebras_api_prices"]), markup=False)


def _s(value: float | None) -> str:
    return "-" if value is None else human_seconds(value)


def _summary(f: dict[str, Any]) -> str:
    usd = f["usd_per_million_tokens"]
    joules = f["joules_per_token"]
    parts = [
        f"{f['throughput_tokens_per_s']:,.0f} output tokens/s",
        f"{f['requests_per_s']:.3g} requests/s",
        f"{f['completed']}/{f['requests']} completed"
        + (f", {f['rejected']} rejected" if f["rejected"] else "")
        + (f" per replica ({f['replicas']} replicas)" if f["replicas"] > 1 else ""),
        f"{f['preemptions']} preemptions",
        f"KV cache {f['kv_cache_utilisation']['mean']:.0%} used on average "
        f"({f['kv_capacity_tokens']:,} tokens)",
        "$ unknown (no price)" if usd is None else per_million_tokens(usd),
    ]
    if f.get("output_tokens_per_usd"):
        parts.append(f"{f['output_tokens_per_usd']:,.0f} output tokens per $")
    split = f.get("usd_split")
    if split:
        parts.append(f"split by device time (prompts {split['prompt_share_of_device_time']:.0%}): "
                     f"${split['usd_per_million_input_tokens']:.3g} per million input, "
                     f"${split['usd_per_million_output_tokens']:.3g} per million output "
                     "tokens")  # fmt: skip
    if joules is not None:
        parts.append(f"{joules:.3g} J per output token")
    beside = f.get("iterations_beside_another")
    if beside is not None:
        parts.append(f"{beside:,} of {f['iterations']:,} iterations beside another, priced at "
                     "the bandwidth each device gets while its host's devices stream at once")  # fmt: skip
    if f["meets_slo"] is not None:
        parts.append("meets the SLO" if f["meets_slo"] else "misses the SLO")
    return "; ".join(parts)


def serving_command(plan: Plan, args: argparse.Namespace, outputs: Outputs) -> int:
    """`simulate PLAN --workload/--rate`: simulate, draw (--png with --rate-sweep), print."""
    if args.trace is not None:
        raise UsageError("--trace draws one step's stages; leave it out with --workload/--rate")
    doc = serve(plan, args)
    with outputs:
        if args.png is not None:
            if "probes" not in doc:
                raise UsageError("--png with --workload/--rate draws a --rate-sweep's curves")
            from partitioner.simulate.serving_plot import render_sweep_png

            outputs.stage(args.png, render_sweep_png({plan.target.name: doc}))
        outputs.commit()
    if args.json:
        print(json.dumps({"plan": str(args.plan), **doc}, indent=1))
        return 0
    print_serving(doc)
    if args.png is not None:
        console.print(f"picture written to {args.png}", markup=False)
    return 0
