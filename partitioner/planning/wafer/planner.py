"""Mapping a model onto wafer-scale engines: split across wafers, size regions, floorplan.

1. Coarsen the graph into blocks, one per future region (about 48 per wafer).
2. With several wafers, split the blocks into one contiguous pipeline stage
   per wafer with the pipeline solver (each block's time is its FLOPs on a
   whole wafer; wafers talk over their system links; a wafer holds its blocks'
   parameters *and* activations in SRAM, with some room left for packing).
3. On each wafer, size every region (`sizing`: enough SRAM, balanced compute)
   in tiles of ``t x t`` cores, and floorplan the rectangles (`floorplan`:
   CP-SAT warm-started from the serpentine layout, or a baseline).
4. Lay the plan out exactly: region compute from `WaferCostModel.block_compute_s`,
   transfers between regions over the fabric (hops = centre distance), across
   wafers over the system link, and the estimate from the fabric simulator.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from partitioner.errors import InfeasibleError
from partitioner.plan import (
    Bottleneck,
    Candidate,
    Estimate,
    Parallelism,
    Partition,
    Plan,
    Region,
    SolverInfo,
    Transfer,
)
from partitioner.planning.common import (
    assemble_plan,
    check_model_fits,
    check_total_fits,
    decode_batch,
    device_count,
    resolve_objective,
    unsized_extra,
)
from partitioner.planning.load_fit import with_load_model
from partitioner.planning.options import WAFER_SOLVERS, WaferOptions
from partitioner.planning.serving_dims import serving_dims
from partitioner.planning.wafer.layout import (
    bound_in_cores,
    budget,
    byte_hops,
    floorplan_wafer,
    tile_size,
    to_cores,
)
from partitioner.planning.wafer.regions import BlockRegion, block_regions, node_wafer_times
from partitioner.planning.wafer.split import split_across_wafers
from partitioner.planning.wafer.transfers import wafer_flows, wafer_transfers
from partitioner.simulate import (
    batches_in_flight,
    decode_figures,
    estimate_fields,
    simulate_wafer,
)
from partitioner.solvers.floorplan import FloorplanResult
from partitioner.units import human_bytes
from passes.analysis.costs import CostReport, node_costs
from passes.ir import Graph
from passes.transforms.coarsen import BlockGraph, Coarsen
from targets import WaferTarget
from targets.cost import CostModel, WaferCostModel

__all__ = ["WAFER_SOLVERS", "WaferOutcome", "plan_wafer", "REGIONS_PER_WAFER"]

log = logging.getLogger(__name__)

REGIONS_PER_WAFER = 48
"""Default regions per wafer: finer than a layer for 8B-class models, coarse enough
for CP-SAT to place in seconds."""

Announce = Callable[[str], None]


@dataclass(frozen=True)
class WaferOutcome:
    plan: Plan
    floorplans: tuple[FloorplanResult, ...]
    snake_costs: tuple[int, ...]
    wall_s: float
    interrupted: bool


@dataclass(frozen=True)
class _Job:
    """One attempt at a wafer count: the model, its regions, and the split across wafers."""

    graph: Graph
    costs: CostReport
    cost_model: WaferCostModel
    options: WaferOptions
    blocks: BlockGraph
    regions: Sequence[BlockRegion]
    wafers: int
    wafer_of: Sequence[int]
    split_status: str
    split_effort_s: float
    stopped: bool


@dataclass(frozen=True)
class _Floorplans:
    """Every wafer's floorplan: each block's rectangle in cores, the results, their summaries."""

    rects: dict[int, tuple[int, int, int, int]]
    results: tuple[FloorplanResult, ...]
    summaries: tuple[dict, ...]
    stopped: bool


def plan_wafer(
    graph: Graph,
    target: WaferTarget,
    options: WaferOptions | None = None,
    announce: Announce | None = None,
) -> WaferOutcome:
    """Map ``graph`` onto the target's wafers (see the module docstring)."""
    say = announce or (lambda message: None)
    options = options or WaferOptions()
    options = dataclasses.replace(options, objective=resolve_objective(graph, options.objective))
    started = time.perf_counter()
    cost_model = CostModel(target)
    assert isinstance(cost_model, WaferCostModel)
    costs = node_costs(graph)
    check_model_fits(graph, costs, cost_model, "wafer")
    k = device_count(options, target)
    check_total_fits(costs, cost_model, target.num_devices if k is None else k, noun="wafer")
    if k is not None:
        candidates = [k]
    else:
        fewest = max(1, math.ceil(costs.param_bytes / cost_model.capacity_bytes(0)))
        candidates = list(range(fewest, target.num_devices + 1))
    last_error: InfeasibleError | None = None
    for wafers in candidates:
        try:
            job = _split(graph, costs, cost_model, options, wafers, say)
            return _layout(job, target, started, say)
        except InfeasibleError as err:
            if k is not None:
                raise
            log.info("%d wafer(s) do not fit: %s", wafers, err)
            last_error = err
    raise last_error or InfeasibleError("no wafer count fits the model")


