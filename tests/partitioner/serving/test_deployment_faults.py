"""Pools going down: moved and restarted requests, rerouted arrivals, lost ones, the
report's fault figures and recovery time, all worked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from partitioner.errors import UsageError
from partitioner.simulate.serving import Requests, ServingConfig, Slo
from partitioner.simulate.serving.deployment import Fault
from partitioner.simulate.serving.fleet import FleetPool, simulate_fleet
from partitioner.simulate.serving.fleet_report import fleet_report, recovery_s
from partitioner.simulate.serving.routing import OverflowRouting, WeightedRouting
from tests.partitioner.serving.costs import LinearCost

TWO_AT_A_TIME = ServingConfig(kv_capacity_tokens=1024, max_num_seqs=2)
ALL_TO_A = WeightedRouting((("a", 1.0),))


def requests(*rows: tuple[float, int, int]) -> Requests:
    arrival, prompt, output = zip(*rows, strict=True)
    return Requests(np.array(arrival), np.array(prompt), np.array(output))


def pool(name: str) -> FleetPool:
    return FleetPool(name, LinearCost(base_s=1.0), TWO_AT_A_TIME)  # 1 s an iteration


# (arrival, prompt, output); everything is routed to a, two sequences at a time
WORKED = requests(
    (0.0, 4, 5),  # r0: tokens at 1, 2, 3, ... on a
    (0.0, 4, 1),  # r1: done at 1 on a, before the fault: it stays there
    (0.5, 4, 3),  # r2: admitted at 1 when r1 ends; running at the fault
    (2.0, 4, 1),  # r3: waiting behind r0 and r2 at the fault
    (2.7, 4, 1),  # r4: a is down: rerouted to b
    (8.0, 4, 1),  # r5: a is back (fresh) since 7.5
    (9.5, 4, 1),  # r6
    (11.0, 4, 1),  # r7
)


def worked_run():
    return simulate_fleet(
        WORKED, [pool("a"), pool("b")], ALL_TO_A, fallback="b", faults=[Fault("a", 2.5, 5.0)]
    )


def test_a_fault_moves_queued_and_running_requests_and_restarts_them_on_the_fallback():
    run = worked_run()
    (outcome,) = run.faults
    assert (outcome.moved_running, outcome.moved_queued) == (2, 1)  # r0, r2 | r3
    assert (outcome.restarted, outcome.rerouted, outcome.lost) == (3, 1, 0)
    assert outcome.moved == (0, 2, 3)
    assert run.moves.tolist() == [1, 0, 1, 1, 0, 0, 0, 0]
    assert run.routed_to.tolist() == [0] * 8
    assert run.pool_of.tolist() == [1, 0, 1, 1, 1, 0, 0, 0]
    # on b from 2.5: r0 and r2 prefill again (first tokens at 3.5), r2 ends at 5.5; r3 (moved)
    # and r4 (arrived 2.7) wait for a slot: r3 runs 5.5-6.5, r4 6.5-7.5, beside r0's 4th and
    # 5th tokens; r5, r6, r7 run alone on the fresh a
    assert run.finish_s.tolist() == [7.5, 1.0, 5.5, 6.5, 7.5, 9.0, 10.5, 12.0]
    # latencies count from the original arrival, the discarded tokens not at all
    ttft = run.first_token_s - WORKED.arrival_s
    assert ttft.tolist() == pytest.approx([3.5, 1.0, 3.0, 4.5, 4.8, 1.0, 1.0, 1.0])


def test_the_report_counts_the_fault_its_slo_violations_and_the_recovery():
    run = worked_run()
    doc = fleet_report(run, slo=Slo(ttft_s=2.0), recovery_window_s=1.0)
    overall = doc["serving"]
    assert (overall["requests"], overall["completed"]) == (8, 8)
    assert (overall["lost_requests"], overall["restarted_requests"]) == (0, 3)
    assert overall["slo_attainment"] == pytest.approx(4 / 8)  # r0, r2, r3, r4 miss 2 s
    assert overall["meets_slo"] is False
    a, b = doc["pools"]["a"], doc["pools"]["b"]
    assert (a["routed_requests"], a["requests"], b["routed_requests"], b["requests"]) == (
        8,
        4,
        0,
        4,
    )
    assert b["output_tokens"] == 5 + 3 + 1 + 1
    (fault,) = doc["faults"]
    assert fault == {
        "pool": "a",
        "start_s": 2.5,
        "end_s": 7.5,
        "moved_requests": 3,
        "moved_running": 2,
        "restarted_requests": 3,
        "rerouted_arrivals": 1,
        "lost_requests": 0,
        "arrivals": 1,  # r4, in [2.5, 7.5)
        "slo_violations": 1,
        "moved_slo_violations": 3,
        # windows of 1 s from 2.5 and 2.7 hold r4 (a miss); from 8.0 r5 alone, in SLO
        "recovery_s": 5.5,
        "recovery_window_s": 1.0,
    }
    assert doc["classes"] == {}  # the workload has no classes
    assert json.loads(json.dumps(doc)) == doc


def test_without_a_fallback_the_failed_pools_requests_are_lost_and_counted():
    run = simulate_fleet(
        requests((0.0, 4, 3), (1.0, 4, 1), (1.5, 4, 1)),
        [pool("a")],
        ALL_TO_A,
        faults=[Fault("a", 0.5)],  # down to the end
    )
    (outcome,) = run.faults
    assert (outcome.moved_running, outcome.restarted, outcome.rerouted, outcome.lost) == (
        1,
        0,
        0,
        3,
    )
    assert run.pool_of.tolist() == [-1, -1, -1]
    doc = fleet_report(run, slo=Slo(ttft_s=1.0))
    assert doc["serving"]["lost_requests"] == 3
    assert (doc["serving"]["requests"], doc["serving"]["completed"]) == (3, 0)
    assert doc["serving"]["slo_attainment"] == 0.0
    assert doc["faults"][0]["end_s"] is None
    assert doc["faults"][0]["recovery_s"] is None  # never back


def test_failing_the_fallback_loses_what_it_holds_and_what_is_routed_to_it():
    # round robin a, b, a, b; b is the fallback and goes down at 0.5 with r1 running
    run = simulate_fleet(
        requests((0.0, 4, 1), (0.0, 4, 3), (1.0, 4, 1), (1.0, 4, 1)),
        [pool("a"), pool("b")],
        WeightedRouting((("a", 1.0), ("b", 1.0))),
        fallback="b",
        faults=[Fault("b", 0.5, 10.0)],
    )
    assert run.pool_of.tolist() == [0, -1, 0, -1]
    assert run.finish_s[[0, 2]].tolist() == [1.0, 2.0]  # a's requests are untouched
    assert run.faults[0].lost == 2


def test_a_fault_naming_an_unknown_pool_is_refused():
    with pytest.raises(UsageError, match="a fault names pool 'c', which is not in pools"):
        simulate_fleet(WORKED, [pool("a")], ALL_TO_A, faults=[Fault("c", 1.0)])


def test_recovery_needs_99_percent_in_slo_over_a_window_that_ends_by_the_last_arrival():
    arrival = np.arange(10.0)  # one a second
    met = np.array([1, 0, 0, 1, 0, 1, 1, 1, 1, 1], dtype=bool)
    # from a fault at 0.5, windows of 2 s start at 0.5, 1, 2, ...: [4, 6) holds a miss,
    # [5, 7) holds 5 and 6, both met
    assert recovery_s(arrival, met, 0.5, 2.0) == 4.5
    assert recovery_s(arrival, np.ones(10, dtype=bool), 0.5, 2.0) == 0.0
    assert recovery_s(arrival, met, 0.5, 20.0) is None  # no window ends by 9
    # 99 of the 100 arrivals in [0, 100) in SLO is enough; 98 is not
    many = np.arange(101.0)
    one_miss, two_misses = np.ones(101, dtype=bool), np.ones(101, dtype=bool)
    one_miss[10], two_misses[[10, 20]] = False, False
    assert recovery_s(many, one_miss, 0.0, 100.0) == 0.0
    assert recovery_s(many, two_misses, 0.0, 100.0) is None


def test_an_overflow_policy_overflows_past_a_primary_that_is_down():
    # no deployment fallback: r0, running on p when it fails, is lost; r1 finds p down,
    # counts it as full and overflows to f
    run = simulate_fleet(
        requests((0.0, 4, 3), (1.0, 4, 1)),
        [pool("p"), pool("f")],
        OverflowRouting("p", "f", queue_threshold=5),
        faults=[Fault("p", 0.5)],
    )
    assert run.pool_of.tolist() == [-1, 1]
    assert run.routed_to.tolist() == [0, 1]
    assert (run.faults[0].lost, run.faults[0].rerouted) == (1, 0)
    assert run.finish_s[1] == 2.0
