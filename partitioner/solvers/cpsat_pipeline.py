"""CP-SAT pipeline partitioner for any block DAG (after OR-Tools' line_balancing_sat).

Variables (dicts keyed by tuples, as in OR-Tools' examples):

- ``x[b, k]``: block b runs on stage k (exactly one per block; every stage used);
- ``cross[f, k]``: relayed flow f crosses boundary k (stage k -> k+1), forced by
  ``cross >= le[src, k] - le[d, k]`` for each reader d, where ``le[b, k]`` says
  block b is on a stage <= k; precedence is ``le[v, k] <= le[u, k]`` per edge;
- ``host_in[t, k]``: model input t is delivered to stage k;
- ``act[k]``: the largest activation peak among stage k's blocks.

Units are integers, and said: time in ``unit_s`` (a power of ten chosen so the
whole graph is ~1e6 units), memory in KiB. Times are rounded *down* and memory
*up*, so the model is a relaxation in time (its bound is a true lower bound)
and conservative in memory (its answers fit).

Objective "throughput" minimises the bottleneck period P (a stage's recv +
host + compute + send, or their max when transfers overlap), then, with P
fixed at its best, the latency. "latency" minimises the latency directly.

Determinism: a fixed worker count with ``interleave_search`` and a
deterministic time limit make the search a function of the input and seed.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from partitioner.solvers.problem import PipelineProblem, check_assignment, score

__all__ = ["CpSatResult", "cpsat_partition", "solve_interruptibly", "NUM_WORKERS"]

NUM_WORKERS = 8
"""Fixed, not taken from the machine, so plans do not depend on the core count."""

Progress = Callable[[float, float], None]  # (best objective s, best bound s)


@dataclass(frozen=True)
class CpSatResult:
    """What CP-SAT found.

    Attributes:
        stage_of: the answer (the hint if CP-SAT found nothing better; None if neither).
        status: "OPTIMAL" (primary objective proven), "FEASIBLE", or "HEURISTIC" (hint only).
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


def _time_unit(problem: PipelineProblem) -> float:
    total = sum(max(row) for row in problem.block_time_s)
    total += sum(max(f.boundary_s, default=0.0) for f in problem.relay_flows)
    if total <= 0:
        return 1e-9
    return 10.0 ** math.floor(math.log10(total / 1e6))


class _Callback(cp_model.CpSolverSolutionCallback):
    def __init__(self, unit_s: float, progress: Progress | None) -> None:
        super().__init__()
        self.unit_s = unit_s
        self.progress = progress

    def on_solution_callback(self) -> None:
        if self.progress is not None:
            self.progress(
                self.ObjectiveValue() * self.unit_s, self.BestObjectiveBound() * self.unit_s
            )


@dataclass
class _Model:
    model: cp_model.CpModel
    x: dict[tuple[int, int], cp_model.IntVar]
    period: cp_model.IntVar
    latency: cp_model.LinearExprT


def _build(problem: PipelineProblem, unit_s: float) -> _Model:
    n, k_stages = problem.num_blocks, problem.num_stages
    m = cp_model.CpModel()
    x = {(b, k): m.new_bool_var(f"x_{b}_{k}") for b in range(n) for k in range(k_stages)}
    for b in range(n):
        m.add_exactly_one(x[b, k] for k in range(k_stages))
    for k in range(k_stages):
        m.add_at_least_one(x[b, k] for b in range(n))

    def le(b: int, k: int) -> cp_model.LinearExprT:
        return sum(x[b, j] for j in range(k + 1))

    for u, v in problem.edges:
        for k in range(k_stages - 1):
            m.add(le(v, k) <= le(u, k))

    def t(seconds: float) -> int:
        return int(seconds / unit_s)  # round down: a relaxation in time

    cross = {}
    for f_id, f in enumerate(problem.relay_flows):
        for k in range(k_stages - 1):
            c = m.new_bool_var(f"cross_{f_id}_{k}")
            for d in f.dsts:
                m.add(c >= le(f.src, k) - le(d, k))
            cross[f_id, k] = c
    host_in = {}
    for t_id, f in enumerate(problem.host_flows):
        for k in range(k_stages):
            h = m.new_bool_var(f"host_{t_id}_{k}")
            for d in f.dsts:
                m.add_implication(x[d, k], h)
            host_in[t_id, k] = h

    def boundary_s(k: int) -> cp_model.LinearExprT:
        return sum(t(f.boundary_s[k]) * cross[i, k] for i, f in enumerate(problem.relay_flows))

    def boundary_kib(k: int) -> cp_model.LinearExprT:
        return sum(
            math.ceil(f.bytes / 1024) * cross[i, k] for i, f in enumerate(problem.relay_flows)
        )

    horizon = sum(t(max(r)) for r in problem.block_time_s)
    horizon += sum(t(max(f.boundary_s, default=0.0)) for f in problem.relay_flows) * 2
    horizon += sum(t(max(r)) for r in problem.block_host_out_s)
    horizon += sum(t(max(f.stage_s)) for f in problem.host_flows) * k_stages
    period = m.new_int_var(0, horizon + 1, "period")
    latency_terms = []
    max_act = max(problem.block_activation_bytes, default=0)
    for k in range(k_stages):
        compute = sum(t(problem.block_time_s[b][k]) * x[b, k] for b in range(n))
        host = sum(t(problem.block_host_out_s[b][k]) * x[b, k] for b in range(n))
        host += sum(t(f.stage_s[k]) * host_in[i, k] for i, f in enumerate(problem.host_flows))
        recv = boundary_s(k - 1) if k > 0 else 0
        send = boundary_s(k) if k < k_stages - 1 else 0
        if problem.overlap_transfers:
            for term in (recv, host, compute, send):
                m.add(period >= term)
        else:
            m.add(period >= recv + host + compute + send)
        latency_terms.append(compute + send + host)
        act = m.new_int_var(0, math.ceil(max_act / 1024), f"act_{k}")
        for b in range(n):
            kib = math.ceil(problem.block_activation_bytes[b] / 1024)
            if kib:
                m.add(act >= kib * x[b, k])
        resident = sum(
            math.ceil(problem.block_resident_bytes[b] / 1024) * x[b, k] for b in range(n)
        )
        buffers = (boundary_kib(k - 1) if k > 0 else 0) + (
            boundary_kib(k) if k < k_stages - 1 else 0
        )
        m.add(
            resident + problem.microbatches_in_flight * act + buffers
            <= problem.capacity_bytes[k] // 1024
        )
    return _Model(m, x, period, sum(latency_terms))


