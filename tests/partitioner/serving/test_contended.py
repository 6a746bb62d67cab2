"""Stages whose devices share one memory system: an iteration formed while another is in
flight is priced with the cost's ``contended`` seconds (`serving.engine`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from partitioner.simulate.serving import IterationShape, Requests, ServingConfig
from partitioner.simulate.serving.engine import Engine
from partitioner.simulate.serving.stage_host import with_stage_host
from tests.partitioner.serving.costs import LinearCost


@dataclass
class SharedMemoryCost(LinearCost):
    """`LinearCost` alone, and ``contended`` beside another iteration."""

    contended: LinearCost | None = None


def requests(*rows: tuple[float, int, int]) -> Requests:
    arrival, prompt, output = zip(*rows, strict=True)
    return Requests(np.array(arrival), np.array(prompt), np.array(output))


def _cost() -> SharedMemoryCost:
    return SharedMemoryCost(stages=2, base_s=1.0, contended=LinearCost(stages=2, base_s=3.0))


def test_an_iteration_formed_beside_another_is_priced_contended_by_hand():
    # 1 s a stage alone, 3 s beside another iteration. A's prompt, formed alone: stage 0
    # [0, 1], stage 1 [1, 2] (first token at 2). B's, formed at 1 beside A's: [1, 4], [4, 7].
    # A's decode, formed at 4 beside B's: [4, 7], [7, 10]; B's at 7 beside A's: [7, 10],
    # [10, 13]; A's last at 10: [10, 13], [13, 16]; B's last at 13: [13, 16], [16, 19].
    config = ServingConfig(kv_capacity_tokens=1024, max_num_batched_tokens=4)
    rec = Engine(requests((0.0, 4, 3), (0.0, 4, 3)), _cost(), config).run()
    assert rec.first_token_s == [2.0, 7.0]
    assert rec.finish_s == [16.0, 19.0]
    assert rec.stage_busy_s == [16.0, 16.0]  # one iteration alone, five beside another
    assert rec.iterations_beside_another == 5


def test_an_iteration_alone_keeps_the_full_bandwidth():
    # one request: each iteration formed with nothing in flight, 1 s a stage
    config = ServingConfig(kv_capacity_tokens=1024, max_num_batched_tokens=4)
    rec = Engine(requests((0.0, 4, 3)), _cost(), config).run()
    assert rec.first_token_s == [2.0]
    assert rec.finish_s == [6.0]
    assert rec.iterations_beside_another == 0


def test_one_stage_is_never_beside_another():
    cost = SharedMemoryCost(stages=1, base_s=1.0, contended=LinearCost(stages=1, base_s=3.0))
    config = ServingConfig(kv_capacity_tokens=1024, max_num_batched_tokens=4)
    reqs = requests((0.0, 4, 3), (0.5, 4, 3))
    rec = Engine(reqs, cost, config).run()
    plain = Engine(reqs, LinearCost(stages=1, base_s=1.0), config).run()
    assert (rec.first_token_s, rec.finish_s) == (plain.first_token_s, plain.finish_s)
    assert rec.iterations_beside_another is plain.iterations_beside_another is None


def test_later_stages_host_work_holds_them_contended_too():
    shape = IterationShape(1, 1, 1, 1, 1)
    hosted = with_stage_host(_cost(), 0.5)
    assert tuple(hosted.stage_seconds(shape)) == (1.0, 1.5)
    assert tuple(hosted.contended.stage_seconds(shape)) == (3.0, 3.5)
