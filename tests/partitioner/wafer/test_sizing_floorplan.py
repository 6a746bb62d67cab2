"""Region sizing and floorplanning on small grids, with values worked by hand."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partitioner.solvers.floorplan import (
    FloorplanProblem,
    TileRect,
    blind_layout,
    cost_lower_bound,
    layout_cost,
    snake_layout,
    valid_layout,
    with_shapes,
)
from partitioner.solvers.floorplan_cpsat import cpsat_floorplan
from partitioner.solvers.sizing import SizingError, shape_options, size_regions


def test_sizing_balances_compute_within_the_budget():
    # time = work / tiles; works 1, 3, 4 with 16 tiles: balanced at T = 8/16 = 0.5 -> 2, 6, 8 tiles
    work = [1.0, 3.0, 4.0]
    sized = size_regions([1, 1, 1], 16, lambda i, tiles: work[i] / tiles)
    assert [s.tiles for s in sized] == [2, 6, 8]


def test_sizing_respects_memory_minimums():
    # region 0 needs 10 tiles for its bytes although it computes little
    work = [1.0, 3.0]
    sized = size_regions([10, 1], 16, lambda i, tiles: work[i] / tiles)
    assert sized[0].tiles == 10 and sized[1].tiles == 6
    with pytest.raises(SizingError, match="17 tiles"):
        size_regions([10, 7], 16, lambda i, tiles: 1.0 / tiles)


def test_shape_options_cover_the_area_within_the_grid():
    shapes = shape_options(12, 10, 10)
    assert (3, 4) in shapes and (4, 3) in shapes
    assert all(w * h >= 12 and w <= 10 and h <= 10 for w, h in shapes)
    assert all(max(w / h, h / w) <= 4 for w, h in shapes)
    assert shape_options(12, 2, 2) == []


def _chain(n: int, grid: tuple[int, int] = (8, 8)) -> FloorplanProblem:
    return FloorplanProblem(
        grid[0],
        grid[1],
        tuple(((2, 2),) for _ in range(n)),
        tuple((i, i + 1, 100) for i in range(n - 1)),
    )


def test_snake_places_a_chain_side_by_side():
    # 4 regions of 2x2 on an 8x8 grid in one shelf: x = 0, 2, 4, 6; neighbours' centres 2 tiles
    # apart -> doubled distance 4 each, cost 3 * 100 * 4 = 1200 = the lower bound
    p = _chain(4)
    rects = snake_layout(p)
    assert rects == [
        TileRect(0, 0, 2, 2),
        TileRect(2, 0, 2, 2),
        TileRect(4, 0, 2, 2),
        TileRect(6, 0, 2, 2),
    ]
    assert layout_cost(p, rects) == 1200 == cost_lower_bound(p)


def test_snake_turns_back_on_the_next_shelf():
    from partitioner.solvers.floorplan import _balanced_shelves

    # 6 regions of 4 tiles on two shelves of three: each shelf is ceil(12 / 8) = 2 tall, regions
    # 2 wide; shelf 0 runs left to right (x = 0, 2, 4), shelf 1 right to left (x = 6, 4, 2)
    rects = _balanced_shelves(_chain(6), range(6), 2, serpentine=True)
    assert [r.x for r in rects] == [0, 2, 4, 6, 4, 2]
    assert [r.y for r in rects] == [0, 0, 0, 2, 2, 2]


def test_blind_ignores_the_graph():
    from partitioner.solvers.floorplan import with_shapes

    # areas 1, 9, 1, 9 in a chain; blind packs by size only: the two 9s first, left to right
    shapes = (((1, 1),), ((3, 3),), ((1, 1),), ((3, 3),))
    p = FloorplanProblem(8, 8, shapes, ((0, 1, 1), (1, 2, 1), (2, 3, 1)))
    rects = blind_layout(p)
    assert valid_layout(with_shapes(p, rects), rects)
    assert rects[1].x < rects[3].x < min(rects[0].x, rects[2].x) or rects[1].y < rects[0].y


def test_cpsat_beats_or_matches_the_snake_and_respects_the_bound():
    # a ring of 6: snake leaves the closing edge long; CP-SAT can fold it
    shapes = tuple(((2, 2), (1, 4), (4, 1)) for _ in range(6))
    flows = tuple((i, (i + 1) % 6, 100) for i in range(6))
    p = FloorplanProblem(6, 6, shapes, flows)
    snake = snake_layout(p)
    p = with_shapes(p, snake)
    result = cpsat_floorplan(p, hint=snake, time_limit_s=5)
    assert valid_layout(p, result.rects)
    assert result.cost <= layout_cost(p, snake)
    assert cost_lower_bound(p) <= result.cost
    assert result.bound <= result.cost


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 7), st.integers(0, 10_000))
def test_any_layout_found_is_valid(n, seed):
    import random

    rng = random.Random(seed)
    shapes = tuple(tuple(shape_options(rng.randint(1, 6), 8, 8)) for _ in range(n))
    flows = tuple((i, rng.randrange(i + 1, n), rng.randint(1, 1000)) for i in range(n - 1))
    p = FloorplanProblem(8, 8, shapes, flows)
    for layout in (snake_layout(p), blind_layout(p)):
        if layout is None:
            continue
        extended = with_shapes(p, layout)
        assert valid_layout(extended, layout)
        assert layout_cost(p, layout) >= cost_lower_bound(extended)
        # shelves give each region at least the area it needs
        assert all(
            r.w * r.h >= min(w * h for w, h in o) for r, o in zip(layout, shapes, strict=True)
        )


def test_sizing_never_grows_a_region_past_its_fastest_size():
    # time = 100/tiles + tiles (a mesh term growing with the region): fastest at 10 tiles (time 20).
    # With 64 tiles for two regions, each stops at 10 and the rest stays free.
    sized = size_regions([1, 1], 64, lambda i, tiles: 100 / tiles + tiles)
    assert [s.tiles for s in sized] == [10, 10]
