"""Floorplanning regions on a tile grid: CP-SAT, a serpentine baseline, a blind baseline.

Pure numbers: regions (in topological order) each with a few rectangle shape
options in tiles, and flows (region pairs with bytes). A layout gives every
region one shape and a position; rectangles never overlap.

Cost: Σ bytes × centre distance, measured in doubled tile units so that
centres stay integral (``|2x_i + w_i - 2x_j - w_j| + |2y_i + h_i - ...|``).
The caller converts layouts to cores and reports hops exactly.

- ``snake``: regions in topological order along serpentine shelves (left to
  right, then right to left), so consecutive layers sit side by side: the
  baseline to beat, and CP-SAT's warm start.
- ``blind``: the same shelves filled in decreasing area order, left to right
  (next-fit decreasing height): a layout that ignores the graph.
- ``cpsat``: ``add_no_overlap_2d`` over optional intervals (one per shape
  option), minimising the weighted centre distances, hinted with the snake.

`cost_lower_bound` is valid for any layout: two disjoint rectangles' centres
are at least half their widths apart in x, or half their heights in y.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from partitioner.solvers.cpsat_pipeline import solve_interruptibly

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
    """

    grid_w: int
    grid_h: int
    shapes: tuple[tuple[tuple[int, int], ...], ...]
    flows: tuple[tuple[int, int, int], ...]

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


def _shelves(
    problem: FloorplanProblem, order: Sequence[int], shelf_h: int, serpentine: bool
) -> list[TileRect] | None:
    """Place regions in ``order`` on shelves of height ``shelf_h``; None if they overflow."""
    rects: dict[int, TileRect] = {}
    y, used, shelf, row = 0, 0, 0, []
    for i in order:
        fitting = [(w, h) for w, h in problem.shapes[i] if h <= shelf_h]
        if not fitting:
            return None
        w, h = min(fitting, key=lambda s: (s[0], s[1]))
        if used + w > problem.grid_w:
            y += shelf_h
            shelf += 1
            used = 0
        if used + w > problem.grid_w or y + shelf_h > problem.grid_h:
            return None
        left_to_right = not serpentine or shelf % 2 == 0
        x = used if left_to_right else problem.grid_w - used - w
        rects[i] = TileRect(x, y, w, h)
        used += w
        row.append(i)
    return [rects[i] for i in range(problem.num_regions)]


def _best_shelf_layout(
    problem: FloorplanProblem, order: Sequence[int], serpentine: bool
) -> list[TileRect] | None:
    heights = sorted({h for options in problem.shapes for _, h in options})
    best, best_cost = None, math.inf
    for shelf_h in heights:
        rects = _shelves(problem, order, shelf_h, serpentine)
        if rects is not None and valid_layout(problem, rects):
            cost = layout_cost(problem, rects)
            if cost < best_cost:
                best, best_cost = rects, cost
    return best


def snake_layout(problem: FloorplanProblem) -> list[TileRect] | None:
    """Topological order along serpentine shelves (the best shelf height), or None."""
    return _best_shelf_layout(problem, range(problem.num_regions), serpentine=True)


def blind_layout(problem: FloorplanProblem) -> list[TileRect] | None:
    """Decreasing-area shelf packing that ignores the graph, or None."""
    area = [min(w * h for w, h in options) for options in problem.shapes]
    order = sorted(range(problem.num_regions), key=lambda i: (-area[i], i))
    return _best_shelf_layout(problem, order, serpentine=False)


def _weights(problem: FloorplanProblem) -> tuple[list[int], float]:
    """Integer flow weights (at most ~10^4 each) and the bytes one weight unit stands for."""
    biggest = max((b for _, _, b in problem.flows), default=1) or 1
    unit = max(biggest / 10_000, 1.0)
    return [max(1, round(b / unit)) if b else 0 for _, _, b in problem.flows], unit


