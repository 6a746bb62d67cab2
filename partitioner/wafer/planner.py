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
import functools
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from partitioner import __version__
from partitioner.gpu_plan import decode_batch
from partitioner.pipeline import stage_flows
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
    check_nodes_fit,
    check_total_fits,
    device_count,
    model_info,
    target_info,
)
from partitioner.simulate import decode_figures, estimate_fields, simulate_wafer
from partitioner.solvers.cpsat_pipeline import cpsat_partition
from partitioner.solvers.dp import dp_partition
from partitioner.solvers.problem import PipelineProblem
from partitioner.units import human_bytes
from partitioner.wafer.floorplan import (
    FloorplanProblem,
    FloorplanResult,
    TileRect,
    blind_layout,
    cost_lower_bound,
    cpsat_floorplan,
    layout_cost,
    snake_layout,
    with_shapes,
)
from partitioner.wafer.sizing import SizingError, shape_options, size_regions
from passes.analysis.costs import CostReport, node_costs
from passes.analysis.liveness import activation_liveness
from passes.ir import Graph
from passes.transforms.coarsen import BlockGraph, coarsen
from targets import HOST, WaferTarget
from targets.cost import CostModel, WaferCostModel, stage_memory_bytes
from targets.fabric import center_hops, transfer_lanes

__all__ = ["WAFER_SOLVERS", "WaferOutcome", "plan_wafer", "REGIONS_PER_WAFER"]

WAFER_SOLVERS = ("cpsat", "snake", "blind")
REGIONS_PER_WAFER = 48
"""Default regions per wafer: finer than a layer for 8B-class models, coarse enough
for CP-SAT to place in seconds."""
# Share of a wafer's tiles the sizing may hand out: rectangles need some slack to pack.
FILLS = (0.99, 0.97, 0.95, 0.92, 0.88, 0.8, 0.7, 0.6)
# Share of a wafer's usable SRAM the split across wafers may fill (the rest is packing room).
SPLIT_FILL = 0.97


@dataclass(frozen=True)
class WaferOutcome:
    plan: Plan
    floorplans: tuple[FloorplanResult, ...]
    snake_costs: tuple[int, ...]
    wall_s: float
    interrupted: bool


@dataclass(frozen=True)
class _Region:
    block: int
    nodes: tuple[int, ...]
    runtime: tuple[int, ...]
    flops_by_dtype: dict[str, int]
    matmuls: int
    param_bytes: int
    kv_bytes: int
    activation_bytes: int

    @property
    def memory_bytes(self) -> int:
        return stage_memory_bytes(self.param_bytes, self.activation_bytes, 1, 0, self.kv_bytes)


def _node_wafer_times(graph: Graph, costs: CostReport, cost: WaferCostModel) -> list[float]:
    """Seconds of each node if a whole wafer computed it (its share of a wafer's work)."""
    w = cost.target.wafer
    return [
        0.0
        if node.folded or not c.flops
        else cost.region_compute_s(c.flops, w.width_cores, w.height_cores, c.dtype or "float16")
        for node, c in zip(graph.nodes, costs.nodes, strict=True)
    ]


def _region_compute_s(cost: WaferCostModel, region: _Region, w: int, h: int) -> float:
    """FMAC time per dtype plus the mesh term once (num_matmuls hops across the region)."""
    total, mesh_done = 0.0, False
    for dtype, flops in sorted(region.flops_by_dtype.items()):
        total += cost.region_compute_s(flops, w, h, dtype, 0 if mesh_done else region.matmuls)
        mesh_done = True
    if not mesh_done and region.matmuls:
        total += cost.region_compute_s(0, w, h, "float16", region.matmuls)
    return total


def _regions(graph: Graph, costs: CostReport, blocks: BlockGraph) -> list[_Region]:
    out = []
    for b in blocks.blocks:
        runtime = tuple(n for n in b.nodes if not graph.nodes[n].folded)
        by_dtype: dict[str, int] = defaultdict(int)
        for n in runtime:
            if costs.nodes[n].flops:
                by_dtype[costs.nodes[n].dtype or "float16"] += costs.nodes[n].flops
        peak = activation_liveness(graph, list(runtime)).peak_bytes if runtime else 0
        out.append(
            _Region(
                b.id,
                b.nodes,
                runtime,
                dict(by_dtype),
                b.matmuls,
                b.param_bytes,
                b.kv_cache_bytes,
                peak,
            )
        )
    return out


