"""Several pools on one clock: each routing policy and the replica choice, worked by hand,
and the stepped engines against one engine run in one go."""

from __future__ import annotations

import numpy as np
import pytest

from partitioner.errors import UsageError
from partitioner.simulate.serving import Requests, ServingConfig, simulate_requests
from partitioner.simulate.serving import steady as steady_module
from partitioner.simulate.serving.engine import Engine
from partitioner.simulate.serving.fleet import FleetPool, simulate_fleet
from partitioner.simulate.serving.routing import (
    OverflowRouting,
    PromptLengthRouting,
    SloClassRouting,
    WeightedRouting,
)
from tests.partitioner.serving.costs import LinearCost
from tests.partitioner.serving.test_engine_reference import CASES, random_requests

ROOMY = ServingConfig(kv_capacity_tokens=1024)
ONE_AT_A_TIME = ServingConfig(kv_capacity_tokens=1024, max_num_seqs=1)


def requests(*rows: tuple[float, int, int], classes: list[str] | None = None) -> Requests:
    arrival, prompt, output = zip(*rows, strict=True)
    return Requests(np.array(arrival), np.array(prompt), np.array(output), classes)


def pools(*names: str, config: ServingConfig = ROOMY, engines: int = 1) -> list[FleetPool]:
    # every iteration takes 1 s, whatever it holds
    return [FleetPool(name, LinearCost(base_s=1.0), config, engines) for name in names]


def test_weighted_is_smooth_round_robin():
    # credits (a, b) after adding 2 and 1: (2, 1) -> a, (1, 2) -> b, (3, 0) -> a, then again
    run = simulate_fleet(
        requests(*[(float(i), 4, 1) for i in range(6)]),
        pools("a", "b"),
        WeightedRouting((("a", 2.0), ("b", 1.0))),
    )
    assert run.pool_of.tolist() == [0, 1, 0, 0, 1, 0]
    assert run.routed_to.tolist() == run.pool_of.tolist()
    # decimal weights are read exactly: 0.7 / 0.3 is 7 / 3, ten requests split 7 and 3
    tenths = simulate_fleet(
        requests(*[(float(i), 4, 1) for i in range(10)]),
        pools("a", "b"),
        WeightedRouting((("a", 0.7), ("b", 0.3))),
    )
    assert np.bincount(tenths.pool_of).tolist() == [7, 3]


def test_prompt_length_sends_prompts_below_the_threshold_to_short():
    run = simulate_fleet(
        requests((0.0, 50, 1), (0.0, 100, 1), (1.0, 150, 1), (2.0, 99, 1)),
        pools("small", "big"),
        PromptLengthRouting(100, short="small", long="big"),
    )
    assert run.pool_of.tolist() == [0, 1, 1, 0]


def test_slo_class_routes_by_each_requests_class():
    run = simulate_fleet(
        requests((0.0, 4, 1), (0.0, 4, 1), (0.5, 4, 1), classes=["chat", "batch", "chat"]),
        pools("wafer", "gpu"),
        SloClassRouting((("chat", "wafer"), ("batch", "gpu"))),
    )
    assert run.pool_of.tolist() == [0, 1, 0]


def test_slo_class_refuses_requests_without_classes_or_with_an_unmapped_one():
    routing = SloClassRouting((("chat", "wafer"),))
    with pytest.raises(UsageError, match="needs requests with classes"):
        simulate_fleet(requests((0.0, 4, 1)), pools("wafer"), routing)
    with pytest.raises(UsageError, match="class 'batch', which routing.classes does not map"):
        simulate_fleet(requests((0.0, 4, 1), classes=["batch"]), pools("wafer"), routing)


def test_overflow_reads_the_primarys_queue_at_each_arrival():
    # p runs one request at a time, 1 s each (one output token). Queue threshold 1:
    # r0 (t=0) runs at once; r1 (0.5) finds nobody waiting -> p, queued behind r0;
    # r2 (0.6) finds r1 waiting -> f; at 1 r0 ends and r1 starts; r3 (1.5) finds p's
    # queue empty -> p; r4 (1.5) finds r3 waiting -> f, where r2's iteration runs until 1.6
    run = simulate_fleet(
        requests((0.0, 4, 1), (0.5, 4, 1), (0.6, 4, 1), (1.5, 4, 1), (1.5, 4, 1)),
        [*pools("p", config=ONE_AT_A_TIME), *pools("f")],
        OverflowRouting("p", "f", queue_threshold=1),
    )
    assert run.pool_of.tolist() == [0, 0, 1, 0, 1]
    ttft = run.first_token_s - run.requests.arrival_s
    assert ttft.tolist() == pytest.approx([1.0, 1.5, 1.0, 1.5, 1.1])


