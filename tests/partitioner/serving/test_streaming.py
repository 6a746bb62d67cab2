"""Rows streaming through a wafer's regions (`partitioner.simulate.serving.streaming`)."""

from __future__ import annotations

import numpy as np
import pytest

from partitioner.simulate.serving import IterationShape, Requests, ServingConfig
from partitioner.simulate.serving.engine import Engine
from partitioner.simulate.serving.streaming import row_latency, streamed_finish


def test_a_flow_shop_of_identical_rows_by_hand():
    # 4 rows, stages of 4 s and 2 s: a row takes 1 s then 0.5 s; the last row leaves
    # stage 0 at 4 and stage 1 at 4.5 (= 1 + 0.5 + 3·max(1, 0.5)), not 4 + 2 = 6
    d = np.array([4.0, 2.0])
    finish = streamed_finish(np.zeros(2), d, row_latency(d, None, 4), start_s=0.0)
    assert finish.tolist() == [4.0, 4.5]
    # the slow stage second: 0.5 + 1 + 3·1 = 4.5 again
    d = np.array([2.0, 4.0])
    assert streamed_finish(np.zeros(2), d, row_latency(d, None, 4), 0.0).tolist() == [2.0, 4.5]
    # three stages, the middle one slowest: Σ u + (n - 1)·max u = 0.5 + 1 + 0.25 + 3
    d = np.array([2.0, 4.0, 1.0])
    three = streamed_finish(np.zeros(3), d, row_latency(d, None, 4), 0.0)
    assert three[-1] == pytest.approx(4.75)


def test_a_fixed_part_is_latency_every_row_waits_for_not_occupancy():
    """Two stages of 4 s, 1 s of each fixed (a mesh reduction): a row crosses a stage in
    1 + 3/4 s, so the last of 4 rows leaves at 4 + 1.75 = 5.75 (5 with nothing fixed),
    and one row alone takes the stages' whole 8 s either way."""
    d, fixed = np.array([4.0, 4.0]), np.array([1.0, 1.0])
    assert row_latency(d, fixed, 4).tolist() == [1.75, 1.75]
    assert streamed_finish(np.zeros(2), d, row_latency(d, fixed, 4), 0.0).tolist() == [4.0, 5.75]
    assert streamed_finish(np.zeros(2), d, row_latency(d, None, 4), 0.0).tolist() == [4.0, 5.0]
    assert streamed_finish(np.zeros(2), d, row_latency(d, fixed, 1), 0.0).tolist() == [4.0, 8.0]


def test_one_row_is_the_stage_by_stage_sum_and_busy_stages_hold_it():
    rng = np.random.default_rng(3)
    free, d = rng.uniform(0, 5, 40), rng.uniform(0, 1, 40)
    got = streamed_finish(free.copy(), d, row_latency(d, d / 3, 1), start_s=2.0)
    t, expected = 2.0, []
    for s in range(40):  # the engine's recurrence: t[s] = max(t[s-1], free[s]) + d[s]
        t = max(t, free[s]) + d[s]
        expected.append(t)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


class _Regions:
    """Two stages of 1 s per row; rows stream when asked to."""

    stages = 2

    def __init__(self, streams: bool) -> None:
        self.streams_rows = streams

    def stage_seconds(self, shape: IterationShape) -> list[float]:
        return [float(shape.rows)] * 2


@pytest.mark.parametrize(("streams", "ttft_s"), [(False, 16.0), (True, 9.0)])
def test_a_prompt_streams_through_the_regions(streams, ttft_s):
    """A prompt of 8 tokens: 8 s on each stage; streamed, its last row leaves at 1 + 8."""
    requests = Requests(np.array([0.0]), np.array([8]), np.array([2]))
    engine = Engine(requests, _Regions(streams), ServingConfig(kv_capacity_tokens=64))
    rec = engine.run()
    assert rec.first_token_s == [ttft_s]
    assert [float(b) for b in rec.stage_busy_s] == [9.0, 9.0]  # busy the same either way


def test_a_transfer_between_wafers_pays_its_latency_once_however_many_rows():
    """The link's latency is a fixed cost of the transfer, not a cost per byte: priced at
    the plan's batch of 1 and at 1,000 rows, only the bytes' time may grow."""
    from partitioner.plan import Transfer
    from partitioner.simulate.serving_cost import WaferIterationCost
    from targets.cost import WaferCostModel
    from targets.presets import presets

    target = presets()["wse3x4"]
    cost = WaferIterationCost.__new__(WaferIterationCost)  # only its cost model is needed
    cost.cost = WaferCostModel(target)
    one_row = Transfer("x", 256, 0, 1, cost.cost.inter_wafer_transfer_s(256), None)
    latency = target.inter_wafer_link.latency_s
    assert latency > 0 and cost._latency_s(one_row) == pytest.approx(latency)


