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
- ``cpsat``: ``add_no_overlap_2d`` over optional intervals (one per shape
  option), minimising the weighted centre distances, hinted with the snake.

`cost_lower_bound` is valid for any layout: two disjoint rectangles' centres
are at least half their widths apart in x, or half their heights in y.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ortools.sat.python import cp_model

from partitioner.solvers.interrupt import Interrupt, solve_interruptibly

__all__ = [
    "TileRect",
    "FloorplanProblem",
    "FloorplanResult",
    "layout_cost",
    "cost_lower_bound",
    "snake_layout",
    "blind_layout",
    "cpsat_floorplan",
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


def _d2(a: TileRect, b: TileRect) -> int:
    return abs(2 * a.x + a.w - 2 * b.x - b.w) + abs(2 * a.y + a.h - 2 * b.y - b.h)


def layout_cost(problem: FloorplanProblem, rects: Sequence[TileRect]) -> int:
    """Σ bytes × doubled centre distance, in tiles."""
    return sum(nbytes * _d2(rects[i], rects[j]) for i, j, nbytes in problem.flows)


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


def _weights(problem: FloorplanProblem) -> tuple[list[int], float]:
    """Integer flow weights (at most ~10^4 each) and the bytes one weight unit stands for."""
    biggest = max((b for _, _, b in problem.flows), default=1) or 1
    unit = max(biggest / 10_000, 1.0)
    return [max(1, round(b / unit)) if b else 0 for _, _, b in problem.flows], unit


@dataclass(frozen=True)
class _WindowResult:
    rects: list[TileRect] | None
    optimal: bool
    deterministic_s: float
    interrupted: bool


def _solve_window(
    problem: FloorplanProblem,
    current: Sequence[TileRect],
    free: Sequence[int],
    weights: Sequence[int],
    time_limit_s: float,
    seed: int,
    stop: Interrupt,
) -> _WindowResult:
    """Re-place the ``free`` regions (position and shape) around the others, which stay put."""
    m = cp_model.CpModel()
    gw, gh = problem.grid_w, problem.grid_h
    free_set = set(free)
    x: dict[int, cp_model.IntVar] = {}
    y: dict[int, cp_model.IntVar] = {}
    width: dict[int, cp_model.LinearExprT] = {}
    height: dict[int, cp_model.LinearExprT] = {}
    pick: dict[tuple[int, int], cp_model.IntVar] = {}
    x_intervals, y_intervals = [], []
    for i in range(problem.num_regions):
        if i not in free_set:
            r = current[i]
            x_intervals.append(m.new_fixed_size_interval_var(r.x, r.w, f"fx{i}"))
            y_intervals.append(m.new_fixed_size_interval_var(r.y, r.h, f"fy{i}"))
            continue
        options = problem.shapes[i]
        x[i] = m.new_int_var(0, gw - min(w for w, _ in options), f"x{i}")
        y[i] = m.new_int_var(0, gh - min(h for _, h in options), f"y{i}")
        for o, (w, h) in enumerate(options):
            s = pick[i, o] = m.new_bool_var(f"s{i}_{o}")
            x_intervals.append(m.new_optional_fixed_size_interval_var(x[i], w, s, f"xi{i}_{o}"))
            y_intervals.append(m.new_optional_fixed_size_interval_var(y[i], h, s, f"yi{i}_{o}"))
            m.add(x[i] + w <= gw).only_enforce_if(s)
            m.add(y[i] + h <= gh).only_enforce_if(s)
        m.add_exactly_one(pick[i, o] for o in range(len(options)))
        width[i] = sum(w * pick[i, o] for o, (w, _) in enumerate(options))
        height[i] = sum(h * pick[i, o] for o, (_, h) in enumerate(options))
        r = current[i]
        m.add_hint(x[i], r.x)
        m.add_hint(y[i], r.y)
        for o, shape in enumerate(options):
            m.add_hint(pick[i, o], shape == (r.w, r.h))
    m.add_no_overlap_2d(x_intervals, y_intervals)

    def centre2(i: int, axis: str) -> cp_model.LinearExprT:
        if i in free_set:
            return 2 * x[i] + width[i] if axis == "x" else 2 * y[i] + height[i]
        r = current[i]
        return 2 * r.x + r.w if axis == "x" else 2 * r.y + r.h

    terms = []
    for (i, j, _), weight in zip(problem.flows, weights, strict=True):
        if weight == 0 or (i not in free_set and j not in free_set):
            continue
        dx = m.new_int_var(0, 2 * gw, f"dx{i}_{j}")
        dy = m.new_int_var(0, 2 * gh, f"dy{i}_{j}")
        m.add_abs_equality(dx, centre2(i, "x") - centre2(j, "x"))
        m.add_abs_equality(dy, centre2(i, "y") - centre2(j, "y"))
        terms.append(weight * (dx + dy))
    m.minimize(sum(terms))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1  # sequential: deterministic under a deterministic limit
    solver.parameters.random_seed = seed
    solver.parameters.max_deterministic_time = max(time_limit_s, 0.01)
    solver.parameters.catch_sigint_signal = False
    status, interrupted = solve_interruptibly(solver, m, None, stop)
    try:
        effort = solver.deterministic_time
    except RuntimeError:
        effort = 0.0
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return _WindowResult(None, False, effort, interrupted)
    rects = list(current)
    for i in free:
        o = next(o for o in range(len(problem.shapes[i])) if solver.value(pick[i, o]))
        w, h = problem.shapes[i][o]
        rects[i] = TileRect(solver.value(x[i]), solver.value(y[i]), w, h)
    return _WindowResult(rects, status == cp_model.OPTIMAL, effort, interrupted)


def _windows(problem: FloorplanProblem, current: Sequence[TileRect], size: int) -> list[list[int]]:
    """Consecutive regions (neighbours along the snake), then the ends of the costliest flows."""
    n = problem.num_regions
    step = max(1, size // 2)
    windows = [list(range(s, min(n, s + size))) for s in range(0, max(1, n - size + step), step)]
    ranked = sorted(problem.flows, key=lambda f: -f[2] * _d2(current[f[0]], current[f[1]]))
    for i, j, _ in ranked[:4]:
        around = sorted({i, j, *(k for k in (i - 1, i + 1, j - 1, j + 1) if 0 <= k < n)})
        windows.append(around[:size])
    return windows


def cpsat_floorplan(
    problem: FloorplanProblem,
    *,
    hint: Sequence[TileRect] | None,
    time_limit_s: float,
    seed: int = 0,
    window: int = 8,
) -> FloorplanResult:
    """Improve ``hint`` by large-neighbourhood search with CP-SAT, deterministically.

    Each step frees a window of regions (their positions and shapes), keeps the
    rest as obstacles, and lets one CP-SAT worker re-place the window to
    minimise Σ bytes × centre distance; windows walk along the topological
    order and visit the ends of the costliest flows. Rounds repeat until one
    improves nothing or the deterministic budget is spent. With at most
    ``window`` regions the first step is the whole problem, so OPTIMAL is a proof.
    Ctrl-C stops the search and keeps the best layout so far.
    """
    started = time.perf_counter()
    exact_bound = cost_lower_bound(problem)
    if hint is None or not valid_layout(problem, hint):
        return FloorplanResult((), "HEURISTIC", 0, exact_bound, 0.0, time.perf_counter() - started)
    with Interrupt() as stop:
        search = _Search(problem, list(hint), layout_cost(problem, hint), _weights(problem)[0])
        search.run(time_limit_s, seed, window, stop)
    status = "OPTIMAL" if search.proven else ("FEASIBLE" if search.spent > 0 else "HEURISTIC")
    return FloorplanResult(
        tuple(search.current),
        status,
        search.best,
        min(exact_bound, search.best),
        search.spent,
        time.perf_counter() - started,
        search.interrupted,
    )


@dataclass
class _Search:
    """State of the large-neighbourhood search: the best layout so far and the effort spent."""

    problem: FloorplanProblem
    current: list[TileRect]
    best: int
    weights: list[int]
    spent: float = 0.0
    interrupted: bool = False
    proven: bool = False

    def run(self, time_limit_s: float, seed: int, window: int, stop: Interrupt) -> None:
        """Window after window until a round improves nothing, the budget is spent, or Ctrl-C."""
        per_window = max(0.05, min(1.0, time_limit_s / 20))
        improved = True
        while improved and self.spent < time_limit_s and not self.interrupted and not self.proven:
            improved = False
            for free in _windows(self.problem, self.current, window):
                budget = min(per_window, time_limit_s - self.spent)
                if budget <= 0 or self.interrupted:
                    break
                result = _solve_window(
                    self.problem, self.current, free, self.weights, budget, seed, stop
                )
                self.spent += result.deterministic_s
                self.interrupted = self.interrupted or result.interrupted
                if result.rects is None or not valid_layout(self.problem, result.rects):
                    continue
                cost = layout_cost(self.problem, result.rects)
                if cost < self.best:
                    self.current, self.best, improved = result.rects, cost, True
                if len(free) == self.problem.num_regions and result.optimal:
                    self.proven = True
                    break
