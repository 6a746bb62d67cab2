"""Pipeline solvers on pure numbers: brute-force optimality, validity, baselines."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partitioner.solvers.baselines import greedy_partition, params_partition, uniform_partition
from partitioner.solvers.cpsat_pipeline import cpsat_partition
from partitioner.solvers.dp import dp_partition
from partitioner.solvers.problem import (
    HostFlow,
    PipelineProblem,
    RelayFlow,
    check_assignment,
    lower_bound_s,
    score,
)


def chain(times, k, *, flow_s=0.0, flow_bytes=0, capacity=10**12, resident=None) -> PipelineProblem:
    n = len(times)
    return PipelineProblem(
        num_stages=k,
        block_time_s=tuple((t,) * k for t in times),
        block_resident_bytes=tuple(resident or [0] * n),
        block_activation_bytes=(0,) * n,
        block_host_out_s=((0.0,) * k,) * n,
        edges=tuple((b, b + 1) for b in range(n - 1)),
        relay_flows=tuple(
            RelayFlow(b, (b + 1,), flow_bytes, (flow_s,) * (k - 1)) for b in range(n - 1)
        ),
        host_flows=(),
        capacity_bytes=(capacity,) * k,
        block_nodes=(1,) * n,
    )


def brute_force(problem: PipelineProblem) -> float:
    best = math.inf
    for stage_of in itertools.product(range(problem.num_stages), repeat=problem.num_blocks):
        if check_assignment(problem, stage_of) is not None:
            continue
        s = score(problem, stage_of)
        if s.fits:
            best = min(best, s.objective_s(problem.objective))
    return best


def test_chain_by_hand():
    # times 3,1,1,1,2 on 2 stages, no transfer cost: best split {3,1} | {1,1,2} -> max(4, 4) = 4
    p = chain([3.0, 1.0, 1.0, 1.0, 2.0], 2)
    stage_of = dp_partition(p)
    assert stage_of == [0, 0, 1, 1, 1]
    assert score(p, stage_of).estimate.period_s == 4.0
    assert lower_bound_s(p) == 4.0  # total 8 / 2 stages


def test_transfer_cost_moves_the_cut():
    # With 1.5 s per boundary crossing (blocking send/recv), the period is compute + transfers.
    # split after block 0: stage0 = 3 + 1.5 = 4.5, stage1 = 1.5 + 4 = 5.5 ; after block 1:
    # stage0 = 4 + 1.5 = 5.5, stage1 = 1.5 + 4 = 5.5 ... the optimum is 5.5
    p = chain([3.0, 1.0, 1.0, 1.0, 2.0], 2, flow_s=1.5)
    assert score(p, dp_partition(p)).estimate.period_s == 5.5


def test_memory_caps_force_a_worse_split():
    # Block 0 holds 60 bytes, the rest 10 each; capacity 70 per stage.
    p = chain([1.0, 1.0, 1.0, 1.0], 2, capacity=70, resident=[60, 10, 10, 10])
    stage_of = dp_partition(p)
    assert stage_of == [0, 0, 1, 1] or stage_of == [0, 1, 1, 1]
    assert score(p, stage_of).fits
    p_tight = chain([1.0, 1.0, 1.0, 1.0], 2, capacity=50, resident=[60, 10, 10, 10])
    assert dp_partition(p_tight) is None


def test_baselines_make_valid_splits():
    p = chain([5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 4.0], 3, resident=[100, 1, 1, 1, 1, 1, 1, 100])
    for solver in (params_partition, uniform_partition, greedy_partition):
        stage_of = solver(p)
        assert stage_of is not None and check_assignment(p, stage_of) is None, solver.__name__
    # params balances resident bytes: the two 100-byte blocks go to different stages
    params = params_partition(p)
    assert params[0] != params[-1]
    assert uniform_partition(p) == [0, 0, 0, 1, 1, 2, 2, 2]


@st.composite
def dag_problems(draw):
    n = draw(st.integers(2, 6))
    k = draw(st.integers(1, min(3, n)))
    times = [draw(st.floats(0.1, 10.0)) for _ in range(n)]
    speed = [draw(st.floats(0.5, 2.0)) for _ in range(k)]  # heterogeneous devices
    edges, flows = [], []
    for v in range(1, n):
        parents = draw(st.sets(st.integers(0, v - 1), min_size=0, max_size=2))
        edges += [(u, v) for u in sorted(parents)]
    for u in range(n - 1):
        readers = tuple(sorted({v for a, v in edges if a == u}))
        if readers:
            secs = tuple(draw(st.floats(0.0, 3.0)) for _ in range(k - 1))
            flows.append(RelayFlow(u, readers, draw(st.integers(0, 50)), secs))
    resident = [draw(st.integers(0, 100)) for _ in range(n)]
    capacity = tuple(draw(st.integers(60, 400)) for _ in range(k))
    host_flows = ()
    if draw(st.booleans()):
        readers = tuple(sorted(draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=3))))
        host_flows = (HostFlow(readers, 8, tuple(draw(st.floats(0.0, 1.0)) for _ in range(k))),)
    return PipelineProblem(
        num_stages=k,
        block_time_s=tuple(tuple(t / s for s in speed) for t in times),
        block_resident_bytes=tuple(resident),
        block_activation_bytes=tuple(draw(st.integers(0, 30)) for _ in range(n)),
        block_host_out_s=tuple(
            tuple(draw(st.floats(0.0, 0.5)) for _ in range(k)) for _ in range(n)
        ),
        edges=tuple(edges),
        relay_flows=tuple(flows),
        host_flows=host_flows,
        capacity_bytes=capacity,
        overlap_transfers=draw(st.booleans()),
        objective=draw(st.sampled_from(["throughput", "latency"])),
        block_nodes=(1,) * n,
        # a fixed cost per stage and step (a session.run, a graph launch), unequal ones too
        stage_overhead_s=draw(
            st.sampled_from([(), tuple(draw(st.floats(0.0, 4.0)) for _ in range(k))])
        ),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dag_problems())
def test_cpsat_matches_brute_force_on_small_dags(problem):
    optimum = brute_force(problem)
    result = cpsat_partition(problem, hint=dp_partition(problem), time_limit_s=10, seed=0)
    if math.isinf(optimum):
        assert result.stage_of is None or not score(problem, result.stage_of).fits
        return
    assert result.stage_of is not None
    assert check_assignment(problem, result.stage_of) is None
    got = score(problem, result.stage_of)
    assert got.fits
    # The integer model rounds each time down to its unit; allow that much.
    slack = result.unit_s * (problem.num_blocks + len(problem.relay_flows) + 2) * 2
    assert got.objective_s(problem.objective) <= optimum + slack
    assert result.bound_s <= optimum + 1e-12
    assert result.status == "OPTIMAL"
    # the proven bound is of the same objective, every stage's fixed cost included
    assert result.bound_s >= optimum - slack


def test_each_stage_pays_its_fixed_cost_in_the_model():
    # times 2, 2 on 2 stages; stage 0 pays 3 s a step, stage 1 none. By hand: period
    # max(2 + 3, 2) = 5 whichever block goes first, latency 2 + 3 + 2 = 7.
    p = chain([2.0, 2.0], 2)
    for objective, want in (("throughput", 5.0), ("latency", 7.0)):
        fixed = PipelineProblem(**{**vars(p), "stage_overhead_s": (3.0, 0.0),
                                   "objective": objective})  # fmt: skip
        result = cpsat_partition(fixed, hint=dp_partition(fixed), time_limit_s=10, seed=0)
        assert result.status == "OPTIMAL"
        assert score(fixed, result.stage_of).objective_s(objective) == pytest.approx(want)
        assert result.bound_s == pytest.approx(want, abs=4 * result.unit_s)


@settings(max_examples=40, deadline=None)
@given(dag_problems())
def test_dp_is_valid_and_never_beats_the_optimum(problem):
    stage_of = dp_partition(problem)
    optimum = brute_force(problem)
    if stage_of is None:
        return
    assert check_assignment(problem, stage_of) is None
    got = score(problem, stage_of)
    assert got.fits
    assert got.objective_s(problem.objective) >= optimum - 1e-9
