"""One wafer's layout: tile size, region sizes and shapes, placement, and fabric cost."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from partitioner.errors import InfeasibleError, UsageError
from partitioner.planning.options import WaferOptions
from partitioner.planning.wafer.regions import BlockRegion
from partitioner.solvers.floorplan import (
    FloorplanProblem,
    FloorplanResult,
    TileRect,
    blind_layout,
    cost_lower_bound,
    layout_cost,
    snake_layout,
    with_shapes,
)
from partitioner.solvers.floorplan_cpsat import cpsat_floorplan
from partitioner.solvers.sizing import SizingError, shape_options, size_regions
from partitioner.units import human_bytes
from targets.cost import WaferCostModel
from targets.fabric import center_hops

__all__ = [
    "FILLS",
    "SPLIT_BUDGET_S",
    "FLOORPLAN_BUDGET_S",
    "budget",
    "tile_size",
    "floorplan_wafer",
    "slowest_then_cost",
    "heuristic_result",
    "to_cores",
    "byte_hops",
    "bound_in_cores",
    "min_d2",
]


# Share of a wafer's tiles the sizing may hand out: rectangles need some slack to pack.
FILLS = (0.99, 0.97, 0.95, 0.92, 0.88, 0.8, 0.7, 0.6)

# Default CP-SAT budgets (deterministic seconds): the split across wafers, then
# each wafer's floorplan (beyond ~3 s the floorplan improves slowly; BENCHMARKS.md).
SPLIT_BUDGET_S = 5.0
FLOORPLAN_BUDGET_S = 3.0


def budget(options: WaferOptions, wafers: int) -> tuple[float, float, float]:
    """(split, per-wafer floorplan, total) budgets; --time-limit is shared 20/80."""
    if options.time_limit_s is None:
        split = SPLIT_BUDGET_S if wafers > 1 else 0.0
        return split, FLOORPLAN_BUDGET_S, split + FLOORPLAN_BUDGET_S * wafers
    split = 0.2 * options.time_limit_s if wafers > 1 else 0.0
    return split, (options.time_limit_s - split) / wafers, options.time_limit_s


def tile_size(options: WaferOptions, cost_model: WaferCostModel, num_regions: int) -> int:
    w = cost_model.target.wafer
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


def _region_time_s(cost_model: WaferCostModel, region: BlockRegion, tiles: int, t: int) -> float:
    """A region's compute seconds on ``tiles`` tiles of ``t``×``t`` cores, laid out near square."""
    w = cost_model.target.wafer
    side = max(1, min(w.width_cores, math.ceil(math.sqrt(tiles) * t)))
    other = max(1, min(w.height_cores, math.ceil(tiles * t * t / side)))
    return cost_model.block_compute_s(region.flops_by_dtype, side, other, region.matmuls)


def _sized_problem(
    regions: Sequence[BlockRegion],
    flows: dict[tuple[int, int], int],
    cost_model: WaferCostModel,
    t: int,
    fill: float,
    wafer: int,
) -> FloorplanProblem | None:
    """Region sizes for ``fill`` of the wafer's tiles, with their shapes; None to retry fuller.

    Raises:
        InfeasibleError: the regions' SRAM does not fit the wafer at all.
    """
    w = cost_model.target.wafer
    gw, gh = w.width_cores // t, w.height_cores // t
    min_tiles = [
        max(1, math.ceil(cost_model.cores_needed(r.memory_bytes) / (t * t))) for r in regions
    ]
    try:
        sized = size_regions(
            min_tiles,
            int(gw * gh * fill),
            lambda i, n: _region_time_s(cost_model, regions[i], n, t),
        )
    except SizingError as err:
        if fill == FILLS[-1] or sum(min_tiles) > gw * gh:
            raise InfeasibleError(
                f"wafer {wafer}: its regions need {human_bytes(sum(r.memory_bytes for r in regions))} of SRAM, "
                f"more than the wafer's {human_bytes(cost_model.capacity_bytes(wafer))} can hold once packed "
                f"({err}); use more wafers"
            ) from err
        return None
    shapes = tuple(tuple(shape_options(s.tiles, gw, gh)) for s in sized)
    if any(not options_ for options_ in shapes):
        return None
    flow_list = tuple((i, j, b) for (i, j), b in sorted(flows.items()))
    return FloorplanProblem(gw, gh, shapes, flow_list, tuple(s.tiles for s in sized))


