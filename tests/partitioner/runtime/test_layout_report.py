"""The rank layout, the measured figures and the traces, on plans and timings written by hand."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from partitioner.plan import HOST, Partition, Transfer
from partitioner.runtime.layout import RunLayoutError, rank_layout
from partitioner.runtime.report import RankRecord, rank_spans, stage_figures
from partitioner.simulate.schedule import makespan_s
from partitioner.simulate.trace import chrome_trace, predicted_spans
from tests.partitioner.test_simulate_tp import PERIOD_S, two_stage_report


def _partition(
    pid: int, stage: int, devices: tuple[int, ...], compute_s: float = 1e-3
) -> Partition:
    return Partition(pid, stage, devices, (pid,), 0, 0, 0, 0, 1, 0, compute_s)


def _plan(partitions, transfers):
    return SimpleNamespace(partitions=tuple(partitions), transfers=tuple(transfers))


def test_a_tensor_parallel_stage_gets_a_rank_per_device_and_each_receives_whole():
    plan = _plan(
        [_partition(0, 0, (0,)), _partition(1, 1, (1, 2))],
        [Transfer("x", 8, HOST, 0, 0.0), Transfer("h", 64, 0, 1, 0.0),
         Transfer("g", 32, 0, 1, 0.0), Transfer("y", 4, 1, HOST, 0.0)],
    )  # fmt: skip
    layout = rank_layout(plan)
    assert [(r.rank, r.stage, r.group_rank, r.degree, r.device) for r in layout.roles] == [
        (0, 0, 0, 1, 0), (1, 1, 0, 2, 1), (2, 1, 1, 2, 2),
    ]  # fmt: skip
    # host transfers are no routes; rank 0 sends h and g to both ranks, tags count per pair
    assert [(r.tensor, r.src_rank, r.dst_rank, r.tag) for r in layout.routes] == [
        ("h", 0, 1, 0), ("h", 0, 2, 0), ("g", 0, 1, 1), ("g", 0, 2, 1),
    ]  # fmt: skip
    assert layout.describe(2) == "rank 2 (stage 1, tensor-parallel rank 1 of 2)"


def test_partitions_of_one_stage_share_a_rank_and_pass_values_locally():
    # a wafer stage: regions 0 and 1 on wafer 0, region 2 on wafer 1
    plan = _plan(
        [_partition(0, 0, (0,)), _partition(1, 0, (0,)), _partition(2, 1, (1,))],
        [Transfer("a", 8, 0, 1, 0.0), Transfer("b", 8, 1, 2, 0.0), Transfer("c", 8, 0, 2, 0.0)],
    )
    layout = rank_layout(plan)
    assert [r.partitions for r in layout.roles] == [(0, 1), (2,)]
    assert [(r.tensor, r.src_rank, r.dst_rank) for r in layout.routes] == [("b", 0, 1), ("c", 0, 1)]


def test_a_transfer_back_to_an_earlier_stage_is_refused():
    plan = _plan([_partition(0, 0, (0,)), _partition(1, 1, (1,))], [Transfer("a", 8, 1, 0, 0.0)])
    with pytest.raises(RunLayoutError, match="from stage 1 back to stage 0"):
        rank_layout(plan)


def test_too_many_ranks_is_refused():
    plan = _plan([_partition(i, i, (i,)) for i in range(5)], [])
    with pytest.raises(RunLayoutError, match="needs 5 processes"):
        rank_layout(plan, max_ranks=4)


def _step(mb, recv_post, arrival, compute_start, compute_s, send_wait_s, send_post):
    return {
        "mb": mb, "recv_post": recv_post, "arrivals": [arrival] if arrival is not None else [],
        "compute_start": compute_start, "compute_s": compute_s, "collectives": [],
        "send_wait_s": send_wait_s, "send_post": send_post, "end": send_post,
    }  # fmt: skip


def test_stage_figures_split_the_wait_into_transfer_and_idle_by_hand(monkeypatch):
    """Rank 0 computes [0, 2) ms and posts at 2 ms; rank 1 waits from 0 ms, receives at 2.5 ms:
    its transfer took 0.5 ms (from the post), and it idled 2 ms before it."""
    plan = _plan([_partition(0, 0, (0,), 1e-3), _partition(1, 1, (1,), 2e-3)],
                 [Transfer("h", 8, 0, 1, 1e-4)])  # fmt: skip
    layout = rank_layout(plan)
    monkeypatch.setattr(
        "partitioner.runtime.report._stage_estimates",
        lambda plan, layout, report: {0: dict.fromkeys(("compute_s", "collective_s", "recv_s", "send_s"), 1e-3),
                              1: dict.fromkeys(("compute_s", "collective_s", "recv_s", "send_s"), 0.0)},
    )  # fmt: skip
    records = [
        RankRecord(0, [(0.0, 0.005)], [_step(0, 0.0, None, 0.0, 0.002, 0.0001, 0.002)]),
        RankRecord(1, [(0.0, 0.005)], [_step(0, 0.0, 0.0025, 0.0025, 0.001, 0.0, 0.0035)]),
    ]
    first, second = stage_figures(plan, layout, records)
    assert (first.compute_s, first.send_s, first.recv_s, first.idle_s) == (0.002, 0.0001, 0.0, 0.0)
    assert second.recv_s == pytest.approx(0.0005) and second.idle_s == pytest.approx(0.002)
    assert first.ratio("compute_s") == pytest.approx(2.0)
    assert first.ratio("busy") == pytest.approx(0.0021 / 0.004)
    assert second.ratio("compute_s") is None  # no estimate to compare with
    spans = rank_spans(layout, records)
    assert {(s.track, s.category) for s in spans} == {
        (0, "compute"),
        (0, "send"),
        (1, "recv"),
        (1, "compute"),
    }


def test_makespan_of_the_simulated_schedule_by_hand():
    """two_stage_report: stage 0 turns 115 µs, stage 1 starts 110 µs in and turns 77 µs.
    One item ends at 110 + 77 = 187 µs; each more item enters one period (115 µs) later."""
    stages = two_stage_report().stages
    assert makespan_s(stages, PERIOD_S, 1) == pytest.approx(187e-6)
    assert makespan_s(stages, PERIOD_S, 4) == pytest.approx(187e-6 + 3 * 115e-6)
    assert makespan_s(stages, PERIOD_S, 0) == 0.0


def test_the_predicted_trace_is_chrome_trace_json():
    report = two_stage_report()
    doc = chrome_trace(predicted_spans(report, 2), {"tool": "test"})
    text = json.dumps(doc)
    events = json.loads(text)["traceEvents"]
    names = [e["args"]["name"] for e in events if e["name"] == "process_name"]
    assert names == ["stage 0 (predicted)", "stage 1 (predicted)"]
    spans = [e for e in events if e["ph"] == "X"]
    assert len(spans) == 2 * 7  # 3 phases on stage 0, 4 on stage 1, per item
    first = min(spans, key=lambda e: (e["pid"], e["ts"]))
    assert (first["cat"], first["ts"], first["dur"]) == ("compute", 0.0, 100.0)  # µs
    assert doc["displayTimeUnit"] == "ms" and doc["otherData"] == {"tool": "test"}