def _split(
    graph: Graph,
    costs: CostReport,
    cost_model: WaferCostModel,
    options: WaferOptions,
    wafers: int,
    say: Announce,
) -> _Job:
    """Coarsen into about ``regions`` blocks a wafer and split them across ``wafers``."""
    node_s = node_wafer_times(graph, costs, cost_model)
    per_wafer = options.regions_per_wafer or REGIONS_PER_WAFER
    runtime = sum(1 for n in graph.nodes if not n.folded)
    coarsening = Coarsen(
        costs,
        node_s,
        min(runtime, per_wafer * wafers),
        max_block_param_bytes=cost_model.capacity_bytes(0) // 8,
    )
    blocks = coarsening(graph).model
    regions = block_regions(graph, costs, blocks)
    too_big = [r for r in regions if r.memory_bytes > cost_model.capacity_bytes(0)]
    if too_big:
        r = too_big[0]
        first = graph.nodes[r.runtime[0]].name if r.runtime else str(r.block)
        raise InfeasibleError(
            f"block {r.block} (from node '{first}') needs {human_bytes(r.memory_bytes)}, more than a whole wafer "
            f"holds ({human_bytes(cost_model.capacity_bytes(0))}); split its ops in the model"
        )
    say(f"splitting {len(regions)} regions across {wafers} wafer(s)")
    wafer_of, status, effort_s, stopped = split_across_wafers(
        graph, blocks, regions, node_s, cost_model, wafers, options
    )
    return _Job(
        graph,
        costs,
        cost_model,
        options,
        blocks,
        regions,
        wafers,
        wafer_of,
        status,
        effort_s,
        stopped,
    )


