"""CP-SAT floorplanning: a large-neighbourhood search over windows of regions.

Each step fixes every region but a window of neighbours and lets CP-SAT
(``add_no_overlap_2d`` over optional intervals, one per shape option) move the
window's regions to cut Σ bytes × centre distance, starting from the snake.
Problems, layouts, costs and bounds are in `floorplan`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from partitioner.solvers.floorplan import (
    FloorplanProblem,
    FloorplanResult,
    TileRect,
    centre_distance2,
    cost_lower_bound,
    layout_cost,
    valid_layout,
)
from partitioner.solvers.interrupt import Interrupt, solve_interruptibly

__all__ = ["cpsat_floorplan"]

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class _FreeRegion:
    """A free region's variables: its corner, one Boolean per shape option, and its size."""

    x: cp_model.IntVar
    y: cp_model.IntVar
    picks: tuple[cp_model.IntVar, ...]
    width: cp_model.LinearExprT
    height: cp_model.LinearExprT


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
    regions = _place_regions(m, problem, current, set(free))
    m.minimize(_flow_cost(m, problem, current, regions, weights))
    solver = _window_solver(time_limit_s, seed)
    status, interrupted = solve_interruptibly(solver, m, None, stop)
    try:
        effort = solver.deterministic_time
    except RuntimeError:
        effort = 0.0
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return _WindowResult(None, False, effort, interrupted)
    rects = list(current)
    for i in free:
        region = regions[i]
        o = next(o for o, pick in enumerate(region.picks) if solver.value(pick))
        w, h = problem.shapes[i][o]
        rects[i] = TileRect(solver.value(region.x), solver.value(region.y), w, h)
    return _WindowResult(rects, status == cp_model.OPTIMAL, effort, interrupted)


def _place_regions(
    m: cp_model.CpModel,
    problem: FloorplanProblem,
    current: Sequence[TileRect],
    free_set: set[int],
) -> dict[int, _FreeRegion]:
    """Every region as intervals that may not overlap: fixed where it is, or free to move."""
    regions: dict[int, _FreeRegion] = {}
    x_intervals, y_intervals = [], []
    for i in range(problem.num_regions):
        r = current[i]
        if i not in free_set:
            x_intervals.append(m.new_fixed_size_interval_var(r.x, r.w, f"fx{i}"))
            y_intervals.append(m.new_fixed_size_interval_var(r.y, r.h, f"fy{i}"))
            continue
        regions[i] = _free_region(m, problem, i, x_intervals, y_intervals)
        _hint_region(m, regions[i], problem.shapes[i], r)
    m.add_no_overlap_2d(x_intervals, y_intervals)
    return regions


def _free_region(
    m: cp_model.CpModel,
    problem: FloorplanProblem,
    i: int,
    x_intervals: list[cp_model.IntervalVar],
    y_intervals: list[cp_model.IntervalVar],
) -> _FreeRegion:
    """Region i's corner and shape as variables; its optional intervals go on the lists."""
    gw, gh = problem.grid_w, problem.grid_h
    options = problem.shapes[i]
    x = m.new_int_var(0, gw - min(w for w, _ in options), f"x{i}")
    y = m.new_int_var(0, gh - min(h for _, h in options), f"y{i}")
    picks = []
    for o, (w, h) in enumerate(options):
        s = m.new_bool_var(f"s{i}_{o}")
        picks.append(s)
        x_intervals.append(m.new_optional_fixed_size_interval_var(x, w, s, f"xi{i}_{o}"))
        y_intervals.append(m.new_optional_fixed_size_interval_var(y, h, s, f"yi{i}_{o}"))
        m.add(x + w <= gw).only_enforce_if(s)
        m.add(y + h <= gh).only_enforce_if(s)
    m.add_exactly_one(picks)
    width = sum(w * s for s, (w, _) in zip(picks, options, strict=True))
    height = sum(h * s for s, (_, h) in zip(picks, options, strict=True))
    return _FreeRegion(x, y, tuple(picks), width, height)


def _hint_region(
    m: cp_model.CpModel, region: _FreeRegion, options: Sequence[tuple[int, int]], r: TileRect
) -> None:
    """Start the search from the region's current place and shape."""
    m.add_hint(region.x, r.x)
    m.add_hint(region.y, r.y)
    for pick, shape in zip(region.picks, options, strict=True):
        m.add_hint(pick, shape == (r.w, r.h))


def _flow_cost(
    m: cp_model.CpModel,
    problem: FloorplanProblem,
    current: Sequence[TileRect],
    regions: dict[int, _FreeRegion],
    weights: Sequence[int],
) -> cp_model.LinearExprT:
    """Σ weight × (doubled) centre distance over the flows that touch a free region."""

    def centre2(i: int, axis: str) -> cp_model.LinearExprT:
        if i in regions:
            f = regions[i]
            return 2 * f.x + f.width if axis == "x" else 2 * f.y + f.height
        r = current[i]
        return 2 * r.x + r.w if axis == "x" else 2 * r.y + r.h

    terms = []
    for (i, j, _), weight in zip(problem.flows, weights, strict=True):
        if weight == 0 or (i not in regions and j not in regions):
            continue
        dx = m.new_int_var(0, 2 * problem.grid_w, f"dx{i}_{j}")
        dy = m.new_int_var(0, 2 * problem.grid_h, f"dy{i}_{j}")
        m.add_abs_equality(dx, centre2(i, "x") - centre2(j, "x"))
        m.add_abs_equality(dy, centre2(i, "y") - centre2(j, "y"))
        terms.append(weight * (dx + dy))
    return sum(terms)


def _window_solver(time_limit_s: float, seed: int) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1  # sequential: deterministic under a deterministic limit
    solver.parameters.random_seed = seed
    solver.parameters.max_deterministic_time = max(time_limit_s, 0.01)
    solver.parameters.catch_sigint_signal = False
    return solver


def _windows(problem: FloorplanProblem, current: Sequence[TileRect], size: int) -> list[list[int]]:
    """Consecutive regions (neighbours along the snake), then the ends of the costliest flows."""
    n = problem.num_regions
    step = max(1, size // 2)
    windows = [list(range(s, min(n, s + size))) for s in range(0, max(1, n - size + step), step)]
    ranked = sorted(
        problem.flows, key=lambda f: -f[2] * centre_distance2(current[f[0]], current[f[1]])
    )
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
    log.info(
        "CP-SAT floorplan: %s, %d byte-hops in tiles (snake %d), %.3g deterministic s",
        status,
        search.best,
        layout_cost(problem, hint),
        search.spent,
    )
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
