"""The tables the plan command prints: per stage on GPUs, per wafer and region on wafers."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from partitioner.commands._common import console
from partitioner.plan import Plan
from partitioner.planning import PlanOutcome, WaferOutcome
from partitioner.simulate.breakdown import bottleneck_words, breakdown_lines
from partitioner.simulate.serving_cost import own_point_seconds
from partitioner.units import human_bytes, human_flops, human_seconds, per_million_tokens
from targets.gpu import GpuTarget
from targets.loader import target_from_dict

__all__ = ["print_summary", "print_wafer_summary"]


_STAGE_COLUMNS = (
    "stage",
    "devices",
    "nodes",
    "params",
    "memory",
    "of cap.",
    "compute",
    "collectives",
    "send",
    "period",
    "",
)
_WAFER_COLUMNS = (
    "wafer",
    "regions",
    "cores used",
    "SRAM used",
    "slowest region",
    "bytes×hops",
    "vs snake",
    "floorplan",
)
_REGION_COLUMNS = ("region", "wafer", "x,y", "w x h", "params", "SRAM/core", "compute", "nodes")


def print_summary(outcome: PlanOutcome) -> None:
    """Per-stage table with the bottleneck marked, then the figures that matter."""
    plan = outcome.plan
    e = outcome.layout.estimate
    console.print(_stage_table(outcome))
    s = plan.solver
    extra = plan.estimate.extra
    where = plan.estimate.bottleneck.where
    bottleneck = bottleneck_words(e.bottleneck.kind, where, extra.get("time_breakdown"))
    # The plan's throughput counts every replica; the layout's is one pipeline's.
    _print_figures(e.latency_s, plan.estimate.throughput_per_s, bottleneck, extra)
    _shared_memory_line(plan, e.stage_period_s)
    console.print(
        f"solver {s.name}: {s.status}, objective {human_seconds(s.objective_s)}, bound {human_seconds(s.bound_s)}, "
        f"gap {100 * s.gap:.2f}%, {outcome.wall_s:.1f} s wall; "
        f"{plan.model.num_nodes:,} nodes in {extra['coarsening']['blocks']} blocks, "
        f"{human_flops(plan.model.flops)}, {human_bytes(plan.model.param_bytes)} of parameters"
    )


def _shared_memory_line(plan: Plan, stage_period_s: Sequence[float]) -> None:
    """Say so when the plan's devices share one memory system and more than one of them
    computes at once: the throughput above prices each stage alone. With a load model,
    also the throughput with every stage streaming at once, as `simulate` prices it."""
    if len(plan.partitions) * plan.parallelism.tp < 2:
        return
    target = target_from_dict(plan.target.spec)
    contended = target.contended() if isinstance(target, GpuTarget) else None
    if contended is None:
        return
    lead = plan.partitions[0].devices[0]
    alone = target.devices[lead].hbm_bandwidth_bytes_per_s
    together = contended.devices[lead].hbm_bandwidth_bytes_per_s
    side_by_side = "`partition simulate` prices stages running side by side"
    if plan.load_model is not None and len(plan.partitions) > 1:
        beside, alone_s = own_point_seconds(plan, contended), own_point_seconds(plan, target)
        period_s = side_by_side_period_s(stage_period_s, alone_s, beside)
        throughput = plan.estimate.throughput_per_s * max(stage_period_s) / period_s
        side_by_side = (f"with every stage streaming at once the period is "
                        f"{human_seconds(period_s)} and the throughput {throughput:,.1f}/s, "
                        "as `partition simulate` prices it")  # fmt: skip
    console.print(
        f"note: these devices share one memory system ({human_bytes(alone)}/s alone, "
        f"{human_bytes(together)}/s each while all stream): the throughput above prices each "
        f"stage alone; {side_by_side}",
        markup=False,
    )


def side_by_side_period_s(
    stage_period_s: Sequence[float], alone_s: Sequence[float], beside_s: Sequence[float]
) -> float:
    """The pipeline's period with every stage streaming at once: each stage's period longer
    by what that adds to its step (``beside_s`` less ``alone_s``, both from the load model,
    which leaves out the host's I/O that a period holds)."""
    pairs = zip(stage_period_s, alone_s, beside_s, strict=True)
    return max(period + beside - alone for period, alone, beside in pairs)


def _devices(devices: tuple[int, ...]) -> str:
    """``0-7`` for a run of consecutive devices, else the list."""
    if len(devices) > 2 and list(devices) == list(range(devices[0], devices[-1] + 1)):
        return f"{devices[0]}-{devices[-1]}"
    return ",".join(map(str, devices))


def _stage_table(outcome: PlanOutcome) -> Table:
    """One row per stage: its devices, size, memory, times; the bottleneck stage marked."""
    plan = outcome.plan
    e = outcome.layout.estimate
    worst = e.bottleneck.index if e.bottleneck.kind in ("compute", "transfer", "host") else -1
    fewest = " (the fewest that fit: --devices auto)" if outcome.devices_auto else ""
    par = plan.parallelism
    shape = f"{par.pp} stage{'s' if par.pp != 1 else ''} x tensor-parallel {par.tp}"
    if par.dp > 1:
        shape += f", {par.dp} replicas of it (the next devices repeat it)"
    collective_s = {p.id: 0.0 for p in plan.partitions}
    for c in plan.collectives:
        collective_s[c.partition] += c.time_s
    table = Table(title=f"{plan.target.name}: {shape}{fewest}", title_justify="left")
    for col in _STAGE_COLUMNS:
        table.add_column(col, justify="right")
    for p in plan.partitions:
        period = e.stage_period_s[p.stage]
        mark = "◀ bottleneck" if p.stage == worst else ""
        table.add_row(
            str(p.stage),
            _devices(p.devices),
            f"{len(p.nodes):,}",
            human_bytes(p.param_bytes),
            human_bytes(p.memory_bytes),
            f"{100 * p.memory_bytes / p.capacity_bytes:.0f}%",
            human_seconds(p.compute_s),
            human_seconds(collective_s[p.id]),
            human_seconds(outcome.layout.stage_send_s[p.stage]),
            human_seconds(period),
            mark,
        )
    return table


def _print_figures(latency_s: float, throughput_per_s: float, bottleneck: str, extra: dict) -> None:
    """Latency, throughput and the bottleneck, the decode and unsized-transfer notes, then
    where the step's time goes (when the plan records it)."""
    console.print(
        f"latency {human_seconds(latency_s)}   throughput {throughput_per_s:,.1f}/s   "
        f"bottleneck: {bottleneck}"
    )
    _decode_line(extra)
    _unsized_line(extra)
    for line in breakdown_lines(extra.get("time_breakdown")):
        console.print(line, markup=False)


def _unsized_line(extra: dict) -> None:
    """Name the tensors whose size nobody could infer: their transfers count latency only."""
    unsized = extra.get("unsized_transfers") or []
    if unsized:
        shown = ", ".join(unsized[:5]) + (
            f" and {len(unsized) - 5} more" if len(unsized) > 5 else ""
        )
        console.print(
            f"note: {len(unsized)} tensor(s) crossing partitions have no inferred size, so their "
            f"transfers count link latency only: {shown}",
            markup=False,
        )


def _in_flight(extra: dict) -> str:
    """How many batches of what size the tokens/s claim keeps in flight, and what caps it."""
    held, needed = extra.get("batches_in_flight"), extra.get("batches_in_flight_needed")
    if held is None or needed is None:  # a plan from before these were recorded
        return f"with a batch of {extra['batch']} in flight on every stage"
    batches = f"{held} batch{'es' if held != 1 else ''} of {extra['batch']} in flight"
    if held < needed:
        return (
            f"with {batches}, all the KV caches memory holds (the pipeline runs full with "
            f"{needed}; a batch of at most {extra['max_batch_in_flight']} would fit {needed})"
        )
    return (
        f"with {batches}, each with its own KV cache on every stage (the largest batch "
        f"that fits {needed} in flight: {extra['max_batch_in_flight']})"
    )


def _decode_line(extra: dict) -> None:
    if extra.get("llm_decode_step"):
        console.print(
            f"decode: {extra['tokens_per_s_per_stream']:,.0f} tokens/s per stream "
            f"({human_seconds(extra['s_per_token'])} per token); {extra['tokens_per_s']:,.0f} tokens/s "
            + _in_flight(extra)
            + (
                f"; {per_million_tokens(extra['usd_per_token'] * 1e6)}"
                if "usd_per_token" in extra
                else ""
            )
        )


def print_wafer_summary(outcome: WaferOutcome, slowest: int = 8) -> None:
    """Per wafer: regions, cores and SRAM used, Σ bytes×hops against the snake; then the slowest regions."""
    plan = outcome.plan
    console.print(_wafer_table(plan))
    console.print(_slowest_regions_table(plan, slowest))
    e, s, extra = plan.estimate, plan.solver, plan.estimate.extra
    bottleneck = f"{e.bottleneck.kind} ({e.bottleneck.where})"
    _print_figures(e.latency_s, e.throughput_per_s, bottleneck, extra)
    console.print(
        f"solver {s.name}: {s.status}; period {human_seconds(s.objective_s)} against a compute bound of "
        f"{human_seconds(s.bound_s)}; {outcome.wall_s:.1f} s wall; {plan.model.num_nodes:,} nodes, "
        f"{human_flops(plan.model.flops)}, {human_bytes(plan.model.param_bytes)} of parameters"
    )


def _wafer_size(plan: Plan) -> tuple[int, int]:
    """Cores per wafer, and the SRAM bytes per core left for the plan (after the reserve)."""
    spec = plan.target.spec["wafer"]
    cores = spec["width_cores"] * spec["height_cores"]
    usable = spec["sram_bytes_per_core"] - spec["sram_reserve_bytes_per_core"]
    return cores, usable


def _wafer_table(plan: Plan) -> Table:
    """One row per wafer: regions, cores and SRAM used, slowest region, floorplan cost."""
    cores, usable = _wafer_size(plan)
    table = Table(
        title=f"{plan.target.name}: {len(plan.partitions)} regions on "
        f"{plan.estimate.extra['devices_used']} wafer(s)",
        title_justify="left",
    )
    for col in _WAFER_COLUMNS:
        table.add_column(col, justify="right")
    for f in plan.estimate.extra["floorplan"]:
        parts = [p for p in plan.partitions if f["wafer"] in p.devices]
        used = sum(p.region.w * p.region.h for p in parts)  # type: ignore[union-attr]
        memory = sum(p.memory_bytes for p in parts)
        ratio = f["byte_hops"] / f["snake_byte_hops"] if f["snake_byte_hops"] else 1.0
        table.add_row(
            str(f["wafer"]),
            str(f["regions"]),
            f"{100 * used / cores:.0f}%",
            f"{100 * memory / (cores * usable):.0f}%",
            human_seconds(max(p.compute_s for p in parts)),
            f"{f['byte_hops']:.3g}",
            f"{ratio:.3f}x",
            f["status"],
        )
    return table


def _slowest_regions_table(plan: Plan, slowest: int) -> Table:
    """The ``slowest`` regions by compute time: place, shape, parameters, SRAM per core."""
    _, usable = _wafer_size(plan)
    worst = sorted(plan.partitions, key=lambda p: -p.compute_s)[:slowest]
    table = Table(title=f"Slowest {len(worst)} regions", title_justify="left")
    for col in _REGION_COLUMNS:
        table.add_column(col, justify="right")
    for p in worst:
        r = p.region
        table.add_row(
            str(p.id),
            ",".join(map(str, p.devices)),
            f"{r.x},{r.y}",
            f"{r.w}x{r.h}",
            human_bytes(p.param_bytes),  # type: ignore[union-attr]
            f"{p.memory_bytes / (r.w * r.h) / usable:.0%}",
            human_seconds(p.compute_s),
            str(len(p.nodes)),  # type: ignore[union-attr]
        )
    return table