def _solver(time_limit_s: float, seed: int) -> cp_model.CpSolver:
    s = cp_model.CpSolver()
    p = s.parameters
    p.num_workers = NUM_WORKERS
    p.interleave_search = True
    p.random_seed = seed
    p.max_deterministic_time = max(time_limit_s, 0.01)
    p.relative_gap_limit = 1e-4
    p.catch_sigint_signal = False  # Ctrl-C is handled in solve_interruptibly
    return s


def solve_interruptibly(
    solver: cp_model.CpSolver,
    model: cp_model.CpModel,
    callback: cp_model.CpSolverSolutionCallback | None = None,
) -> tuple[int, bool]:
    """Solve in a worker thread so Ctrl-C stops the search and keeps the best answer.

    Returns:
        (CP-SAT status, whether the user interrupted).
    """
    result: dict[str, int] = {}

    def work() -> None:
        result["status"] = solver.solve(model, callback)

    worker = threading.Thread(target=work, name="cp-sat", daemon=True)
    worker.start()
    interrupted = False
    while worker.is_alive():
        try:
            worker.join(0.1)
        except KeyboardInterrupt:
            interrupted = True
            solver.stop_search()
    return result.get("status", cp_model.UNKNOWN), interrupted


def _read(solver: cp_model.CpSolver, built: _Model, n: int, k_stages: int) -> list[int]:
    return [next(k for k in range(k_stages) if solver.value(built.x[b, k])) for b in range(n)]


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
    started = time.perf_counter()
    n, k_stages = problem.num_blocks, problem.num_stages
    unit_s = _time_unit(problem)
    built = _build(problem, unit_s)
    if hint is not None:
        for b in range(n):
            for k in range(k_stages):
                built.model.add_hint(built.x[b, k], hint[b] == k)
    primary = built.period if problem.objective == "throughput" else built.latency
    built.model.minimize(primary)
    phase1 = 0.8 * time_limit_s if problem.objective == "throughput" else time_limit_s
    solver = _solver(phase1, seed)
    status, interrupted = solve_interruptibly(solver, built.model, _Callback(unit_s, progress))
    effort = solver.deterministic_time
    answer: list[int] | None = None
    proven = status == cp_model.OPTIMAL
    bound_units = (
        solver.best_objective_bound if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else 0.0
    )
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        answer = _read(solver, built, n, k_stages)
        if problem.objective == "throughput" and not interrupted:
            best_period = solver.value(built.period)
            built.model.clear_hints()
            for b in range(n):
                for k in range(k_stages):
                    built.model.add_hint(built.x[b, k], answer[b] == k)
            built.model.add(built.period <= best_period)
            built.model.minimize(built.latency)
            solver2 = _solver(max(time_limit_s - effort, 0.05 * time_limit_s), seed)
            status2, interrupted = solve_interruptibly(solver2, built.model)
            if status2 in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                answer = _read(solver2, built, n, k_stages)
            effort += solver2.deterministic_time
    candidates = [a for a in (answer, list(hint) if hint is not None else None) if a is not None]
    candidates = [a for a in candidates if check_assignment(problem, a) is None]
    if not candidates:
        return CpSatResult(
            None,
            "HEURISTIC",
            math.inf,
            bound_units * unit_s,
            effort,
            time.perf_counter() - started,
            interrupted,
            unit_s,
        )
    scored = [(score(problem, a), a) for a in candidates]
    fitting = [(s, a) for s, a in scored if s.fits] or scored
    best_score, best = min(
        fitting, key=lambda sa: (sa[0].objective_s(problem.objective), sa[0].latency_s)
    )
    objective = best_score.objective_s(problem.objective)
    found_by_cpsat = answer is not None and best == answer
    status_name = (
        "OPTIMAL"
        if proven
        else ("FEASIBLE" if found_by_cpsat or answer is not None else "HEURISTIC")
    )
    bound_s = min(bound_units * unit_s, objective)
    return CpSatResult(
        tuple(best),
        status_name,
        objective,
        bound_s,
        effort,
        time.perf_counter() - started,
        interrupted,
        unit_s,
    )