def test_inside_a_pool_the_replica_with_fewest_outstanding_requests_takes_it():
    # all at 0: replicas 0, 1, 0, 1 (first on a tie), so two finish at 1 and two at 2
    together = simulate_fleet(
        requests(*[(0.0, 4, 1)] * 4),
        pools("p", config=ONE_AT_A_TIME, engines=2),
        WeightedRouting((("p", 1.0),)),
    )
    assert together.finish_s.tolist() == [1.0, 1.0, 2.0, 2.0]
    # r0 (3 tokens) holds replica 0 until 3; r1 (0.5) goes to replica 1 and ends at 1.5;
    # at 1.5 replica 1 is idle again, so r2 goes there and ends at 2.5 (not 4 behind r0)
    staggered = simulate_fleet(
        requests((0.0, 4, 3), (0.5, 4, 1), (1.5, 4, 1)),
        pools("p", config=ONE_AT_A_TIME, engines=2),
        WeightedRouting((("p", 1.0),)),
    )
    assert staggered.finish_s.tolist() == [3.0, 1.5, 2.5]


@pytest.mark.parametrize("ties", [False, True], ids=["apart", "ties"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_one_engine_run_in_steps_matches_one_run(case, ties, monkeypatch):
    config, stages, rate = CASES[case]
    reqs = random_requests(7, 150, rate, 60)
    cost = (stages, 0.01, 1e-4, 1e-6)
    if ties:  # whole-second arrivals and iterations: arrivals as iterations end
        reqs = Requests(np.floor(reqs.arrival_s * 5), reqs.prompt_tokens, reqs.output_tokens)
        cost = (stages, 1.0, 0.0, 0.0)
    alone = Engine(reqs, LinearCost(*cost), config).run()
    handed_over = []
    leave = steady_module._leave_in_flight
    monkeypatch.setattr(
        steady_module,
        "_leave_in_flight",
        lambda *a: (handed_over.append(1), leave(*a))[1],
    )
    pool = FleetPool("p", LinearCost(*cost), config)
    run = simulate_fleet(reqs, [pool], WeightedRouting((("p", 1.0),)))
    stepped = run.recorders[0][0]
    for name in ("first_scheduled_s", "first_token_s", "finish_s"):
        assert np.array_equal(getattr(run, name), getattr(alone, name), equal_nan=True), name
    assert stepped.itl_distribution()[1].tolist() == alone.itl_distribution()[1].tolist()
    assert (stepped.iterations, stepped.preemptions, stepped.rejected) == (
        alone.iterations,
        alone.preemptions,
        alone.rejected,
    )
    assert stepped.kv_block_seconds == pytest.approx(alone.kv_block_seconds)
    if stages == 1 and case == "roomy" and not ties:  # decodes ran across an arrival
        assert handed_over


def test_pools_routed_independently_each_match_their_own_run():
    reqs = random_requests(3, 200, 80.0, 80)
    routing = PromptLengthRouting(40, short="s", long="l")
    config = ServingConfig(600, block_size_tokens=4, max_num_batched_tokens=64)
    run = simulate_fleet(reqs, pools("s", "l", config=config), routing)
    for k in (0, 1):
        mine = run.pool_of == k
        own = Requests(reqs.arrival_s[mine], reqs.prompt_tokens[mine], reqs.output_tokens[mine])
        alone = Engine(own, LinearCost(base_s=1.0), config).run()
        assert run.finish_s[mine].tolist() == alone.finish_s
    report = simulate_requests(reqs, LinearCost(base_s=1.0), config)  # sanity: all served
    assert report.completed == (~np.isnan(run.finish_s)).sum()


def test_an_arrival_as_a_decode_ends_joins_the_next_iteration_in_steps_too():
    # 1 s iterations: r0 decodes at 1, 2, 3, ...; r1 arrives at 2, exactly as one ends, and
    # is prefilled in the iteration formed then, alongside r0's decode (2 -> 3)
    reqs = requests((0.0, 4, 5), (2.0, 4, 1))
    alone = Engine(reqs, LinearCost(base_s=1.0), ROOMY).run()
    assert alone.finish_s == [5.0, 3.0]
    run = simulate_fleet(reqs, pools("p"), WeightedRouting((("p", 1.0),)))
    assert run.finish_s.tolist() == [5.0, 3.0]
