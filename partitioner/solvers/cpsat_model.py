"""The CP-SAT model of the pipeline problem (after OR-Tools' line_balancing_sat).

`cpsat_pipeline` solves it; this module only builds it and sets its hint.

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from partitioner.solvers.problem import PipelineProblem

__all__ = ["PipelineModel", "build_model", "hint_model", "time_unit"]


def time_unit(problem: PipelineProblem) -> float:
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
    overhead: tuple[int, ...]  # [stage]: its fixed cost a step (every stage holds a block)
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
            overhead=tuple(
                t(problem.stage_overhead_s[k]) if problem.stage_overhead_s else 0
                for k in range(problem.num_stages)
            ),  # fmt: skip
            boundary=tuple(tuple(t(v) for v in f.boundary_s) for f in problem.relay_flows),
            flow_mem=tuple(mem(f.bytes) for f in problem.relay_flows),
            resident_mem=tuple(mem(v) for v in problem.block_resident_bytes),
            act_mem=tuple(mem(v) for v in problem.block_activation_bytes),
        )


_Bools = dict[tuple[int, int], cp_model.IntVar]  # Boolean variables keyed by (item, stage)


@dataclass
class PipelineModel:
    model: cp_model.CpModel
    x: _Bools
    cross: _Bools
    host_in: _Bools
    act: list[cp_model.IntVar]
    period: cp_model.IntVar
    latency: cp_model.LinearExprT
    units: _Units


@dataclass(frozen=True)
class _Core:
    """The model and the variables that each stage's constraints read."""

    model: cp_model.CpModel
    problem: PipelineProblem
    units: _Units
    x: _Bools
    cross: _Bools
    host_in: _Bools
    period: cp_model.IntVar

    def boundary(self, k: int) -> cp_model.LinearExprT:
        """Time to move the relay flows that cross boundary k (0 past either end)."""
        if not 0 <= k < self.problem.num_stages - 1:
            return 0
        flows = range(len(self.problem.relay_flows))
        return sum(self.units.boundary[i][k] * self.cross[i, k] for i in flows)

    def boundary_mem(self, k: int) -> cp_model.LinearExprT:
        """Buffer memory of the relay flows that cross boundary k (0 past either end)."""
        if not 0 <= k < self.problem.num_stages - 1:
            return 0
        flows = range(len(self.problem.relay_flows))
        return sum(self.units.flow_mem[i] * self.cross[i, k] for i in flows)


def build_model(problem: PipelineProblem, unit_s: float) -> PipelineModel:
    """The integer model. CP-SAT's answers depend on the order things are added: keep it."""
    n, k_stages = problem.num_blocks, problem.num_stages
    u = _Units.of(problem, unit_s)
    m = cp_model.CpModel()
    x = {(b, k): m.new_bool_var(f"x_{b}_{k}") for b in range(n) for k in range(k_stages)}
    for b in range(n):
        m.add_exactly_one(x[b, k] for k in range(k_stages))
    for k in range(k_stages):
        m.add_at_least_one(x[b, k] for b in range(n))
    for a, b in problem.edges:
        for k in range(k_stages - 1):
            m.add(_le(x, b, k) <= _le(x, a, k))
    cross, host_in = _flow_vars(m, problem, x)
    horizon = sum(max(r) for r in u.compute) + sum(max(r) for r in u.host_out) + sum(u.overhead)
    horizon += 2 * sum(max(r, default=0) for r in u.boundary) + k_stages * sum(
        max(r) for r in u.host_in
    )
    period = m.new_int_var(0, horizon + 1, "period")
    core = _Core(m, problem, u, x, cross, host_in, period)
    stages = [_stage(core, k) for k in range(k_stages)]
    latency = sum(term for term, _ in stages)
    return PipelineModel(m, x, cross, host_in, [act for _, act in stages], period, latency, u)


def _le(x: _Bools, b: int, k: int) -> cp_model.LinearExprT:
    """Block b is on a stage <= k."""
    return sum(x[b, j] for j in range(k + 1))


def _flow_vars(m: cp_model.CpModel, problem: PipelineProblem, x: _Bools) -> tuple[_Bools, _Bools]:
    """``cross[f, k]``, forced by each reader of relay flow f, then ``host_in[t, k]``."""
    cross, host_in = {}, {}
    for f_id, f in enumerate(problem.relay_flows):
        for k in range(problem.num_stages - 1):
            c = cross[f_id, k] = m.new_bool_var(f"cross_{f_id}_{k}")
            for d in f.dsts:
                m.add(c >= _le(x, f.src, k) - _le(x, d, k))
    for t_id, f in enumerate(problem.host_flows):
        for k in range(problem.num_stages):
            h = host_in[t_id, k] = m.new_bool_var(f"host_{t_id}_{k}")
            for d in f.dsts:
                m.add_implication(x[d, k], h)
    return cross, host_in


def _stage(core: _Core, k: int) -> tuple[cp_model.LinearExprT, cp_model.IntVar]:
    """Stage k's period and memory constraints; its latency term and ``act[k]``."""
    m, u, x, problem = core.model, core.units, core.x, core.problem
    blocks = range(problem.num_blocks)
    compute = sum(u.compute[b][k] * x[b, k] for b in blocks) + u.overhead[k]
    host = sum(u.host_out[b][k] * x[b, k] for b in blocks)
    host += sum(u.host_in[i][k] * core.host_in[i, k] for i in range(len(problem.host_flows)))
    recv, send = core.boundary(k - 1), core.boundary(k)
    if problem.overlap_transfers:
        for term in (recv, host, compute, send):
            m.add(core.period >= term)
    else:
        m.add(core.period >= recv + host + compute + send)
    act = m.new_int_var(0, max(u.act_mem, default=0), f"act_{k}")
    for b in blocks:
        if u.act_mem[b]:
            m.add(act >= u.act_mem[b] * x[b, k])
    resident = sum(u.resident_mem[b] * x[b, k] for b in blocks)
    buffers = core.boundary_mem(k - 1) + core.boundary_mem(k)
    capacity = problem.capacity_bytes[k] // u.memory_unit
    m.add(resident + problem.microbatches_in_flight * act + buffers <= capacity)
    return compute + send + host, act


def hint_model(built: PipelineModel, problem: PipelineProblem, stage_of: Sequence[int]) -> None:
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
        compute = sum(u.compute[b][k] for b in blocks) + u.overhead[k]
        host = sum(u.host_out[b][k] for b in blocks)
        host += sum(u.host_in[i][k] for i in range(len(problem.host_flows)) if k in delivered[i])

        def moved(j: int) -> int:
            return sum(u.boundary[i][j] for i in range(len(problem.relay_flows)) if crossing[i][j])

        recv = moved(k - 1) if k > 0 else 0
        send = moved(k) if k < k_stages - 1 else 0
        terms = (recv, host, compute, send)
        periods.append(max(terms) if problem.overlap_transfers else sum(terms))
    m.add_hint(built.period, max(periods))