class _StreamingRegions:
    """Three regions whose rows stream, each with a fixed part; ``bulk`` adds
    `decode_run_seconds` (each iteration of the run priced alone), as plan costs have."""

    stages, streams_rows, stage_fixed_s = 3, True, [2e-4, 1e-4, 3e-4]

    def stage_seconds(self, shape: IterationShape) -> list[float]:
        one = 1e-3 + 2e-4 * shape.rows + 1e-6 * shape.sequence_context_sum
        return [one, 2 * one, 0.5 * one]


class _BulkStreamingRegions(_StreamingRegions):
    def decode_run_seconds(self, first: IterationShape, iterations: int) -> np.ndarray:
        shapes = [first.decode_step(i) for i in range(iterations)]
        return np.array([self.stage_seconds(s) for s in shapes]).T


def test_a_group_streaming_alone_through_regions_runs_in_bulk_as_the_event_loop(monkeypatch):
    """Four requests together, then one every second: their groups' rows stream through
    the regions; in bulk (`steady`: the flow shop's closed form) as one by one."""
    from partitioner.simulate.serving import steady

    committed: list[int] = []
    commit = steady._Run.commit
    monkeypatch.setattr(steady._Run, "commit",
                        lambda run, ends, count: (committed.append(count), commit(run, ends, count)))  # fmt: skip
    arrivals = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0])
    requests = Requests(arrivals, np.full(7, 16), np.array([300, 250, 400, 350, 300, 200, 100]))
    config = ServingConfig(kv_capacity_tokens=100_000)
    bulk = Engine(requests, _BulkStreamingRegions(), config).run()
    event = Engine(requests, _StreamingRegions(), config).run()
    assert sum(committed) > 150  # the four decoding together, before the next arrives
    assert bulk.iterations == event.iterations
    assert bulk.finish_s == pytest.approx(event.finish_s, rel=1e-12)
    assert bulk.first_token_s == pytest.approx(event.first_token_s, rel=1e-12)
    assert [float(b) for b in bulk.stage_busy_s] == pytest.approx(
        [float(b) for b in event.stage_busy_s], rel=1e-12
    )


def test_a_run_through_free_stages_takes_the_flow_shops_closed_form_by_hand():
    """`steady.pipeline_seconds`, worked by hand: stages of 4 s and 2 s (columns are
    iterations). Rows not streaming: 4 + 2 = 6. Four streaming rows: a row crosses in
    1 + 0.5, and the slow stage holds the rest 3 s more: 4.5, as the recurrence gives in
    test_a_flow_shop_of_identical_rows_by_hand. With 1 s of each stage fixed: rows cross
    in 1.75 + 1.25 = 3, the first stage holds 4 - 1.75 more: 5.25."""
    from types import SimpleNamespace

    from partitioner.simulate.serving.steady import pipeline_seconds

    seconds = np.array([[4.0, 8.0], [2.0, 2.0]])
    plain = SimpleNamespace(streams=False, fixed_s=None)
    assert pipeline_seconds(plain, seconds, 4).tolist() == [6.0, 10.0]
    streaming = SimpleNamespace(streams=True, fixed_s=None)
    # second column: rows cross in 2 + 0.5, the first stage holds 8 - 2 = 6 more: 8.5
    assert pipeline_seconds(streaming, seconds, 4).tolist() == [4.5, 8.5]
    assert pipeline_seconds(streaming, seconds, 1).tolist() == [6.0, 10.0]  # one row: the sum
    fixed = SimpleNamespace(streams=True, fixed_s=np.array([1.0, 1.0]))
    assert pipeline_seconds(fixed, seconds[:, :1], 4).tolist() == [5.25]


def test_a_whole_batch_through_free_and_busy_stages_by_hand():
    from partitioner.simulate.serving.streaming import batch_finish

    # stages free at 0, 5 and 0; 1 s each; from 2: [2, 3], then stage 1 busy until 5:
    # [5, 6], then [6, 7]
    free = np.array([0.0, 5.0, 0.0])
    batch_finish(free, np.cumsum([1.0, 1.0, 1.0]), 2.0, np.zeros(3))
    assert free.tolist() == [3.0, 6.0, 7.0]