def floorplan_wafer(
    wafer: int,
    regions: Sequence[BlockRegion],
    flows: dict[tuple[int, int], int],
    cost_model: WaferCostModel,
    t: int,
    options: WaferOptions,
    time_limit_s: float,
) -> tuple[FloorplanProblem, FloorplanResult, list[TileRect]]:
    """Size and place one wafer's regions; returns the problem, the result and the snake layout.

    Sizes start at 99 % of the wafer's tiles and shrink (`FILLS`) until the
    shelves pack.
    """
    for fill in FILLS:
        problem = _sized_problem(regions, flows, cost_model, t, fill, wafer)
        if problem is None:
            continue
        reference_s = max(
            _region_time_s(cost_model, r, tiles, t)
            for r, tiles in zip(regions, problem.areas, strict=True)
        )
        rank = functools.partial(
            slowest_then_cost,
            problem=problem,
            regions=regions,
            cost_model=cost_model,
            t=t,
            reference_s=reference_s or 1.0,
        )
        snake = snake_layout(problem, rank)
        if snake is None:
            continue  # too full to pack: give the regions fewer tiles and retry
        problem = with_shapes(problem, snake)
        if options.solver == "snake":
            return problem, heuristic_result(problem, snake), snake
        if options.solver == "blind":
            blind = blind_layout(problem, rank)
            if blind is None:
                continue
            problem = with_shapes(problem, blind)
            return problem, heuristic_result(problem, blind), snake
        result = cpsat_floorplan(problem, hint=snake, time_limit_s=time_limit_s, seed=options.seed)
        return problem, result, snake
    w = cost_model.target.wafer
    raise InfeasibleError(
        f"wafer {wafer}: the {len(regions)} regions cannot be packed on the {w.width_cores}x{w.height_cores} grid "
        f"even at {int(100 * FILLS[-1])}% fill; use more wafers or fewer --regions"
    )


def slowest_then_cost(
    rects: Sequence[TileRect],
    *,
    problem: FloorplanProblem,
    regions: Sequence[BlockRegion],
    cost_model: WaferCostModel,
    t: int,
    reference_s: float,
) -> tuple[int, int]:
    """Rank shelf layouts: slowest region first (in 1 % steps), then fabric cost.

    The slowest region sets the period, and a shelf count that makes regions
    long and thin lengthens their mesh reductions.
    """
    slowest = max(
        cost_model.block_compute_s(r.flops_by_dtype, rect.w * t, rect.h * t, r.matmuls)
        for r, rect in zip(regions, rects, strict=True)
    )
    return (math.ceil(slowest / reference_s * 100), layout_cost(problem, rects))


def heuristic_result(problem: FloorplanProblem, rects: Sequence[TileRect]) -> FloorplanResult:
    return FloorplanResult(
        tuple(rects), "HEURISTIC", layout_cost(problem, rects), cost_lower_bound(problem), 0.0, 0.0
    )


def to_cores(tile: TileRect, t: int) -> tuple[int, int, int, int]:
    return (tile.x * t, tile.y * t, tile.w * t, tile.h * t)


def byte_hops(flows: dict[tuple[int, int], int], rects: Sequence[tuple[int, int, int, int]]) -> int:
    """Σ bytes × centre hops, in cores (what the plan's transfers carry as ``hops``)."""
    return sum(b * center_hops(rects[i], rects[j]) for (i, j), b in flows.items())


def bound_in_cores(problem: FloorplanProblem, t: int) -> int:
    """The geometric lower bound in cores: doubled tile distance × t/2, less a hop of rounding."""
    return sum(
        b * max(0, math.floor(d2 * t / 2) - 1)
        for (i, j, b), d2 in zip(problem.flows, min_d2(problem), strict=True)
    )


def min_d2(problem: FloorplanProblem) -> list[int]:
    return [
        min(min(wi + wj, hi + hj) for wi, hi in problem.shapes[i] for wj, hj in problem.shapes[j])
        for i, j, _ in problem.flows
    ]
