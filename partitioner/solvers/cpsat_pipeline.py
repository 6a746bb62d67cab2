"""CP-SAT pipeline partitioner for any block DAG (after OR-Tools' line_balancing_sat).

Variables (dicts keyed by tuples, as in OR-Tools' examples):

- ``x[b, k]``: block b runs on stage k (exactly one per block; every stage used);
- ``cross[f, k]``: relayed flow f crosses boundary k (stage k -> k+1), forced by
  ``cross >= le[src, k] - le[d, k]`` for each reader d, where ``le[b, k]`` says
  block b is on a stage <= k; precedence is ``le[v, k] <= le[u, k]`` per edge;
- ``host_in[t, k]``: model input t is delivered to stage k;
- ``act[k]``: the largest activation peak among stage k's blocks.

Units are integers, and said: time in ``unit_s`` (a power of ten chosen so the
whole graph is ~1e6 units), memory in ``unit_bytes`` (1 B, KiB, MiB, ... the
smallest that keeps capacities below 2**31; a larger amount is capped just above
the largest capacity, which rules out the same stages). Times are rounded *down*
and memory *up*, so the model is a relaxation in time (its bound is a true lower
bound) and conservative in memory (its answers fit).

Objective "throughput" minimises the bottleneck period P (a stage's recv +
host + compute + send, or their max when transfers overlap), then, with P
fixed at its best, the latency. "latency" minimises the latency directly.

The warm start is a *complete* hint (every variable set from the DP's answer):
CP-SAT repairs a partial hint slowly, but starts from a complete feasible one.

Determinism: one worker (sequential search) with a deterministic time limit,
so the answer is a function of the input and seed, not of the machine's load.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from partitioner.solvers.interrupt import Interrupt, StopSignal, solve_interruptibly
from partitioner.solvers.problem import PipelineProblem, check_assignment, score

__all__ = ["CpSatResult", "cpsat_partition", "solve_interruptibly", "NUM_WORKERS"]

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


def _time_unit(problem: PipelineProblem) -> float:
    total = sum(max(row) for row in problem.block_time_s)
    total += sum(max(f.boundary_s, default=0.0) for f in problem.relay_flows)
    if total <= 0:
        return 1e-9
    return 10.0 ** math.floor(math.log10(total / 1e6))


def _memory_unit(problem: PipelineProblem) -> int:
    unit = 1
    while max(problem.capacity_bytes) / unit > 2**31:
        unit *= 1024
    return unit


@dataclass(frozen=True)
class _Units:
    """The problem's numbers in the model's integer units (time rounded down, memory up)."""

    memory_unit: int
    compute: tuple[tuple[int, ...], ...]  # [block][stage]
    host_out: tuple[tuple[int, ...], ...]  # [block][stage]
    host_in: tuple[tuple[int, ...], ...]  # [input flow][stage]
    boundary: tuple[tuple[int, ...], ...]  # [relay flow][boundary]
    flow_mem: tuple[int, ...]
    resident_mem: tuple[int, ...]
    act_mem: tuple[int, ...]

    @staticmethod
    def of(problem: PipelineProblem, unit_s: float) -> _Units:
        def t(seconds: float) -> int:
            return int(seconds / unit_s)

        memory_unit = _memory_unit(problem)
        # Every memory term is >= 0, so one above the largest capacity rules its stage
        # out whatever its size: capping it there keeps the model exact and its integers
        # far inside int64 (a declared 2**31 x 2**62 tensor overflowed CP-SAT's domains).
        over = max(problem.capacity_bytes) // memory_unit + 1

        def mem(nbytes: int) -> int:
            return min(-(-nbytes // memory_unit), over)

        return _Units(
            memory_unit=memory_unit,
            compute=tuple(tuple(t(v) for v in row) for row in problem.block_time_s),
            host_out=tuple(tuple(t(v) for v in row) for row in problem.block_host_out_s),
            host_in=tuple(tuple(t(v) for v in f.stage_s) for f in problem.host_flows),
            boundary=tuple(tuple(t(v) for v in f.boundary_s) for f in problem.relay_flows),
            flow_mem=tuple(mem(f.bytes) for f in problem.relay_flows),
            resident_mem=tuple(mem(v) for v in problem.block_resident_bytes),
            act_mem=tuple(mem(v) for v in problem.block_activation_bytes),
        )


@dataclass
class _Model:
    model: cp_model.CpModel
    x: dict[tuple[int, int], cp_model.IntVar]
    cross: dict[tuple[int, int], cp_model.IntVar]
    host_in: dict[tuple[int, int], cp_model.IntVar]
    act: list[cp_model.IntVar]
    period: cp_model.IntVar
    latency: cp_model.LinearExprT
    units: _Units


def _build(problem: PipelineProblem, unit_s: float) -> _Model:
    n, k_stages = problem.num_blocks, problem.num_stages
    u = _Units.of(problem, unit_s)
    m = cp_model.CpModel()
    x = {(b, k): m.new_bool_var(f"x_{b}_{k}") for b in range(n) for k in range(k_stages)}
    for b in range(n):
        m.add_exactly_one(x[b, k] for k in range(k_stages))
    for k in range(k_stages):
        m.add_at_least_one(x[b, k] for b in range(n))

    def le(b: int, k: int) -> cp_model.LinearExprT:
        return sum(x[b, j] for j in range(k + 1))

    for a, b in problem.edges:
        for k in range(k_stages - 1):
            m.add(le(b, k) <= le(a, k))
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

    def boundary(k: int) -> cp_model.LinearExprT:
        return sum(u.boundary[i][k] * cross[i, k] for i in range(len(problem.relay_flows)))

    def boundary_mem(k: int) -> cp_model.LinearExprT:
        return sum(u.flow_mem[i] * cross[i, k] for i in range(len(problem.relay_flows)))

    horizon = sum(max(r) for r in u.compute) + sum(max(r) for r in u.host_out)
    horizon += 2 * sum(max(r, default=0) for r in u.boundary) + k_stages * sum(
        max(r) for r in u.host_in
    )
    period = m.new_int_var(0, horizon + 1, "period")
    latency_terms, acts = [], []
    for k in range(k_stages):
        compute = sum(u.compute[b][k] * x[b, k] for b in range(n))
        host = sum(u.host_out[b][k] * x[b, k] for b in range(n))
        host += sum(u.host_in[i][k] * host_in[i, k] for i in range(len(problem.host_flows)))
        recv = boundary(k - 1) if k > 0 else 0
        send = boundary(k) if k < k_stages - 1 else 0
        if problem.overlap_transfers:
            for term in (recv, host, compute, send):
                m.add(period >= term)
        else:
            m.add(period >= recv + host + compute + send)
        latency_terms.append(compute + send + host)
        act = m.new_int_var(0, max(u.act_mem, default=0), f"act_{k}")
        acts.append(act)
        for b in range(n):
            if u.act_mem[b]:
                m.add(act >= u.act_mem[b] * x[b, k])
        resident = sum(u.resident_mem[b] * x[b, k] for b in range(n))
        buffers = (boundary_mem(k - 1) if k > 0 else 0) + (
            boundary_mem(k) if k < k_stages - 1 else 0
        )
        m.add(
            resident + problem.microbatches_in_flight * act + buffers
            <= problem.capacity_bytes[k] // u.memory_unit
        )
    return _Model(m, x, cross, host_in, acts, period, sum(latency_terms), u)


def _hint(built: _Model, problem: PipelineProblem, stage_of: Sequence[int]) -> None:
    """Set every variable from ``stage_of``: a complete hint CP-SAT starts from directly."""
    m, u, k_stages = built.model, built.units, problem.num_stages
    m.clear_hints()
    for (b, k), var in built.x.items():
        m.add_hint(var, stage_of[b] == k)
    crossing = [[False] * max(k_stages - 1, 0) for _ in problem.relay_flows]
    for f_id, f in enumerate(problem.relay_flows):
        for k in range(stage_of[f.src], max(stage_of[d] for d in f.dsts)):
            crossing[f_id][k] = True
    for (f_id, k), var in built.cross.items():
        m.add_hint(var, crossing[f_id][k])
    delivered = [{stage_of[d] for d in f.dsts} for f in problem.host_flows]
    for (t_id, k), var in built.host_in.items():
        m.add_hint(var, k in delivered[t_id])
    periods = []
    for k in range(k_stages):
        blocks = [b for b in range(problem.num_blocks) if stage_of[b] == k]
        m.add_hint(built.act[k], max((u.act_mem[b] for b in blocks), default=0))
        compute = sum(u.compute[b][k] for b in blocks)
        host = sum(u.host_out[b][k] for b in blocks)
        host += sum(u.host_in[i][k] for i in range(len(problem.host_flows)) if k in delivered[i])

        def moved(j: int) -> int:
            return sum(u.boundary[i][j] for i in range(len(problem.relay_flows)) if crossing[i][j])

        recv = moved(k - 1) if k > 0 else 0
        send = moved(k) if k < k_stages - 1 else 0
        terms = (recv, host, compute, send)
        periods.append(max(terms) if problem.overlap_transfers else sum(terms))
    m.add_hint(built.period, max(periods))


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


def _read(solver: cp_model.CpSolver, built: _Model, n: int, k_stages: int) -> list[int]:
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
    unit_s = _time_unit(problem)
    built = _build(problem, unit_s)
    if hint is not None:
        _hint(built, problem, hint)
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
        # Phase 2: keep the best period, minimise latency (the tie-break).
        built.model.add(built.period <= solver.value(built.period))
        _hint(built, problem, answer)
        built.model.minimize(built.latency)
        second = _solver(max(time_limit_s - effort, 0.05 * time_limit_s), seed)
        status2, interrupted = solve_interruptibly(second, built.model, None, stop)
        if status2 in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            answer = _read(second, built, n, k_stages)
        effort += _effort(second)
    candidates = [a for a in (answer, list(hint) if hint is not None else None) if a is not None]
    candidates = [a for a in candidates if check_assignment(problem, a) is None]
    wall_s = time.perf_counter() - started
    if not candidates:
        # Without an answer, say whether none exists (proven) or none was found in time.
        none_status = "INFEASIBLE" if status == cp_model.INFEASIBLE else "UNKNOWN"
        return CpSatResult(
            None, none_status, math.inf, bound_units * unit_s, effort, wall_s, interrupted, unit_s
        )
    scored = [(score(problem, a), a) for a in candidates]
    fitting = [(s, a) for s, a in scored if s.fits] or scored
    best_score, best = min(
        fitting, key=lambda sa: (sa[0].objective_s(problem.objective), sa[0].estimate.latency_s)
    )
    objective = best_score.objective_s(problem.objective)
    status_name = "OPTIMAL" if proven else ("FEASIBLE" if answer is not None else "HEURISTIC")
    bound_s = min(bound_units * unit_s, objective)
    return CpSatResult(
        tuple(best), status_name, objective, bound_s, effort, wall_s, interrupted, unit_s
    )