def _split_across_wafers(
    graph: Graph,
    blocks: BlockGraph,
    regions: Sequence[_Region],
    node_s: Sequence[float],
    cost: WaferCostModel,
    k: int,
    options: PlanOptions,
) -> tuple[list[int], str, float, bool]:
    """One contiguous pipeline stage of blocks per wafer (stage k on wafer k).

    Returns:
        (wafer of each block, solver status, deterministic seconds, interrupted by Ctrl-C).
    """
    if k == 1:
        return [0] * len(regions), "OPTIMAL", 0.0, False

    def transfer_s(nbytes: int, a: int, b: int) -> float:
        if a == b:
            return 0.0
        return (
            cost.host_transfer_s(nbytes) if HOST in (a, b) else cost.inter_wafer_transfer_s(nbytes)
        )

    devices = list(range(k))
    relay, host_in, host_out_s, host_out_bytes = stage_flows(graph, blocks, transfer_s, devices)
    times = tuple(tuple([sum(node_s[n] for n in r.runtime)] * k) for r in regions)
    problem, hint = _memory_balanced_split(
        PipelineProblem(
            num_stages=k,
            block_time_s=times,
            # a wafer keeps every block's parameters and activations in SRAM at once
            block_resident_bytes=tuple(r.memory_bytes for r in regions),
            block_activation_bytes=tuple(0 for _ in regions),
            block_host_out_s=host_out_s,
            block_host_out_bytes=host_out_bytes,
            edges=tuple((e.src, e.dst) for e in blocks.edges),
            relay_flows=relay,
            host_flows=host_in,
            capacity_bytes=(cost.capacity_bytes(0),) * k,
            overlap_transfers=True,
            objective=options.objective,
            block_nodes=tuple(len(r.runtime) for r in regions),
        )
    )
    if options.solver != "cpsat":
        if hint is None:
            raise InfeasibleError(
                f"no split of the model across {k} wafers fits their SRAM; use more wafers"
            )
        return hint, "HEURISTIC", 0.0, False
    result = cpsat_partition(
        problem, hint=hint, time_limit_s=_budget(options, k)[0], seed=options.seed
    )
    if result.stage_of is None:
        raise InfeasibleError(
            f"no split of the model across {k} wafers fits their SRAM (parameters {human_bytes(sum(r.param_bytes for r in regions))}); "
            "use more wafers, e.g. --devices auto on a larger target"
        )
    return list(result.stage_of), result.status, result.deterministic_s, result.interrupted


def _memory_balanced_split(problem: PipelineProblem) -> tuple[PipelineProblem, list[int] | None]:
    """Cap every wafer's SRAM near the average fill, so no wafer is too full to pack.

    Rectangles pack to about 95 % of a wafer, so a wafer at 97 % fails even when
    the wafers' average is 94 %. The cap starts just above the average and
    loosens until the exact DP finds a split under it.
    """
    capacity = problem.capacity_bytes[0]
    average = sum(problem.block_resident_bytes) / (problem.num_stages * capacity)
    steps = sorted(
        {min(SPLIT_FILL, average + d) for d in (0.005, 0.01, 0.02, 0.04, 0.08)} | {SPLIT_FILL}
    )
    for fill in steps:
        capped = dataclasses.replace(
            problem, capacity_bytes=(int(capacity * fill),) * problem.num_stages
        )
        hint = dp_partition(capped)
        if hint is not None:
            return capped, hint
    return dataclasses.replace(
        problem, capacity_bytes=(int(capacity * SPLIT_FILL),) * problem.num_stages
    ), None


# Default CP-SAT budgets (deterministic seconds): the split across wafers, then
# each wafer's floorplan (beyond ~3 s the floorplan improves slowly; BENCHMARKS.md).
SPLIT_BUDGET_S = 5.0
FLOORPLAN_BUDGET_S = 3.0


