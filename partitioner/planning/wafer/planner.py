"""Mapping a model onto wafer-scale engines: split across wafers, size regions, floorplan.

1. Coarsen the graph into blocks, one per future region (about 48 per wafer).
2. With several wafers, split the blocks into one contiguous pipeline stage
   per wafer with the pipeline solver (each block's time is its FLOPs on a
   whole wafer; wafers talk over their system links; a wafer holds its blocks'
   parameters *and* activations in SRAM, with some room left for packing).
3. On each wafer, size every region (`sizing`: enough SRAM, balanced compute)
   in tiles of ``t x t`` cores, and floorplan the rectangles (`floorplan`:
   CP-SAT warm-started from the serpentine layout, or a baseline).
4. Lay the plan out exactly: region compute from `WaferCostModel.region_compute_s`,
   transfers between regions over the fabric (hops = centre distance), across
   wafers over the system link, and the estimate from the fabric simulator.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from partitioner import __version__
from partitioner.gpu_plan import decode_batch, unsized_extra
from partitioner.plan import (
    Bottleneck,
    Estimate,
    Partition,
    Plan,
    Provenance,
    Region,
    SolverInfo,
    Transfer,
)
from partitioner.planner import (
    InfeasibleError,
    PlanOptions,
    UsageError,
    check_model_fits,
    check_total_fits,
    device_count,
    model_info,
    target_info,
)
from partitioner.simulate import decode_figures, estimate_fields, simulate_wafer
from partitioner.units import human_bytes
from partitioner.wafer.floorplan import (
    FloorplanResult,
)
from partitioner.wafer.layout import (
    bound_in_cores,
    budget,
    byte_hops,
    floorplan_wafer,
    tile_size,
    to_cores,
)
from partitioner.wafer.regions import BlockRegion, block_regions, node_wafer_times, region_compute_s
from partitioner.wafer.split import split_across_wafers
from partitioner.wafer.transfers import wafer_flows, wafer_transfers
from passes.analysis.costs import CostReport, node_costs
from passes.ir import Graph
from passes.transforms.coarsen import BlockGraph, Coarsen
from targets import WaferTarget
from targets.cost import CostModel, WaferCostModel

__all__ = ["WAFER_SOLVERS", "WaferOutcome", "plan_wafer", "REGIONS_PER_WAFER"]

WAFER_SOLVERS = ("cpsat", "snake", "blind")
REGIONS_PER_WAFER = 48
"""Default regions per wafer: finer than a layer for 8B-class models, coarse enough
for CP-SAT to place in seconds."""


@dataclass(frozen=True)
class WaferOutcome:
    plan: Plan
    floorplans: tuple[FloorplanResult, ...]
    snake_costs: tuple[int, ...]
    wall_s: float
    interrupted: bool


def plan_wafer(
    graph: Graph,
    target: WaferTarget,
    options: PlanOptions,
    announce: Callable[[str], None] | None = None,
) -> WaferOutcome:
    """Map ``graph`` onto the target's wafers (see the module docstring)."""
    say = announce or (lambda message: None)
    if options.solver not in WAFER_SOLVERS:
        raise UsageError(
            f"--solver {options.solver}: on a wafer choose one of {', '.join(WAFER_SOLVERS)}"
        )
    if options.time_limit_s is not None and not (
        math.isfinite(options.time_limit_s) and options.time_limit_s > 0
    ):
        raise UsageError(f"--time-limit {options.time_limit_s}: give a positive number of seconds")
    started = time.perf_counter()
    cost = CostModel(target)
    assert isinstance(cost, WaferCostModel)
    costs = node_costs(graph)
    check_model_fits(graph, costs, cost, "wafer")
    k = device_count(options, target)
    check_total_fits(costs, cost, target.num_devices if k is None else k, noun="wafer")
    node_s = node_wafer_times(graph, costs, cost)
    per_wafer = options.regions_per_wafer or REGIONS_PER_WAFER
    candidates = (
        [k]
        if k is not None
        else list(
            range(
                max(1, math.ceil(costs.param_bytes / cost.capacity_bytes(0))),
                target.num_devices + 1,
            )
        )
    )
    last_error: InfeasibleError | None = None
    for wafers in candidates:
        runtime = sum(1 for n in graph.nodes if not n.folded)
        coarsening = Coarsen(
            costs,
            node_s,
            min(runtime, per_wafer * wafers),
            max_block_param_bytes=cost.capacity_bytes(0) // 8,
        )
        blocks = coarsening(graph).model
        regions = block_regions(graph, costs, blocks)
        too_big = [r for r in regions if r.memory_bytes > cost.capacity_bytes(0)]
        if too_big:
            r = too_big[0]
            first = graph.nodes[r.runtime[0]].name if r.runtime else str(r.block)
            raise InfeasibleError(
                f"block {r.block} (from node '{first}') needs {human_bytes(r.memory_bytes)}, more than a whole wafer "
                f"holds ({human_bytes(cost.capacity_bytes(0))}); split its ops in the model"
            )
        try:
            say(f"splitting {len(regions)} regions across {wafers} wafer(s)")
            wafer_of, split_status, split_effort, stopped = split_across_wafers(
                graph, blocks, regions, node_s, cost, wafers, options
            )
            return _layout(
                graph,
                costs,
                cost,
                target,
                options,
                blocks,
                regions,
                wafer_of,
                wafers,
                split_status,
                split_effort,
                started,
                say,
                stopped=stopped,
            )
        except InfeasibleError as err:
            if k is not None:
                raise
            last_error = err
    raise last_error or InfeasibleError("no wafer count fits the model")


