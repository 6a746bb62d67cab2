"""Host work on every later pipeline stage (`ServingConfig.stage_overhead_s`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from partitioner.errors import UsageError
from partitioner.simulate.serving import IterationShape, Requests, ServingConfig
from partitioner.simulate.serving.engine import Engine
from partitioner.simulate.serving.stage_host import with_stage_host
from tests.partitioner.serving.costs import BulkEveryFieldCost, EveryFieldCost, LinearCost

HOST_S = 4e-4


def requests(*rows: tuple[float, int, int]) -> Requests:
    arrival, prompt, output = zip(*rows, strict=True)
    return Requests(np.array(arrival), np.array(prompt), np.array(output))


def test_stage_host_work_holds_every_later_stage_by_hand():
    # two 1 s stages; stage 1's rank spends 0.5 s of host work an iteration, so stage 1
    # takes 1.5 s. A: stage 0 [0, 1], stage 1 [1, 2.5]; B: [1, 2], then waits for stage 1:
    # [2.5, 4]; A again: [2.5, 3.5], [4, 5.5]; B: [4, 5], [5.5, 7]; A: [5.5, 6.5], [7, 8.5];
    # B: [7, 8], [8.5, 10]
    config = ServingConfig(kv_capacity_tokens=1024, max_num_batched_tokens=4, stage_overhead_s=0.5)
    rec = Engine(requests((0.0, 4, 3), (0.0, 4, 3)), LinearCost(stages=2, base_s=1.0), config).run()
    assert rec.first_token_s == [2.5, 4.0]
    assert rec.finish_s == [8.5, 10.0]
    assert rec.stage_busy_s == [6.0, 9.0]  # the rank is busy with it: six iterations of 1.5


@dataclass(frozen=True)
class _Shifted(EveryFieldCost):
    """`EveryFieldCost` whose later stages take ``HOST_S`` more: what the wrapper should be."""

    def stage_seconds(self, shape: IterationShape) -> tuple[float, ...]:
        seconds = super().stage_seconds(shape)
        return tuple(s + (HOST_S if k else 0.0) for k, s in enumerate(seconds))


@pytest.mark.parametrize("stages", [2, 3])
def test_runs_priced_in_bulk_see_the_same_host_work_as_the_event_loop(stages):
    """The steady loop's runs (`decode_run_seconds`) and the event loop's iterations both
    carry it: a bulk-pricing cost with the config's stage work serves as a cost that holds
    the same seconds in its own stage prices."""
    rng = np.random.default_rng(3)
    count = 120
    reqs = Requests(np.cumsum(rng.exponential(0.004, count)), rng.integers(4, 40, count),
                    rng.integers(2, 60, count))  # fmt: skip
    config = ServingConfig(kv_capacity_tokens=4096, max_num_batched_tokens=64)
    hosted = ServingConfig(kv_capacity_tokens=4096, max_num_batched_tokens=64,
                           stage_overhead_s=HOST_S)  # fmt: skip
    rec = Engine(reqs, BulkEveryFieldCost(stages), hosted).run()
    ref = Engine(reqs, _Shifted(stages), config).run()
    assert rec.first_token_s == pytest.approx(ref.first_token_s, rel=1e-12)
    assert rec.finish_s == pytest.approx(ref.finish_s, rel=1e-12)
    assert rec.stage_busy_s == pytest.approx(ref.stage_busy_s, rel=1e-12)
    plain = Engine(reqs, BulkEveryFieldCost(stages), config).run()
    assert sum(plain.finish_s) < sum(rec.finish_s)  # it costs something


def test_one_stage_and_no_work_leave_the_cost_alone():
    cost = LinearCost(stages=1)
    assert with_stage_host(cost, HOST_S) is cost
    two = LinearCost(stages=2)
    assert with_stage_host(two, 0.0) is two


def test_a_wafers_streaming_regions_refuse_it():
    @dataclass
    class Streaming(LinearCost):
        streams_rows: bool = True

    with pytest.raises(UsageError, match="wafer's regions run no host code"):
        with_stage_host(Streaming(stages=3), HOST_S)


@pytest.mark.parametrize("overhead", [-1e-3, 2.0, float("nan"), True, "1ms"])
def test_a_bad_stage_overhead_is_refused(overhead):
    with pytest.raises(UsageError, match="stage_overhead_s"):
        ServingConfig(kv_capacity_tokens=160, stage_overhead_s=overhead)
