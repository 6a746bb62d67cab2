"""The one report protocol both simulators satisfy, and the decode figures they share."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from partitioner.plan import Bottleneck, Estimate, Partition, Transfer
from partitioner.simulate import (
    FabricReport,
    PipelineReport,
    SimulationReport,
    decode_figures,
    simulate_gpu,
    simulate_plan,
    simulate_wafer,
)
from targets import CostModel, GpuTarget, Link
from tests.partitioner.gpu_targets import toy_gpu, toy_target
from tests.partitioner.wafer_plans import hand_plan, part, tiny_target

MEMBERS = {
    "kind",
    "latency_s",
    "throughput_per_s",
    "period_s",
    "bottleneck",
    "decode",
    "with_decode",
    "to_dict",
}


def stage(pid: int, compute_s: float) -> Partition:
    return Partition(pid, pid, (pid,), (pid,), 0, 0, 0, 0, 1, 0, compute_s)


def gpu_report() -> PipelineReport:
    # blocking: stage 0 = 1 + 0.5 send = 1.5 s, stage 1 = 0.5 recv + 2 = 2.5 s -> period 2.5 s,
    # 0.4 items/s; latency 1 + 0.5 + 2 = 3.5 s; stage 1's compute (2 s) beats its 0.5 s recv
    parts = [stage(0, 1.0), stage(1, 2.0)]
    transfers = [Transfer("a", 100, 0, 1, 0.5)]
    return simulate_gpu(parts, transfers, toy_target([1_000] * 2), overlap_transfers=False)


def wafer_report() -> FabricReport:
    # two regions side by side, no traffic: region 0's 2 µs sets the period
    return simulate_wafer(
        [part(0, (0, 0, 4, 4), 2e-6), part(1, (4, 0, 4, 4), 1e-6)], [], tiny_target()
    )


def test_the_protocol_declares_what_consumers_read() -> None:
    declared = {name for name in vars(SimulationReport) if not name.startswith("_")}
    assert declared == MEMBERS


@pytest.mark.parametrize("make", [gpu_report, wafer_report])
def test_both_reports_satisfy_the_protocol(make) -> None:
    report = make()
    assert isinstance(report, SimulationReport)
    for name in MEMBERS:
        assert hasattr(report, name), name
    assert isinstance(report.bottleneck, Bottleneck)
    for figure in (report.latency_s, report.throughput_per_s, report.period_s):
        assert isinstance(figure, float)
    assert report.decode is None
    d = report.to_dict()
    assert d["kind"] == report.kind
    assert d["bottleneck"] == {"kind": report.bottleneck.kind, "where": report.bottleneck.where}
    assert list(d)[-1] == "decode" and d["decode"] is None


def test_something_missing_a_member_is_not_a_report() -> None:
    report = gpu_report()
    everything = {name: getattr(report, name) for name in MEMBERS}
    assert isinstance(SimpleNamespace(**everything), SimulationReport)
    del everything["period_s"]
    assert not isinstance(SimpleNamespace(**everything), SimulationReport)


def test_the_shared_figures_by_hand() -> None:
    gpu, wafer = gpu_report(), wafer_report()
    head = ("kind", "latency_s", "throughput_per_s", "period_s", "bottleneck")
    assert [gpu.to_dict()[k] for k in head] == [
        "gpu",
        3.5,
        0.4,
        2.5,
        {"kind": "compute", "where": "stage 1"},
    ]
    assert [wafer.to_dict()[k] for k in head] == [
        "wafer",
        2e-6,
        pytest.approx(5e5),
        2e-6,
        {"kind": "compute", "where": "region 0 on wafer 0"},
    ]


def test_a_zero_period_has_a_null_throughput_in_json() -> None:
    idle = simulate_gpu([stage(0, 0.0)], [], toy_target([1_000]), overlap_transfers=True)
    assert idle.throughput_per_s == float("inf")
    assert idle.to_dict()["throughput_per_s"] is None


@pytest.mark.parametrize("make", [gpu_report, wafer_report])
def test_with_decode_keeps_everything_else(make) -> None:
    report = make()
    decoded = report.with_decode({"batch": 2})
    assert type(decoded) is type(report)
    assert decoded.decode == {"batch": 2} and report.decode is None
    assert decoded.to_dict() == {**report.to_dict(), "decode": {"batch": 2}}


def priced_target(usd_per_hour: float | None) -> GpuTarget:
    gpu = dataclasses.replace(toy_gpu(50_000), usd_per_hour=usd_per_hour)
    link = Link("l", 1e9, 1.0, 1e-6)
    return GpuTarget("priced", (gpu, gpu), 2, link, link, link)


def test_decode_figures_by_hand() -> None:
    cost = CostModel(priced_target(3.6))
    # batch 4, one pass 0.5 s, 2 passes/s with the pipeline full:
    # a stream gets 1 / 0.5 = 2 tokens/s, the plan makes 4 x 2 = 8 tokens/s;
    # two GPUs at $3.6/h = $0.002/s, so 0.002 / 8 = 2.5e-4 $/token
    figures = decode_figures(4, 0.5, 2.0, cost, [0, 1])
    assert figures == {
        "llm_decode_step": True,
        "batch": 4,
        "s_per_token": 0.5,
        "tokens_per_s_per_stream": 2.0,
        "tokens_per_s": 8.0,
        "usd_per_token": pytest.approx(2.5e-4),
    }
    # one GPU's price only: $0.001/s over 8 tokens/s
    assert decode_figures(4, 0.5, 2.0, cost, [0])["usd_per_token"] == pytest.approx(1.25e-4)


def test_decode_figures_without_a_price_or_a_rate() -> None:
    assert "usd_per_token" not in decode_figures(4, 0.5, 2.0, CostModel(priced_target(None)), [0])
    priced = CostModel(priced_target(3.6))
    stalled = decode_figures(4, 0.0, 0.0, priced, [0])
    assert (stalled["tokens_per_s"], stalled["tokens_per_s_per_stream"]) == (0.0, 0.0)
    assert "usd_per_token" not in stalled
    # a zero batch makes no tokens: no price per token either
    empty = decode_figures(0, 0.5, 2.0, priced, [0])
    assert empty["tokens_per_s"] == 0.0 and "usd_per_token" not in empty


@pytest.mark.parametrize(("batch", "decoded"), [(8, True), (0, True), (-1, False), ("8", False)])
def test_simulate_plan_reads_the_decode_batch(batch, decoded) -> None:
    estimate = Estimate(
        1.0, 1.0, Bottleneck("compute", "x"), {"llm_decode_step": True, "batch": batch}
    )
    plan = hand_plan(tiny_target(), [part(0, (0, 0, 4, 4), 2e-6)], [], estimate)
    report = simulate_plan(plan)
    assert (report.decode is not None) is decoded
    if decoded:
        assert report.decode["tokens_per_s"] == pytest.approx(batch * 5e5)  # batch per 2 µs


def test_batches_in_flight_by_hand():
    from partitioner.plan import Partition
    from partitioner.simulate.common import batches_in_flight

    def part(pid, memory, kv, capacity=1_000):
        return Partition(pid, pid, (pid,), (pid,), 0, 0, kv, memory, capacity, 0, 0.0)

    # latency 10 s, throughput 0.35/s: ⌈3.5⌉ = 4 batches keep the pipeline full.
    # stage 0: 1,000 - (400 - 100) = 700 B of room, 100 B of KV a batch: 7 fit;
    # stage 1: 1,000 - (800 - 200) = 400 B of room, 200 B a batch: 2 fit -> 2 held.
    # batch 8 -> per sequence 12.5 B (stage 0), 25 B (stage 1); with 4 in flight
    # stage 1 fits 8 * 400 // (200 * 4) = 4 sequences a batch, stage 0 8 * 700 // 400 = 14
    flight = batches_in_flight([part(0, 400, 100), part(1, 800, 200)], 8, 10.0, 0.35)
    assert (flight.needed, flight.held, flight.max_batch) == (4, 2, 4)
    # no KV cache: nothing caps it
    assert batches_in_flight([part(0, 400, 0)], 8, 10.0, 0.35).held == 4
    # two replicas serve 0.35/s together: each needs ⌈10 * 0.175⌉ = 2
    assert batches_in_flight([part(0, 400, 100)], 8, 10.0, 0.35, replicas=2).needed == 2


def test_decode_tokens_are_capped_by_the_batches_memory_holds():
    from partitioner.simulate.common import InFlight, decode_figures
    from targets.cost import CostModel
    from tests.partitioner.gpu_targets import toy_target

    cost = CostModel(toy_target([1_000] * 2))
    full = decode_figures(8, 10.0, 0.35, cost, [0, 1], InFlight(4, 4, 8))
    capped = decode_figures(8, 10.0, 0.35, cost, [0, 1], InFlight(4, 2, 4))
    assert full["tokens_per_s"] == pytest.approx(8 * 0.35)
    assert capped["tokens_per_s"] == pytest.approx(8 * 2 / 10.0)  # 2 batches a latency
    assert (capped["batches_in_flight"], capped["batches_in_flight_needed"]) == (2, 4)