def _floorplan_wafers(job: _Job, flows: dict, say: Announce) -> _Floorplans:
    """Size and place each wafer's regions in turn."""
    cost_model, options = job.cost_model, job.options
    rects: dict[int, tuple[int, int, int, int]] = {}
    results, summaries = [], []
    stopped = job.stopped
    for w in range(job.wafers):
        on_wafer = [r for r in job.regions if job.wafer_of[r.block] == w]
        if not on_wafer:
            continue
        t = tile_size(options, cost_model, len(on_wafer))
        local = {r.block: i for i, r in enumerate(on_wafer)}
        local_flows = {(local[i], local[j]): b for (i, j), b in flows[w].items()}
        say(
            f"floorplanning wafer {w}: {len(on_wafer)} regions on {cost_model.target.wafer.width_cores // t}x"
            f"{cost_model.target.wafer.height_cores // t} tiles of {t}x{t} cores ({options.solver})"
        )
        # After Ctrl-C, the remaining wafers keep their warm-start layout: no more search.
        stopped = stopped or any(r.interrupted for r in results)
        here = (
            dataclasses.replace(options, solver="snake")
            if stopped and options.solver == "cpsat"
            else options
        )
        problem, result, snake = floorplan_wafer(
            w, on_wafer, local_flows, cost_model, t, here, budget(options, job.wafers)[1]
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
    return _Floorplans(rects, tuple(results), tuple(summaries), stopped)


def _partitions(job: _Job, rects: dict[int, tuple[int, int, int, int]]) -> list[Partition]:
    """One partition per region, with its rectangle and the cost model's seconds."""
    parts = []
    for r in job.regions:
        x, y, w, h = rects[r.block]
        wafer = job.wafer_of[r.block]
        parts.append(
            Partition(
                id=r.block,
                stage=wafer,
                devices=(wafer,),
                nodes=r.nodes,
                param_bytes=r.param_bytes,
                activation_bytes=r.activation_bytes,
                kv_cache_bytes=r.kv_bytes,
                memory_bytes=r.memory_bytes,
                capacity_bytes=job.cost_model.region_sram_bytes(w, h),
                flops=sum(r.flops_by_dtype.values()),
                compute_s=job.cost_model.block_compute_s(r.flops_by_dtype, w, h, r.matmuls),
                region=Region(wafer, x, y, w, h),
            )
        )
    return parts


def _layout(job: _Job, target: WaferTarget, started: float, say: Announce) -> WaferOutcome:
    owner = {n: job.blocks.block_of[n] for n in range(job.graph.num_nodes)}
    floorplans = _floorplan_wafers(job, wafer_flows(job.graph, owner, job.wafer_of), say)
    parts = _partitions(job, floorplans.rects)
    transfers = wafer_transfers(job.graph, owner, parts, job.cost_model)
    plan = _assemble(job, target, parts, transfers, floorplans)
    if serving_dims(job.graph) is not None and not floorplans.stopped:
        say("solving the load model: the analysis at 7 more (batch, past) points")
        plan = with_load_model(plan, job.graph, None)
    return WaferOutcome(
        plan,
        floorplans.results,
        tuple(s["snake_byte_hops"] for s in floorplans.summaries),
        time.perf_counter() - started,
        floorplans.stopped or any(r.interrupted for r in floorplans.results),
    )


_STATUS_RANK = {"OPTIMAL": 0, "FEASIBLE": 1, "HEURISTIC": 2}


def _estimate(
    job: _Job, parts: Sequence[Partition], transfers: Sequence[Transfer], floorplans: _Floorplans
) -> Estimate:
    """The fabric simulator's figures, with decode rates and the floorplans' summaries."""
    report = simulate_wafer(parts, transfers, job.cost_model.target)
    batch = decode_batch(job.graph)
    if batch is not None:
        in_flight = batches_in_flight(parts, batch, report.latency_s, report.throughput_per_s)
        figures = decode_figures(
            batch,
            report.latency_s,
            report.throughput_per_s,
            job.cost_model,
            list(range(job.wafers)),
            in_flight,
        )
        report = report.with_decode(figures)
    fields = estimate_fields(report)
    extra = dict(fields["extra"])
    extra.update(unsized_extra(job.graph, transfers))
    extra["devices_used"] = job.wafers
    extra["floorplan"] = list(floorplans.summaries)
    extra["coarsening"] = {
        "blocks": job.blocks.report.num_blocks,
        "runtime_nodes": job.blocks.report.num_runtime_nodes,
    }
    return Estimate(
        latency_s=fields["latency_s"],
        throughput_per_s=fields["throughput_per_s"],
        bottleneck=Bottleneck(**fields["bottleneck"]),
        extra=extra,
    )


def _solver_info(job: _Job, period_s: float, floorplans: _Floorplans) -> SolverInfo:
    """The least sure status of the split and the floorplans, and a bound on the period."""
    statuses = [job.split_status, *(r.status for r in floorplans.results)]
    node_s = node_wafer_times(job.graph, job.costs, job.cost_model)
    # No plan on these wafers beats a perfect spread of all compute over all of them.
    bound = min(max(sum(node_s) / job.wafers, max(node_s, default=0.0)), period_s)
    effort_s = job.split_effort_s + sum(r.deterministic_s for r in floorplans.results)
    status = max(statuses, key=lambda s: _STATUS_RANK[s])
    return SolverInfo(
        name=job.options.solver,
        status=status,
        objective_s=period_s,
        bound_s=bound,
        gap=(period_s - bound) / period_s if period_s > 0 else 0.0,
        effort_s=round(effort_s, 6),
        seed=job.options.seed,
        time_limit_s=budget(job.options, job.wafers)[2],
        candidates=(Candidate(1, job.wafers, 1, status, period_s, bound),),
    )


def _assemble(
    job: _Job,
    target: WaferTarget,
    parts: Sequence[Partition],
    transfers: Sequence[Transfer],
    floorplans: _Floorplans,
) -> Plan:
    estimate = _estimate(job, parts, transfers, floorplans)
    solver = _solver_info(job, estimate.extra["period_s"], floorplans)
    # Regions stream into one another: a wafer's transfers overlap its compute.
    parallelism = Parallelism(1, job.wafers, 1, 1, True, job.options.objective)
    return assemble_plan(
        job.graph, job.costs, target, job.options, solver, parallelism, parts, transfers, estimate
    )
