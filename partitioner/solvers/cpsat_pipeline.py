"""CP-SAT pipeline partitioner for any block DAG (after OR-Tools' line_balancing_sat).

The model (variables, integer units, warm-start hint) is built in `cpsat_model`.
Objective "throughput" minimises the bottleneck period P (a stage's recv +
host + compute + send, or their max when transfers overlap), then, with P
fixed at its best, the latency. "latency" minimises the latency directly.

Determinism: one worker (sequential search) with a deterministic time limit,
so the answer is a function of the input and seed, not of the machine's load.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from partitioner.solvers.cpsat_model import PipelineModel, build_model, hint_model, time_unit
from partitioner.solvers.interrupt import Interrupt, StopSignal, solve_interruptibly
from partitioner.solvers.problem import PipelineProblem, check_assignment, score

__all__ = ["CpSatResult", "cpsat_partition", "solve_interruptibly", "NUM_WORKERS"]

log = logging.getLogger(__name__)

NUM_WORKERS = 1
"""Sequential search: deterministic, and on these models as fast as parallel search
(measured in BENCHMARKS.md); fixed, not taken from the machine's core count."""

Progress = Callable[[float, float], None]  # (best objective s, best bound s)


@dataclass(frozen=True)
class CpSatResult:
    """What CP-SAT found.

    Attributes:
        stage_of: the answer (the hint if CP-SAT found nothing better; None if neither).
        status: "OPTIMAL" (primary objective proven), "FEASIBLE", or "HEURISTIC" (hint only);
            without an answer, "INFEASIBLE" (proven that none exists) or "UNKNOWN".
        objective_s: the answer's objective, scored exactly.
        bound_s: proven lower bound on the objective.
        deterministic_s: solver effort in CP-SAT deterministic seconds.
        wall_s: measured wall-clock seconds.
        interrupted: the user pressed Ctrl-C.
        unit_s: the time unit of the integer model.
    """

    stage_of: tuple[int, ...] | None
    status: str
    objective_s: float
    bound_s: float
    deterministic_s: float
    wall_s: float
    interrupted: bool
    unit_s: float


class _Callback(cp_model.CpSolverSolutionCallback):
    """Reports (best objective, bound) in seconds at each new solution and each tighter bound."""

    def __init__(self, unit_s: float, progress: Progress | None) -> None:
        super().__init__()
        self.unit_s = unit_s
        self.progress = progress
        self.best_s = math.inf

    def on_solution_callback(self) -> None:
        self.best_s = self.ObjectiveValue() * self.unit_s
        if self.progress is not None:
            self.progress(self.best_s, self.BestObjectiveBound() * self.unit_s)

    def on_bound(self, bound: float) -> None:
        if self.progress is not None and math.isfinite(self.best_s):
            self.progress(self.best_s, bound * self.unit_s)


def _solver(time_limit_s: float, seed: int) -> cp_model.CpSolver:
    s = cp_model.CpSolver()
    p = s.parameters
    p.num_workers = NUM_WORKERS
    p.random_seed = seed
    p.max_deterministic_time = max(time_limit_s, 0.01)
    p.relative_gap_limit = 1e-4
    p.catch_sigint_signal = False  # Ctrl-C is handled by solve_interruptibly
    return s


def _read(solver: cp_model.CpSolver, built: PipelineModel, n: int, k_stages: int) -> list[int]:
    return [next(k for k in range(k_stages) if solver.value(built.x[b, k])) for b in range(n)]


def _effort(solver: cp_model.CpSolver) -> float:
    """Deterministic seconds spent (0 if the search was stopped before it began)."""
    try:
        return solver.deterministic_time
    except RuntimeError:
        return 0.0


def _fallback(
    problem: PipelineProblem,
    hint: Sequence[int] | None,
    unit_s: float,
    started: float,
    signum: int | None,
) -> CpSatResult:
    if hint is None or check_assignment(problem, hint) is not None:
        raise StopSignal(signum if signum is not None else signal.SIGINT)
    objective = score(problem, hint).objective_s(problem.objective)
    return CpSatResult(
        tuple(hint), "HEURISTIC", objective, 0.0, 0.0, time.perf_counter() - started, True, unit_s
    )