def cpsat_floorplan(
    problem: FloorplanProblem,
    *,
    hint: Sequence[TileRect] | None,
    time_limit_s: float,
    seed: int = 0,
) -> FloorplanResult:
    """Minimise Σ bytes × centre distance with CP-SAT (one worker, deterministic limit)."""
    started = time.perf_counter()
    m = cp_model.CpModel()
    gw, gh = problem.grid_w, problem.grid_h
    x = [m.new_int_var(0, gw - min(w for w, _ in o), f"x{i}") for i, o in enumerate(problem.shapes)]
    y = [m.new_int_var(0, gh - min(h for _, h in o), f"y{i}") for i, o in enumerate(problem.shapes)]
    pick: dict[tuple[int, int], cp_model.IntVar] = {}
    x_intervals, y_intervals = [], []
    width, height = [], []
    for i, options in enumerate(problem.shapes):
        for o, (w, h) in enumerate(options):
            s = pick[i, o] = m.new_bool_var(f"s{i}_{o}")
            x_intervals.append(m.new_optional_fixed_size_interval_var(x[i], w, s, f"xi{i}_{o}"))
            y_intervals.append(m.new_optional_fixed_size_interval_var(y[i], h, s, f"yi{i}_{o}"))
            m.add(x[i] + w <= gw).only_enforce_if(s)
            m.add(y[i] + h <= gh).only_enforce_if(s)
        m.add_exactly_one(pick[i, o] for o in range(len(options)))
        width.append(sum(w * pick[i, o] for o, (w, _) in enumerate(options)))
        height.append(sum(h * pick[i, o] for o, (_, h) in enumerate(options)))
    m.add_no_overlap_2d(x_intervals, y_intervals)
    weights, _ = _weights(problem)
    terms = []
    for (i, j, _), weight in zip(problem.flows, weights, strict=True):
        if weight == 0:
            continue
        dx = m.new_int_var(0, 2 * gw, f"dx{i}_{j}")
        dy = m.new_int_var(0, 2 * gh, f"dy{i}_{j}")
        m.add_abs_equality(dx, 2 * x[i] + width[i] - 2 * x[j] - width[j])
        m.add_abs_equality(dy, 2 * y[i] + height[i] - 2 * y[j] - height[j])
        terms.append(weight * (dx + dy))
    m.minimize(sum(terms))
    if hint is not None:
        for i, r in enumerate(hint):
            m.add_hint(x[i], r.x)
            m.add_hint(y[i], r.y)
            for o, shape in enumerate(problem.shapes[i]):
                m.add_hint(pick[i, o], shape == (r.w, r.h))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    solver.parameters.max_deterministic_time = max(time_limit_s, 0.01)
    solver.parameters.catch_sigint_signal = False
    status, interrupted = solve_interruptibly(solver, m)
    try:
        effort = solver.deterministic_time
    except RuntimeError:
        effort = 0.0
    exact_bound = cost_lower_bound(problem)
    candidates: list[tuple[list[TileRect], str]] = []
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        rects = []
        for i, options in enumerate(problem.shapes):
            o = next(o for o in range(len(options)) if solver.value(pick[i, o]))
            w, h = options[o]
            rects.append(TileRect(solver.value(x[i]), solver.value(y[i]), w, h))
        candidates.append((rects, "OPTIMAL" if status == cp_model.OPTIMAL else "FEASIBLE"))
    if hint is not None:
        candidates.append((list(hint), "HEURISTIC"))
    candidates = [(r, s) for r, s in candidates if valid_layout(problem, r)]
    wall = time.perf_counter() - started
    if not candidates:
        return FloorplanResult((), "HEURISTIC", 0, exact_bound, effort, wall, interrupted)
    best, status_name = min(candidates, key=lambda c: layout_cost(problem, c[0]))
    cost = layout_cost(problem, best)
    # OPTIMAL is CP-SAT's proof for the integer-weighted objective; the bound
    # reported is the geometric one, which holds exactly for the byte costs.
    return FloorplanResult(
        tuple(best), status_name, cost, min(exact_bound, cost), effort, wall, interrupted
    )
