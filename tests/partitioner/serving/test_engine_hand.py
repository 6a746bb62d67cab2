"""The serving engine on cases small enough to work out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from partitioner.errors import UsageError
from partitioner.simulate.serving import IterationShape, Requests, ServingConfig, simulate_requests
from partitioner.simulate.serving.engine import Engine
from tests.partitioner.serving.costs import LinearCost


def requests(*rows: tuple[float, int, int]) -> Requests:
    arrival, prompt, output = zip(*rows, strict=True)
    return Requests(np.array(arrival), np.array(prompt), np.array(output))


def itl(engine_rec) -> list[float]:
    values, counts = engine_rec.itl_distribution()
    return np.repeat(values, counts).tolist()


def test_single_request_prefill_then_decodes():
    # prefill of 10 rows: 0.5 + 0.05·10 = 1.0 s; each decode: 0.5 + 0.05 = 0.55 s
    cost = LinearCost(base_s=0.5, per_row_s=0.05)
    config = ServingConfig(kv_capacity_tokens=160)  # 10 blocks of 16
    report = simulate_requests(requests((0.0, 10, 4)), cost, config)
    # a chunk of 10 on an empty cache attends to 1 + 2 + ... + 10 = 55 keys; then 11, 12, 13
    assert cost.shapes == [
        IterationShape(10, 1, 55, 10, 10, 1, 10, 55, 10),  # a chunk on an empty cache
        IterationShape(1, 1, 11, 11, 11),
        IterationShape(1, 1, 12, 12, 12),
        IterationShape(1, 1, 13, 13, 13),
    ]
    # tokens at 1.0, 1.55, 2.10, 2.65
    assert report.ttft_s.p50 == pytest.approx(1.0)
    assert report.e2e_s.p50 == pytest.approx(2.65)
    assert report.tpot_s.mean == pytest.approx((2.65 - 1.0) / 3)
    assert report.itl_s.p99 == pytest.approx(0.55)
    assert report.queue_s.mean == 0.0
    assert report.iterations == 4 and report.mean_batch_size == 1.0
    assert report.duration_s == pytest.approx(2.65)
    assert report.throughput_tokens_per_s == pytest.approx(4 / 2.65)
    assert report.input_tokens_per_s == pytest.approx(10 / 2.65)
    assert report.requests_per_s == pytest.approx(1 / 2.65)
    # 13 tokens of cache fit one block, held the whole run
    assert report.kv_cache_utilisation.mean == pytest.approx(0.1)
    assert report.kv_cache_utilisation.max == pytest.approx(0.1)
    assert report.stage_utilisation == (pytest.approx(1.0),)
    assert (report.completed, report.rejected, report.preemptions) == (1, 0, 0)


def test_token_budget_chunks_the_first_prompt_and_admits_the_second_behind_it():
    # budget 8: A (prompt 10) gets 8, then its last 2 with B's whole prompt of 6
    cost = LinearCost(base_s=1.0, per_row_s=0.1)
    config = ServingConfig(kv_capacity_tokens=1024, max_num_batched_tokens=8)
    report = simulate_requests(requests((0.0, 10, 2), (0.0, 6, 2)), cost, config)
    assert cost.shapes == [
        IterationShape(8, 1, 36, 8, 8, 1, 8, 36, 8),  # A rows 0..7: 1 + ... + 8
        # A rows 8, 9 attend to 9 + 10; B rows 0..5 to 1 + ... + 6 = 21
        # only B starts an empty cache
        IterationShape(8, 2, 19 + 21, 10 + 6, 10, 1, 6, 21, 6),
        IterationShape(2, 2, 11 + 7, 11 + 7, 11),  # both decode
    ]
    # 1.8 s, 1.8 s, 1.2 s: first tokens at 3.6, last at 4.8
    assert report.ttft_s.to_json() == pytest.approx(
        {"mean": 3.6, "p50": 3.6, "p90": 3.6, "p95": 3.6, "p99": 3.6}
    )
    assert report.e2e_s.p99 == pytest.approx(4.8)
    assert report.queue_s.mean == pytest.approx(0.9)  # A at 0, B first scheduled at 1.8
    assert report.tpot_s.p50 == pytest.approx(1.2)


def test_without_chunked_prefill_a_prompt_over_the_budget_is_rejected():
    cost = LinearCost(base_s=1.0, per_row_s=0.1)
    config = ServingConfig(kv_capacity_tokens=1024, max_num_batched_tokens=8, chunked_prefill=False)
    report = simulate_requests(requests((0.0, 10, 2), (0.0, 6, 2)), cost, config)
    # A: 10 + 2 - 1 = 11 tokens can never be prefilled at once; B: 7 can
    assert (report.requests, report.completed, report.rejected) == (2, 1, 1)
    assert cost.shapes[0] == IterationShape(6, 1, 21, 6, 6, 1, 6, 21, 6)


def test_a_request_larger_than_the_cache_is_rejected_and_counted():
    config = ServingConfig(kv_capacity_tokens=32, block_size_tokens=16)
    # 30 + 4 - 1 = 33 tokens need 3 blocks of the 2 there are; 20 + 5 - 1 = 24 need 2
    report = simulate_requests(requests((0.0, 30, 4), (0.5, 20, 5)), LinearCost(), config)
    assert (report.completed, report.rejected) == (1, 1)
    assert report.duration_s == pytest.approx(5.5)  # from the first arrival at 0


def test_preemption_recomputes_without_duplicating_tokens():
    # blocks of 2 tokens, 4 blocks; A and B each end at 2 + 4 - 1 = 5 tokens (3 blocks)
    config = ServingConfig(kv_capacity_tokens=8, block_size_tokens=2)
    cost = LinearCost(base_s=1.0)
    engine = Engine(requests((0.0, 2, 4), (0.0, 2, 4)), cost, config)
    rec = engine.run()
    # t=0 both prefill (1 block each); t=1 both open a second block (4 used); t=2 no block;
    # t=3 A needs a third: B, the last admitted, is preempted (frees 2) and A runs alone,
    # finishing at 4; t=4 B recomputes prompt + 3 generated = 5 tokens, emitting its 4th at 5
    assert [s.rows for s in cost.shapes] == [4, 2, 2, 1, 5]
    assert cost.shapes[-1] == IterationShape(5, 1, 15, 5, 5, 1, 5, 15, 5)  # from empty
    assert rec.first_token_s == [1.0, 1.0]
    assert rec.finish_s == [4.0, 5.0]
    assert sorted(itl(rec)) == [1.0, 1.0, 1.0, 1.0, 1.0, 2.0]  # A: 1,1,1; B: 1,1, then 2
    assert rec.preemptions == 1
    assert rec.kv_peak_blocks == 4
    # blocks held: 2 on [0,1), 4 on [1,3), 3 on [3,4), 3 on [4,5): 16 block-seconds
    assert rec.kv_block_seconds == pytest.approx(16.0)
    report = simulate_requests(requests((0.0, 2, 4), (0.0, 2, 4)), LinearCost(base_s=1.0), config)
    assert report.output_tokens == 8 and report.preemptions == 1
    assert report.kv_cache_utilisation.mean == pytest.approx(16 / (4 * 5))
    assert report.tpot_s.to_json()["mean"] == pytest.approx((1.0 + 4 / 3) / 2)


def test_two_stages_interleave_two_requests():
    # budget 4 lets one prompt in per iteration; each stage takes 1 s
    config = ServingConfig(kv_capacity_tokens=1024, max_num_batched_tokens=4)
    cost = LinearCost(stages=2, base_s=1.0)
    engine = Engine(requests((0.0, 4, 3), (0.0, 4, 3)), cost, config)
    rec = engine.run()
    # A's iterations leave stage 1 at 2, 4, 6; B's, one stage behind, at 3, 5, 7
    assert rec.first_token_s == [2.0, 3.0]
    assert rec.finish_s == [6.0, 7.0]
    assert rec.first_scheduled_s == [0.0, 1.0]
    assert itl(rec) == [2.0, 2.0, 2.0, 2.0]
    assert rec.iterations == 6
    assert rec.stage_busy_s == [6.0, 6.0]


def test_host_overhead_comes_before_every_iteration_and_is_not_device_time():
    # the first test's request, each iteration 0.25 s of host work longer: tokens at
    # 1.25, 2.05, 2.85, 3.65; the device computes 1.0 + 3 * 0.55 = 2.65 s of it
    cost = LinearCost(base_s=0.5, per_row_s=0.05)
    config = ServingConfig(kv_capacity_tokens=160, iteration_overhead_s=0.25)
    report = simulate_requests(requests((0.0, 10, 4)), cost, config)
    assert report.ttft_s.p50 == pytest.approx(1.25)
    assert report.e2e_s.p50 == pytest.approx(3.65)
    assert report.itl_s.p99 == pytest.approx(0.8)
    assert report.stage_utilisation == (pytest.approx(2.65 / 3.65),)


def test_host_overhead_holds_the_first_stage_of_a_pipeline():
    # two 1 s stages, 0.5 s of host work before stage 0 of each iteration. A: stage 0 ends
    # 1.5, stage 1 2.5; B starts when stage 0 frees: 3.0, 4.0; A's next waits for stage 0
    # (3.0): 4.5, 5.5; B: 6.0, 7.0; A: 7.5, 8.5; B: 9.0, 10.0
    config = ServingConfig(
        kv_capacity_tokens=1024, max_num_batched_tokens=4, iteration_overhead_s=0.5
    )
    rec = Engine(requests((0.0, 4, 3), (0.0, 4, 3)), LinearCost(stages=2, base_s=1.0), config).run()
    assert rec.first_token_s == [2.5, 4.0]
    assert rec.finish_s == [8.5, 10.0]
    assert rec.stage_busy_s == [6.0, 6.0]


def test_host_overhead_per_token_grows_with_the_iteration():
    # the first test's request (a 10-token prompt, then 3 one-token steps), 0.1 s of host
    # work per iteration and 0.02 s per token: the prefill's host part is 0.1 + 10 * 0.02
    # = 0.3 s, each step's 0.12 s. Tokens at 0.5 + 0.5 + 0.3 = 1.3, then 0.55 + 0.12 = 0.67
    # apart: 1.97, 2.64, 3.31
    cost = LinearCost(base_s=0.5, per_row_s=0.05)
    config = ServingConfig(kv_capacity_tokens=160, iteration_overhead_s=0.1, token_overhead_s=0.02)
    report = simulate_requests(requests((0.0, 10, 4)), cost, config)
    assert report.ttft_s.p50 == pytest.approx(1.3)
    assert report.e2e_s.p50 == pytest.approx(3.31)
    assert report.stage_utilisation == (pytest.approx(2.65 / 3.31),)


@pytest.mark.parametrize("name", ["iteration_overhead_s", "token_overhead_s"])
@pytest.mark.parametrize("overhead", [-1e-3, 2.0, float("nan"), True, "1ms"])
def test_a_bad_host_overhead_is_refused(overhead, name):
    with pytest.raises(UsageError, match=name):
        ServingConfig(kv_capacity_tokens=160, **{name: overhead})


def test_a_slower_second_stage_holds_iterations_back():
    # stage 0 takes 1 s, stage 1 takes 2 s: an iteration waits for stage 1 to free
    config = ServingConfig(kv_capacity_tokens=1024, max_num_batched_tokens=4)
    cost = LinearCost(stages=2, base_s=1.0, stage_scale=(1.0, 2.0))
    report = simulate_requests(requests((0.0, 4, 3), (0.0, 4, 3)), cost, config)
    # A: stage 1 on [1,3], [5,7], [9,11]; B: [3,5], [7,9], [11,13]
    assert report.ttft_s.mean == pytest.approx((3 + 5) / 2)
    assert report.e2e_s.mean == pytest.approx((11 + 13) / 2)
    assert report.tpot_s.p50 == pytest.approx(4.0)
    assert report.stage_utilisation == pytest.approx((6 / 13, 12 / 13))


def test_max_num_seqs_holds_requests_in_the_queue():
    config = ServingConfig(kv_capacity_tokens=1024, max_num_seqs=1)
    report = simulate_requests(requests((0.0, 4, 2), (0.0, 4, 2)), LinearCost(), config)
    # one at a time: A on [0,2], B on [2,4]
    assert report.queue_s.to_json()["p99"] == pytest.approx(1.98)  # of 0 and 2
    assert report.e2e_s.mean == pytest.approx((2 + 4) / 2)
    assert report.mean_batch_size == 1.0


def test_idle_gaps_between_arrivals_are_not_busy_time():
    report = simulate_requests(
        requests((0.0, 4, 1), (10.0, 4, 1)), LinearCost(), ServingConfig(1024)
    )
    assert report.duration_s == pytest.approx(11.0)
    assert report.stage_utilisation == (pytest.approx(2 / 11),)
    assert report.tpot_s.mean is None  # one-token outputs have no TPOT


@pytest.mark.parametrize(
    "seconds, why",
    [
        ((-1.0,), "priced stage 0"),
        ((float("nan"),), "priced stage 0"),
        ((1.0, 1.0), "gave 2 stage"),
    ],
)
def test_bad_stage_times_are_refused(seconds, why):
    class Bad:
        stages = 1

        def stage_seconds(self, shape):
            return seconds

    with pytest.raises(UsageError, match=why):
        simulate_requests(requests((0.0, 4, 2)), Bad(), ServingConfig(1024))


def test_prompt_rows_take_their_share_of_the_device_time():
    # the first test's request: its 10-row prefill (1.0 s) is all prompt, its three decode
    # steps (0.55 s each) none: 1.0 of 2.65 s
    cost = LinearCost(base_s=0.5, per_row_s=0.05)
    config = ServingConfig(kv_capacity_tokens=160)
    engine = Engine(requests((0.0, 10, 4)), cost, config)
    rec = engine.run()
    assert rec.prompt_busy_s == pytest.approx(1.0)
    report = simulate_requests(requests((0.0, 10, 4)), cost, config)
    assert report.prompt_busy_share == pytest.approx(1.0 / 2.65)