def cpsat_partition(
    problem: PipelineProblem,
    *,
    hint: Sequence[int] | None,
    time_limit_s: float,
    seed: int = 0,
    progress: Progress | None = None,
) -> CpSatResult:
    """Solve ``problem`` with CP-SAT, warm-started from ``hint``.

    Args:
        problem: the numbers.
        hint: a valid answer (e.g. the DP's) to start from, or None.
        time_limit_s: budget in CP-SAT deterministic seconds (shared by both phases).
        seed: CP-SAT's random seed.
        progress: called with (best objective s, bound s) at each improving solution.
    """
    with Interrupt() as stop:
        return _solve(problem, hint, time_limit_s, seed, progress, stop)


def _solve(
    problem: PipelineProblem,
    hint: Sequence[int] | None,
    time_limit_s: float,
    seed: int,
    progress: Progress | None,
    stop: Interrupt,
) -> CpSatResult:
    started = time.perf_counter()
    n, k_stages = problem.num_blocks, problem.num_stages
    unit_s = time_unit(problem)
    built = build_model(problem, unit_s)
    if hint is not None:
        hint_model(built, problem, hint)
    if stop.hit:
        # Ctrl-C while the model was being built: the warm start is the best answer so far.
        return _fallback(problem, hint, unit_s, started, stop.signum)
    throughput = problem.objective == "throughput"
    built.model.minimize(built.period if throughput else built.latency)
    solver = _solver(0.8 * time_limit_s if throughput else time_limit_s, seed)
    callback = _Callback(unit_s, progress)
    solver.best_bound_callback = callback.on_bound
    status, interrupted = solve_interruptibly(solver, built.model, callback, stop)
    effort = _effort(solver)
    found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    proven = status == cp_model.OPTIMAL
    bound_units = solver.best_objective_bound if found else 0.0
    answer = _read(solver, built, n, k_stages) if found else None
    if answer is not None and throughput and not interrupted:
        answer, more_s, interrupted = _tie_break(
            built, problem, solver, answer, time_limit_s, seed, stop
        )
        effort += more_s
    wall_s = time.perf_counter() - started
    candidates = [a for a in (answer, list(hint) if hint is not None else None) if a is not None]
    candidates = [a for a in candidates if check_assignment(problem, a) is None]
    if not candidates:
        # Without an answer, say whether none exists (proven) or none was found in time.
        none_status = "INFEASIBLE" if status == cp_model.INFEASIBLE else "UNKNOWN"
        return CpSatResult(
            None, none_status, math.inf, bound_units * unit_s, effort, wall_s, interrupted, unit_s
        )
    best, objective = _best(problem, candidates)
    status_name = "OPTIMAL" if proven else ("FEASIBLE" if answer is not None else "HEURISTIC")
    bound_s = min(bound_units * unit_s, objective)
    log.info(
        "CP-SAT pipeline: %s, objective %.6g s, bound %.6g s, %.3g deterministic s",
        status_name,
        objective,
        bound_s,
        effort,
    )
    return CpSatResult(
        tuple(best), status_name, objective, bound_s, effort, wall_s, interrupted, unit_s
    )


def _tie_break(
    built: PipelineModel,
    problem: PipelineProblem,
    first: cp_model.CpSolver,
    answer: list[int],
    time_limit_s: float,
    seed: int,
    stop: Interrupt,
) -> tuple[list[int], float, bool]:
    """Phase 2: keep the best period, minimise latency; (answer, effort s, interrupted)."""
    built.model.add(built.period <= first.value(built.period))
    hint_model(built, problem, answer)
    built.model.minimize(built.latency)
    effort_s = _effort(first)
    second = _solver(max(time_limit_s - effort_s, 0.05 * time_limit_s), seed)
    status, interrupted = solve_interruptibly(second, built.model, None, stop)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        answer = _read(second, built, problem.num_blocks, problem.num_stages)
    return answer, _effort(second), interrupted


def _best(
    problem: PipelineProblem, candidates: Sequence[Sequence[int]]
) -> tuple[Sequence[int], float]:
    """The candidate with the best objective (then latency), preferring ones that fit."""
    scored = [(score(problem, a), a) for a in candidates]
    fitting = [(s, a) for s, a in scored if s.fits] or scored
    best_score, best = min(
        fitting, key=lambda sa: (sa[0].objective_s(problem.objective), sa[0].estimate.latency_s)
    )
    return best, best_score.objective_s(problem.objective)
