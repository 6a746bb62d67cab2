"""Floorplanning regions on a tile grid: CP-SAT, a serpentine baseline, a blind baseline.

Pure numbers: regions (in topological order) each with a few rectangle shape
options in tiles, and flows (region pairs with bytes). A layout gives every
region one shape and a position; rectangles never overlap.

Cost: Σ bytes × centre distance, measured in doubled tile units so that
centres stay integral (``|2x_i + w_i - 2x_j - w_j| + |2y_i + h_i - ...|``).
The caller converts layouts to cores and reports hops exactly.

- ``snake``: regions in topological order along serpentine shelves (left to
  right, then right to left), so consecutive layers sit side by side; each
  shelf is just tall enough for its regions, which packs a wafer tightly: the
  baseline to beat, and CP-SAT's warm start.
- ``blind``: the same shelves filled in decreasing area order, left to right:
  a layout that ignores the graph.
- ``cpsat`` (`floorplan_cpsat`): ``add_no_overlap_2d`` over optional intervals
  (one per shape option), minimising the weighted centre distances, hinted
  with the snake.

`cost_lower_bound` is valid for any layout: two disjoint rectangles' centres
are at least half their widths apart in x, or half their heights in y.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "TileRect",
    "FloorplanProblem",
    "FloorplanResult",
    "centre_distance2",
    "layout_cost",
    "cost_lower_bound",
    "snake_layout",
    "blind_layout",
    "valid_layout",
    "with_shapes",
]


@dataclass(frozen=True)
class TileRect:
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class FloorplanProblem:
    """Regions to place on a ``grid_w`` x ``grid_h`` tile grid.

    Attributes:
        shapes: per region, its allowed (w, h) in tiles.
        flows: (region i, region j, bytes) for communicating pairs.
        areas: tiles each region needs; the shelf layouts give it exactly that (rounded up).
    """

    grid_w: int
    grid_h: int
    shapes: tuple[tuple[tuple[int, int], ...], ...]
    flows: tuple[tuple[int, int, int], ...]
    areas: tuple[int, ...] = ()  # tiles each region needs (default: its smallest shape)

    @property
    def num_regions(self) -> int:
        return len(self.shapes)


@dataclass(frozen=True)
class FloorplanResult:
    rects: tuple[TileRect, ...]
    status: str  # OPTIMAL | FEASIBLE | HEURISTIC
    cost: int  # Σ bytes × doubled centre distance (tiles)
    bound: int
    deterministic_s: float
    wall_s: float
    interrupted: bool = False


def centre_distance2(a: TileRect, b: TileRect) -> int:
    return abs(2 * a.x + a.w - 2 * b.x - b.w) + abs(2 * a.y + a.h - 2 * b.y - b.h)


def layout_cost(problem: FloorplanProblem, rects: Sequence[TileRect]) -> int:
    """Σ bytes × doubled centre distance, in tiles."""
    return sum(nbytes * centre_distance2(rects[i], rects[j]) for i, j, nbytes in problem.flows)


def cost_lower_bound(problem: FloorplanProblem) -> int:
    """No layout costs less: disjoint rectangles' centres are half-sums apart in x or y."""
    total = 0
    for i, j, nbytes in problem.flows:
        best = min(
            min(wi + wj, hi + hj)
            for (wi, hi), (wj, hj) in itertools.product(problem.shapes[i], problem.shapes[j])
        )
        total += nbytes * best
    return total


def valid_layout(problem: FloorplanProblem, rects: Sequence[TileRect]) -> bool:
    """Every rectangle has one of its shapes, lies in the grid, and none overlap."""
    if len(rects) != problem.num_regions:
        return False
    for r, options in zip(rects, problem.shapes, strict=True):
        if (r.w, r.h) not in options or r.x < 0 or r.y < 0:
            return False
        if r.x + r.w > problem.grid_w or r.y + r.h > problem.grid_h:
            return False
    for a, b in itertools.combinations(rects, 2):
        if a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h:
            return False
    return True


def region_area(problem: FloorplanProblem, i: int) -> int:
    """Tiles region ``i`` needs: its ``areas`` entry, else its smallest shape."""
    if problem.areas:
        return problem.areas[i]
    return min(w * h for w, h in problem.shapes[i])