def _budget(options: PlanOptions, wafers: int) -> tuple[float, float, float]:
    """(split, per-wafer floorplan, total) budgets; --time-limit is shared 20/80."""
    if options.time_limit_s is None:
        split = SPLIT_BUDGET_S if wafers > 1 else 0.0
        return split, FLOORPLAN_BUDGET_S, split + FLOORPLAN_BUDGET_S * wafers
    split = 0.2 * options.time_limit_s if wafers > 1 else 0.0
    return split, (options.time_limit_s - split) / wafers, options.time_limit_s


def _tile_size(options: PlanOptions, cost: WaferCostModel, num_regions: int) -> int:
    w = cost.target.wafer
    if options.tile_cores is not None:
        t = options.tile_cores
        if t < 1 or t > min(w.width_cores, w.height_cores):
            raise UsageError(
                f"--tile {t}: the {w.width_cores}x{w.height_cores}-core grid is too small for tiles of "
                f"{t}x{t} cores; use 1..{min(w.width_cores, w.height_cores)}"
            )
    else:
        # About 200 tiles per region (3000 to 20000 a wafer): fine enough that shelves
        # waste a few percent of a region, coarse enough for CP-SAT.
        tiles_wanted = min(20_000, max(3_000, 200 * num_regions))
        t = max(1, math.floor(math.sqrt(w.width_cores * w.height_cores / tiles_wanted)))
    tiles = (w.width_cores // t) * (w.height_cores // t)
    if tiles < num_regions:
        raise UsageError(
            f"the {w.width_cores}x{w.height_cores}-core grid in {t}x{t}-core tiles has {tiles} tiles, fewer "
            f"than the {num_regions} regions to place; use a smaller --tile or fewer --regions"
        )
    return t


def _floorplan_wafer(
    wafer: int,
    regions: Sequence[_Region],
    flows: dict[tuple[int, int], int],
    cost: WaferCostModel,
    t: int,
    options: PlanOptions,
    time_limit_s: float,
) -> tuple[FloorplanProblem, FloorplanResult, list[TileRect]]:
    """Size and place one wafer's regions; returns the problem, the result and the snake layout."""
    w = cost.target.wafer
    gw, gh = w.width_cores // t, w.height_cores // t
    min_tiles = [max(1, math.ceil(cost.cores_needed(r.memory_bytes) / (t * t))) for r in regions]

    def time_s(i: int, tiles: int) -> float:
        side = max(1, min(w.width_cores, math.ceil(math.sqrt(tiles) * t)))
        other = max(1, min(w.height_cores, math.ceil(tiles * t * t / side)))
        return _region_compute_s(cost, regions[i], side, other)

    for fill in FILLS:
        try:
            sized = size_regions(min_tiles, int(gw * gh * fill), time_s)
        except SizingError as err:
            if fill == FILLS[-1] or sum(min_tiles) > gw * gh:
                raise InfeasibleError(
                    f"wafer {wafer}: its regions need {human_bytes(sum(r.memory_bytes for r in regions))} of SRAM, "
                    f"more than the wafer's {human_bytes(cost.capacity_bytes(wafer))} can hold once packed "
                    f"({err}); use more wafers"
                ) from err
            continue
        shapes = tuple(tuple(shape_options(s.tiles, gw, gh)) for s in sized)
        if any(not options_ for options_ in shapes):
            continue
        problem = FloorplanProblem(
            gw,
            gh,
            shapes,
            tuple((i, j, b) for (i, j), b in sorted(flows.items())),
            tuple(s.tiles for s in sized),
        )

        reference_s = max(time_s(i, s.tiles) for i, s in enumerate(sized)) or 1.0
        slowest_then_cost = functools.partial(
            _slowest_then_cost,
            problem=problem,
            regions=regions,
            cost=cost,
            t=t,
            reference_s=reference_s,
        )
        snake = snake_layout(problem, slowest_then_cost)
        if snake is None:
            continue  # too full to pack: give the regions fewer tiles and retry
        problem = with_shapes(problem, snake)
        if options.solver == "snake":
            return problem, _heuristic(problem, snake), snake
        if options.solver == "blind":
            blind = blind_layout(problem, slowest_then_cost)
            if blind is None:
                continue
            problem = with_shapes(problem, blind)
            return problem, _heuristic(problem, blind), snake
        result = cpsat_floorplan(problem, hint=snake, time_limit_s=time_limit_s, seed=options.seed)
        return problem, result, snake
    raise InfeasibleError(
        f"wafer {wafer}: the {len(regions)} regions cannot be packed on the {w.width_cores}x{w.height_cores} grid "
        f"even at {int(100 * FILLS[-1])}% fill; use more wafers or fewer --regions"
    )


def _slowest_then_cost(
    rects: Sequence[TileRect],
    *,
    problem: FloorplanProblem,
    regions: Sequence[_Region],
    cost: WaferCostModel,
    t: int,
    reference_s: float,
) -> tuple[int, int]:
    """Rank shelf layouts: slowest region first (in 1 % steps), then fabric cost.

    The slowest region sets the period, and a shelf count that makes regions
    long and thin lengthens their mesh reductions.
    """
    slowest = max(
        _region_compute_s(cost, r, rect.w * t, rect.h * t)
        for r, rect in zip(regions, rects, strict=True)
    )
    return (math.ceil(slowest / reference_s * 100), layout_cost(problem, rects))


def _heuristic(problem: FloorplanProblem, rects: Sequence[TileRect]) -> FloorplanResult:
    return FloorplanResult(
        tuple(rects), "HEURISTIC", layout_cost(problem, rects), cost_lower_bound(problem), 0.0, 0.0
    )


def _wafer_flows(
    graph: Graph, owner: dict[int, int], wafer_of: Sequence[int]
) -> dict[int, dict[tuple[int, int], int]]:
    """Per wafer: (region i, region j) -> bytes of runtime tensors i makes and j reads."""
    flows: dict[int, dict[tuple[int, int], int]] = defaultdict(lambda: defaultdict(int))
    for t in graph.iter_tensors():
        if t.is_param or t.producer is None or not t.is_static:
            continue
        src = owner[t.producer]
        for dst in sorted({owner[c] for c in t.consumers if not graph.nodes[c].folded} - {src}):
            if wafer_of[src] == wafer_of[dst]:
                flows[wafer_of[src]][src, dst] += t.nbytes
    return flows


def _transfers(
    graph: Graph, owner: dict[int, int], parts: Sequence[Partition], cost: WaferCostModel
) -> list[Transfer]:
    """Every tensor's moves: over the fabric on its wafer, once across to each other wafer.

    A tensor several regions of another wafer (or the host's inputs) need
    crosses the system link once, to the first of them, which relays it over
    that wafer's fabric to the rest.
    """
    rect = {p.id: (p.region.x, p.region.y, p.region.w, p.region.h) for p in parts}  # type: ignore[union-attr]
    wafer = {p.id: p.device for p in parts}
    out: list[Transfer] = []

    def fabric(name: str, nbytes: int, src: int, dst: int) -> Transfer:
        hops = center_hops(rect[src], rect[dst])
        lanes = transfer_lanes(rect[src], rect[dst])
        return Transfer(name, nbytes, src, dst, cost.fabric_transfer_s(nbytes, hops, lanes), hops)

    for t in graph.iter_tensors():
        if t.is_param or not t.is_static or (t.kind == "input" and t.is_kv_cache):
            continue
        readers = sorted({owner[c] for c in t.consumers if not graph.nodes[c].folded})
        source = HOST if t.kind == "input" else owner[t.producer]
        by_wafer: dict[int, list[int]] = defaultdict(list)
        for r in readers:
            if r != source:
                by_wafer[wafer[r]].append(r)
        for w, targets_on_w in sorted(by_wafer.items()):
            if source != HOST and w == wafer[source]:
                out += [fabric(t.name, t.nbytes, source, r) for r in targets_on_w]
                continue
            entry, rest = targets_on_w[0], targets_on_w[1:]
            cross_s = (
                cost.host_transfer_s(t.nbytes)
                if source == HOST
                else cost.inter_wafer_transfer_s(t.nbytes)
            )
            out.append(Transfer(t.name, t.nbytes, source, entry, cross_s))
            out += [fabric(t.name, t.nbytes, entry, r) for r in rest]
        if t.is_graph_output and not t.is_kv_cache_output and source != HOST:
            out.append(Transfer(t.name, t.nbytes, source, HOST, cost.host_transfer_s(t.nbytes)))
    return sorted(out, key=lambda tr: (tr.src, tr.dst if tr.dst != HOST else 1 << 30, tr.tensor))


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
    if options.time_limit_s is not None and options.time_limit_s <= 0:
        raise UsageError(f"--time-limit {options.time_limit_s}: give a positive number of seconds")
    started = time.perf_counter()
    cost = CostModel(target)
    assert isinstance(cost, WaferCostModel)
    costs = node_costs(graph)
    check_nodes_fit(graph, costs, cost, noun="wafer")
    k = device_count(options, target)
    check_total_fits(costs, cost, target.num_devices if k is None else k, noun="wafer")
    node_s = _node_wafer_times(graph, costs, cost)
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
        blocks = coarsen(
            graph,
            costs,
            node_s,
            min(runtime, per_wafer * wafers),
            max_block_param_bytes=cost.capacity_bytes(0) // 8,
        )
        regions = _regions(graph, costs, blocks)
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
            wafer_of, split_status, split_effort, stopped = _split_across_wafers(
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
    regions: Sequence[_Region],
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
    flows = _wafer_flows(graph, owner, wafer_of)
    rects: dict[int, tuple[int, int, int, int]] = {}
    results, summaries = [], []
    for w in range(wafers):
        on_wafer = [r for r in regions if wafer_of[r.block] == w]
        if not on_wafer:
            continue
        t = _tile_size(options, cost, len(on_wafer))
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
        problem, result, snake = _floorplan_wafer(
            w, on_wafer, local_flows, cost, t, here, _budget(options, wafers)[1]
        )
        results.append(result)
        in_cores = [_to_cores(tile, t) for tile in result.rects]
        for r, rect in zip(on_wafer, in_cores, strict=True):
            rects[r.block] = rect
        summaries.append(
            {
                "wafer": w,
                "regions": len(on_wafer),
                "tile_cores": t,
                "status": result.status,
                "byte_hops": _byte_hops(local_flows, in_cores),
                "snake_byte_hops": _byte_hops(local_flows, [_to_cores(tile, t) for tile in snake]),
                "byte_hops_bound": _bound_in_cores(problem, t),
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
                compute_s=_region_compute_s(cost, r, w, h),
                region=Region(wafer_of[r.block], x, y, w, h),
            )
        )
    transfers = _transfers(graph, owner, parts, cost)
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


def _to_cores(tile: TileRect, t: int) -> tuple[int, int, int, int]:
    return (tile.x * t, tile.y * t, tile.w * t, tile.h * t)


def _byte_hops(
    flows: dict[tuple[int, int], int], rects: Sequence[tuple[int, int, int, int]]
) -> int:
    """Σ bytes × centre hops, in cores (what the plan's transfers carry as ``hops``)."""
    return sum(b * center_hops(rects[i], rects[j]) for (i, j), b in flows.items())


def _bound_in_cores(problem: FloorplanProblem, t: int) -> int:
    """The geometric lower bound in cores: doubled tile distance × t/2, less a hop of rounding."""
    return sum(
        b * max(0, math.floor(d2 * t / 2) - 1)
        for (i, j, b), d2 in zip(problem.flows, _min_d2(problem), strict=True)
    )


def _min_d2(problem: FloorplanProblem) -> list[int]:
    return [
        min(min(wi + wj, hi + hj) for wi, hi in problem.shapes[i] for wj, hj in problem.shapes[j])
        for i, j, _ in problem.flows
    ]


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
    extra["devices_used"] = wafers
    extra["floorplan"] = list(summaries)
    extra["coarsening"] = {
        "blocks": blocks.report.num_blocks,
        "runtime_nodes": blocks.report.num_runtime_nodes,
    }
    statuses = [split_status, *(r.status for r in results)]
    status = max(statuses, key=lambda s: _STATUS_RANK[s])
    period = report.period_s
    node_s = _node_wafer_times(graph, costs, cost)
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
            time_limit_s=_budget(options, wafers)[2],
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
