"""Pipeline latency, throughput and bottleneck, worked by hand."""

from __future__ import annotations

import json
import math

import pytest

from targets import StageBottleneck, pipeline_estimate

# Three stages; stage 0 receives its input from the host in 0.3 s.
COMPUTE = [1.0, 2.0, 1.5]
SEND = [0.2, 0.5, 0.1]  # to stage 1, to stage 2, to the host
INPUT = 0.3
# so each stage receives for [0.3, 0.2, 0.5]


def test_latency_is_the_sum_along_the_chain() -> None:
    # 0.3 + (1.0 + 2.0 + 1.5) + (0.2 + 0.5 + 0.1) = 5.6, with or without overlap
    for overlap in (False, True):
        estimate = pipeline_estimate(COMPUTE, SEND, overlap, input_s=INPUT)
        assert estimate.latency_s == pytest.approx(5.6)


def test_without_overlap_a_stage_receives_computes_and_sends_in_turn() -> None:
    estimate = pipeline_estimate(COMPUTE, SEND, False, input_s=INPUT)
    # periods: 0.3+1.0+0.2 = 1.5, 0.2+2.0+0.5 = 2.7, 0.5+1.5+0.1 = 2.1
    assert estimate.stage_period_s == pytest.approx((1.5, 2.7, 2.1))
    assert estimate.period_s == pytest.approx(2.7)
    assert estimate.throughput_per_s == pytest.approx(1 / 2.7)
    # stage 1 computes 2.0 s against 0.7 s of transfers
    assert estimate.bottleneck == StageBottleneck("compute", 1, pytest.approx(2.7))


def test_with_overlap_the_slowest_step_sets_the_pace() -> None:
    estimate = pipeline_estimate(COMPUTE, SEND, True, input_s=INPUT)
    # periods: max(0.3, 1.0, 0.2) = 1.0, max(0.2, 2.0, 0.5) = 2.0, max(0.5, 1.5, 0.1) = 1.5
    assert estimate.stage_period_s == pytest.approx((1.0, 2.0, 1.5))
    assert estimate.throughput_per_s == pytest.approx(0.5)
    assert estimate.bottleneck == StageBottleneck("compute", 1, 2.0)


def test_transfer_bottleneck() -> None:
    # stage 0 computes 1 s and sends 3 s; stage 1 receives 3 s and computes 1 s
    blocking = pipeline_estimate([1.0, 1.0], [3.0, 0.0], False)
    # periods: 0+1+3 = 4 and 3+1+0 = 4; the tie goes to stage 0, whose transfers dominate
    assert blocking.stage_period_s == (4.0, 4.0)
    assert blocking.bottleneck == StageBottleneck("transfer", 0, 4.0)
    assert blocking.throughput_per_s == pytest.approx(0.25)
    overlapped = pipeline_estimate([1.0, 1.0], [3.0, 0.0], True)
    # the 3 s send of stage 0 is the slowest step
    assert overlapped.bottleneck == StageBottleneck("transfer", 0, 3.0)
    assert overlapped.throughput_per_s == pytest.approx(1 / 3)


def test_host_input_bottleneck_is_reported_as_stage_minus_one() -> None:
    estimate = pipeline_estimate([1.0], [0.0], True, input_s=2.0)
    assert estimate.bottleneck == StageBottleneck("transfer", -1, 2.0)
    assert estimate.latency_s == pytest.approx(3.0)


def test_busiest_shared_link_can_bound_throughput() -> None:
    # stages need 1 s each, but link 1 is busy 1.5 s per item
    estimate = pipeline_estimate([1.0, 1.0], [0.1, 0.0], True, link_busy_s=[0.5, 1.5])
    assert estimate.bottleneck == StageBottleneck("link", 1, 1.5)
    assert estimate.throughput_per_s == pytest.approx(1 / 1.5)
    # a link below the slowest stage changes nothing
    calm = pipeline_estimate([1.0, 1.0], [0.1, 0.0], True, link_busy_s=[0.5])
    assert calm.bottleneck == StageBottleneck("compute", 0, 1.0)


def test_ties_go_to_the_earliest_stage_and_to_compute() -> None:
    assert pipeline_estimate([1.0, 1.0], [0.0, 0.0], True).bottleneck.index == 0
    # compute 1.0 and a 1.0 s send tie: compute wins
    assert pipeline_estimate([1.0, 0.5], [1.0, 0.0], True).bottleneck.kind == "compute"


def test_zero_period_gives_infinite_throughput_written_as_null() -> None:
    estimate = pipeline_estimate([0.0], [0.0], False)
    assert math.isinf(estimate.throughput_per_s)
    as_json = json.loads(json.dumps(estimate.to_dict(), allow_nan=False))
    assert as_json["throughput_per_s"] is None
    assert as_json["bottleneck"] == {"kind": "compute", "index": 0, "time_s": 0.0}


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="one send and host time per stage"):
        pipeline_estimate([1.0, 1.0], [1.0], False)
    with pytest.raises(ValueError, match="at least one stage"):
        pipeline_estimate([], [], False)
    with pytest.raises(ValueError, match=r"stage_compute_s\[1\]"):
        pipeline_estimate([1.0, -1.0], [0.0, 0.0], False)
    with pytest.raises(ValueError, match="input_s"):
        pipeline_estimate([1.0], [0.0], False, input_s=math.nan)


def test_host_io_adds_to_period_and_latency() -> None:
    # stage host I/O [0.4, 0, 0.0]: no overlap -> periods 1.5+0.4 = 1.9, 2.7, 2.1
    estimate = pipeline_estimate(COMPUTE, SEND, False, input_s=INPUT, stage_host_s=[0.4, 0.0, 0.0])
    assert estimate.stage_period_s == pytest.approx((1.9, 2.7, 2.1))
    assert estimate.latency_s == pytest.approx(5.6 + 0.4)


def test_host_io_bottleneck() -> None:
    # one stage: compute 1, host 3 -> blocking period 4, host-bound; overlapped period 3
    blocking = pipeline_estimate([1.0], [0.0], False, stage_host_s=[3.0])
    assert blocking.bottleneck == StageBottleneck("host", 0, 4.0)
    overlapped = pipeline_estimate([1.0], [0.0], True, stage_host_s=[3.0])
    assert overlapped.bottleneck == StageBottleneck("host", 0, 3.0)
    assert overlapped.throughput_per_s == pytest.approx(1 / 3)