def _shelf_groups(areas: Sequence[int], shelves: int) -> list[list[int]]:
    """Split positions 0..n-1 into ``shelves`` contiguous groups of about equal area."""
    total = sum(areas)
    groups: list[list[int]] = [[]]
    acc = 0.0
    for k, a in enumerate(areas):
        closing = (
            len(groups) < shelves and groups[-1] and acc + a / 2 > total * len(groups) / shelves
        )
        if closing:
            groups.append([])
        groups[-1].append(k)
        acc += a
    return groups


def _balanced_shelves(
    problem: FloorplanProblem, order: Sequence[int], shelves: int, serpentine: bool
) -> list[TileRect] | None:
    """Shelves of regions in ``order``, each shelf just tall enough for its regions' areas.

    A shelf of height h gives each region ``ceil(area / h)`` columns, so it
    wastes less than h tiles per region; h grows until the shelf fits the grid.
    """
    gw, gh = problem.grid_w, problem.grid_h
    areas = [region_area(problem, i) for i in order]
    rects: dict[int, TileRect] = {}
    y = 0
    for row, group in enumerate(_shelf_groups(areas, shelves)):
        if not group:
            continue
        widths, h = _shelf_widths([areas[k] for k in group], gw, gh)
        if sum(widths) > gw or y + h > gh:
            return None
        x = 0
        for k, w in zip(group, widths, strict=True):
            left = x if not serpentine or row % 2 == 0 else gw - x - w
            rects[order[k]] = TileRect(left, y, w, h)
            x += w
        y += h
    return [rects[i] for i in range(problem.num_regions)]


def _shelf_widths(areas: Sequence[int], gw: int, gh: int) -> tuple[list[int], int]:
    """Column widths and height for one shelf holding regions of these areas.

    Two ways, keeping the lower shelf: the shortest height at which
    ``ceil(area / h)`` columns each fit the grid's width; or all the columns
    shared out in proportion to area (largest remainder first), the shelf as tall
    as its tallest region needs.
    """
    total = sum(areas)
    h = max(1, math.ceil(total / gw))
    while True:
        widths = [math.ceil(a / h) for a in areas]
        if sum(widths) <= gw or h > gh:
            break
        h += 1
    if len(areas) <= gw:
        shared = [max(1, a * gw // total) for a in areas]
        while sum(shared) < gw:
            tallest = max(range(len(areas)), key=lambda k: (math.ceil(areas[k] / shared[k]), -k))
            shared[tallest] += 1
        shared_h = max(math.ceil(a / w) for a, w in zip(areas, shared, strict=True))
        if sum(shared) <= gw and shared_h < h:
            return shared, shared_h
    return widths, h


def with_shapes(problem: FloorplanProblem, rects: Sequence[TileRect]) -> FloorplanProblem:
    """``problem`` whose shape options also include each rectangle's shape (a baseline's)."""
    shapes = tuple(
        options if (r.w, r.h) in options else (*options, (r.w, r.h))
        for options, r in zip(problem.shapes, rects, strict=True)
    )
    return dataclasses.replace(problem, shapes=shapes)


LayoutKey = Callable[[Sequence[TileRect]], Any]
"""Ranks layouts (lower is better); by default their cost Σ bytes × centre distance."""


def _best_shelves(
    problem: FloorplanProblem, order: Sequence[int], serpentine: bool, key: LayoutKey | None
) -> list[TileRect] | None:
    rank = key or (lambda rects: layout_cost(problem, rects))
    best, best_rank = None, None
    for shelves in range(1, min(problem.num_regions, problem.grid_h) + 1):
        rects = _balanced_shelves(problem, order, shelves, serpentine)
        if rects is None:
            continue
        value = rank(rects)
        if best_rank is None or value < best_rank:
            best, best_rank = rects, value
    return best


def snake_layout(problem: FloorplanProblem, key: LayoutKey | None = None) -> list[TileRect] | None:
    """Topological order along serpentine shelves (the best shelf count by ``key``), or None.

    Shapes are the shelves' (add them with `with_shapes` before validating). The
    shelf count sets the regions' aspect ratios, so a caller whose regions slow
    down when long and thin ranks layouts by their slowest region first.
    """
    return _best_shelves(problem, range(problem.num_regions), True, key)


def blind_layout(problem: FloorplanProblem, key: LayoutKey | None = None) -> list[TileRect] | None:
    """Decreasing-area shelves, left to right: a packing that ignores the graph, or None."""
    order = sorted(range(problem.num_regions), key=lambda i: (-region_area(problem, i), i))
    return _best_shelves(problem, order, False, key)