def _layout(
    graph: Graph,
    costs: CostReport,
    cost: WaferCostModel,
    target: WaferTarget,
    options: PlanOptions,
    blocks: BlockGraph,
    regions: Sequence[BlockRegion],
    wafer_of: Sequence[int],
    wafers: int,
    split_status: str,
    split_effort: float,
    started: float,
    say: Callable[[str], None],
    *,
    stopped: bool,
) -> WaferOutcome:
    owner = {n: blocks.block_of[n] for n in range(graph.num_nodes)}
    flows = wafer_flows(graph, owner, wafer_of)
    rects: dict[int, tuple[int, int, int, int]] = {}
    results, summaries = [], []
    for w in range(wafers):
        on_wafer = [r for r in regions if wafer_of[r.block] == w]
        if not on_wafer:
            continue
        t = tile_size(options, cost, len(on_wafer))
        local = {r.block: i for i, r in enumerate(on_wafer)}
        local_flows = {(local[i], local[j]): b for (i, j), b in flows[w].items()}
        say(
            f"floorplanning wafer {w}: {len(on_wafer)} regions on {cost.target.wafer.width_cores // t}x"
            f"{cost.target.wafer.height_cores // t} tiles of {t}x{t} cores ({options.solver})"
        )
        # After Ctrl-C, the remaining wafers keep their warm-start layout: no more search.
        stopped = stopped or any(r.interrupted for r in results)
        here = (
            dataclasses.replace(options, solver="snake")
            if stopped and options.solver == "cpsat"
            else options
        )
        problem, result, snake = floorplan_wafer(
            w, on_wafer, local_flows, cost, t, here, budget(options, wafers)[1]
        )
        results.append(result)
        in_cores = [to_cores(tile, t) for tile in result.rects]
        for r, rect in zip(on_wafer, in_cores, strict=True):
            rects[r.block] = rect
        summaries.append(
            {
                "wafer": w,
                "regions": len(on_wafer),
                "tile_cores": t,
                "status": result.status,
                "byte_hops": byte_hops(local_flows, in_cores),
                "snake_byte_hops": byte_hops(local_flows, [to_cores(tile, t) for tile in snake]),
                "byte_hops_bound": bound_in_cores(problem, t),
            }
        )
    parts = []
    for r in regions:
        x, y, w, h = rects[r.block]
        parts.append(
            Partition(
                id=r.block,
                device=wafer_of[r.block],
                stage=r.block,
                nodes=r.nodes,
                param_bytes=r.param_bytes,
                activation_bytes=r.activation_bytes,
                memory_bytes=r.memory_bytes,
                capacity_bytes=cost.region_sram_bytes(w, h),
                flops=sum(r.flops_by_dtype.values()),
                compute_s=region_compute_s(cost, r, w, h),
                region=Region(wafer_of[r.block], x, y, w, h),
            )
        )
    transfers = wafer_transfers(graph, owner, parts, cost)
    outcome = _assemble(
        graph,
        costs,
        cost,
        target,
        options,
        parts,
        transfers,
        results,
        summaries,
        split_status,
        split_effort,
        started,
        wafers,
        blocks,
    )
    return dataclasses.replace(outcome, interrupted=outcome.interrupted or stopped)


_STATUS_RANK = {"OPTIMAL": 0, "FEASIBLE": 1, "HEURISTIC": 2}


def _assemble(
    graph: Graph,
    costs: CostReport,
    cost: WaferCostModel,
    target: WaferTarget,
    options: PlanOptions,
    parts: Sequence[Partition],
    transfers: Sequence[Transfer],
    results: Sequence[FloorplanResult],
    summaries: Sequence[dict],
    split_status: str,
    split_effort: float,
    started: float,
    wafers: int,
    blocks: BlockGraph,
) -> WaferOutcome:
    report = simulate_wafer(parts, transfers, target)
    batch = decode_batch(graph)
    if batch is not None:
        figures = decode_figures(
            batch, report.latency_s, report.throughput_per_s, cost, list(range(wafers))
        )
        report = dataclasses.replace(report, decode=figures)
    fields = estimate_fields(report)
    extra = dict(fields["extra"])
    extra.update(unsized_extra(graph, transfers))
    extra["devices_used"] = wafers
    extra["floorplan"] = list(summaries)
    extra["coarsening"] = {
        "blocks": blocks.report.num_blocks,
        "runtime_nodes": blocks.report.num_runtime_nodes,
    }
    statuses = [split_status, *(r.status for r in results)]
    status = max(statuses, key=lambda s: _STATUS_RANK[s])
    period = report.period_s
    node_s = node_wafer_times(graph, costs, cost)
    # No plan on these wafers beats a perfect spread of all compute over all of them.
    bound = min(max(sum(node_s) / wafers, max(node_s, default=0.0)), period)
    plan = Plan(
        model=model_info(graph, costs),
        target=target_info(target),
        solver=SolverInfo(
            name=options.solver,
            status=status,
            objective_s=period,
            bound_s=bound,
            gap=(period - bound) / period if period > 0 else 0.0,
            wall_s=round(split_effort + sum(r.deterministic_s for r in results), 6),
            seed=options.seed,
            time_limit_s=budget(options, wafers)[2],
        ),
        partitions=tuple(parts),
        transfers=tuple(transfers),
        estimate=Estimate(
            latency_s=fields["latency_s"],
            throughput_per_s=fields["throughput_per_s"],
            bottleneck=Bottleneck(**fields["bottleneck"]),
            extra=extra,
        ),
        provenance=Provenance("partition", __version__, options.command),
    )
    interrupted = any(r.interrupted for r in results)
    return WaferOutcome(
        plan,
        tuple(results),
        tuple(s["snake_byte_hops"] for s in summaries),
        time.perf_counter() - started,
        interrupted,
    )
