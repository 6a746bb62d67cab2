"""`partition simulate` on tensor-parallel plans: collectives, per-GPU links, the breakdown, PNGs."""

from __future__ import annotations

import dataclasses
import json

import pytest

from examples import llama
from partitioner.plan import Plan
from partitioner.planning import GpuOptions, plan_pipeline
from partitioner.planning.gpu.breakdown import breakdown_lines as planner_breakdown_lines
from partitioner.simulate import breakdown_lines, simulate_plan
from partitioner.simulate.breakdown import bottleneck_cell, bottleneck_words
from partitioner.units import per_million_tokens
from passes.load import load
from targets import collective_bytes_sent
from tests.cli import run_cli
from tests.partitioner.gpu_targets import toy_target

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_decode(tmp_path_factory):
    path = llama.build(tmp_path_factory.mktemp("decode") / "d.onnx", "tiny", kind="decode")
    return load(path, {"batch": 1, "past": 15})


def write_plan(graph, tmp_path, name: str, **options) -> tuple[Plan, str]:
    target = toy_target([4_000_000] * 4, gpus_per_node=4)
    plan = plan_pipeline(graph, target, GpuOptions(solver="dp", **options)).plan
    path = tmp_path / f"{name}.plan.json"
    path.write_text(plan.to_json())
    return plan, str(path)


def test_each_gpu_sends_its_ring_share_of_every_collective(tiny_decode, tmp_path) -> None:
    plan, _ = write_plan(tiny_decode, tmp_path, "tp2", tp=2, pp=2)
    report = simulate_plan(plan)
    assert [p.devices for p in plan.partitions] == [(0, 1), (2, 3)]
    loads = {g.device: g for g in report.gpu_links if g.link_class == "intra-node"}
    for p in plan.partitions:
        mine = [c for c in plan.collectives if c.partition == p.id]
        if not mine:
            continue  # a stage of no sharded layer makes no call
        # each of the two GPUs sends Σ collective_bytes_sent over its group, for Σ time_s
        sent = sum(collective_bytes_sent(c.kind, c.bytes, 2) for c in mine)
        for device in p.devices:
            assert loads[device].collective_bytes == round(sent)
            assert loads[device].collectives == len(mine)
            assert loads[device].collective_busy_s == pytest.approx(sum(c.time_s for c in mine))
    (intra,) = [c for c in report.link_classes if c.link_class == "intra-node"]
    assert intra.collectives == len(plan.collectives)
    assert any(c.partition == plan.partitions[1].id for c in plan.collectives)


def test_the_table_shows_collectives_links_and_the_breakdown(tiny_decode, tmp_path) -> None:
    plan, path = write_plan(tiny_decode, tmp_path, "tp2", tp=2, pp=2)
    result = run_cli("simulate", path)
    assert result.code == 0, result.err
    assert "toy: 2 stages, tensor-parallel 2, blocking transfers" in result.out
    assert "collectives" in result.out and "0,1" in result.out
    assert "link load per GPU" in result.out and "link (intra-node)" in result.out
    assert "per class: intra-node (link)" in result.out
    for line in breakdown_lines(plan.estimate.extra["time_breakdown"]):
        assert line in result.out
    assert "where the step goes:" in result.out
    assert "matches the plan's estimate" in result.out


def test_json_has_the_gpu_links_and_the_breakdown(tiny_decode, tmp_path) -> None:
    plan, path = write_plan(tiny_decode, tmp_path, "tp2", tp=2, pp=2)
    doc = json.loads(run_cli("simulate", path, "--json").out)
    assert doc["time_breakdown"] == json.loads(plan.to_json())["estimate"]["time_breakdown"]
    report = doc["report"]
    # the second stage's GPUs run its collectives, so both appear
    assert {2, 3} <= {g["device"] for g in report["gpu_links"]}
    assert sum(c["collectives"] for c in report["link_classes"]) == len(plan.collectives)
    assert [s["devices"] for s in report["stages"]] == [[0, 1], [2, 3]]


@pytest.mark.parametrize(("name", "options"), [("tp", {"tp": 4, "pp": 1}), ("pp", {"tp": 1})])
def test_the_png_renders_for_tp_and_pp_plans(tiny_decode, tmp_path, name, options) -> None:
    _, path = write_plan(tiny_decode, tmp_path, name, **options)
    out = tmp_path / f"{name}.png"
    result = run_cli("simulate", path, "--png", str(out))
    assert result.code == 0, result.err
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_breakdown_lines_by_hand() -> None:
    breakdown = {
        "stages": [{"stage": 0, "link": "NVLink4"}, {"stage": 1, "link": ""}],
        "step": {"compute_bound_s": 0.0, "memory_bound_s": 2e-3, "launch_s": 6.5e-3},
        "shares": {"compute_bound_s": 0.0, "memory_bound_s": 0.2, "launch_s": 0.65},
        "dominant": "kernel launches: 65% of the step",
    }
    breakdown["step"]["collective_latency_s"] = 1.5e-3
    breakdown["shares"]["collective_latency_s"] = 0.15
    # buckets with time, in the planner's order; 0.2 -> 20%, 0.65 -> 65%, 0.15 -> 15%;
    # compute has no seconds, so it is left out; the link is stage 0's
    assert breakdown_lines(breakdown) == [
        "where the step goes: HBM traffic (memory-bound ops) 20%, kernel launches 65%, "
        "NVLink4 collective latency 15%",
        "largest share: kernel launches: 65% of the step",
    ]


def test_breakdown_lines_match_the_planners(tiny_decode) -> None:
    target = toy_target([4_000_000] * 4, gpus_per_node=4)
    plan = plan_pipeline(tiny_decode, target, GpuOptions(solver="dp", tp=2, pp=2)).plan
    breakdown = plan.estimate.extra["time_breakdown"]
    assert breakdown_lines(breakdown) == planner_breakdown_lines(breakdown)


def test_bottleneck_words_say_what_the_stage_spends_its_time_on() -> None:
    breakdown = {
        "stages": [
            {"stage": 0, "link": "NVLink4", "memory_bound_s": 1e-3, "collective_latency_s": 3e-3},
            {"stage": 1, "link": "", "compute_bound_s": 2e-3, "transfer_s": 2e-3},
        ],
    }
    # stage 0: 3 of its 4 ms are collective latency; stage 1 ties, the earlier bucket wins
    assert bottleneck_words("compute", "stage 0", breakdown) == (
        "stage 0, NVLink4 collective latency 75% of its time"
    )
    assert bottleneck_words("compute", "stage 1", breakdown) == (
        "stage 1, compute (FLOP-bound ops) 50% of its time"
    )
    # a transfer bottleneck, a stage the breakdown lacks, or no breakdown: the plain words
    assert bottleneck_words("transfer", "stage 0 transfers", breakdown) == (
        "transfer (stage 0 transfers)"
    )
    assert bottleneck_words("compute", "stage 5", breakdown) == "compute (stage 5)"
    assert bottleneck_words("compute", "stage 0", None) == "compute (stage 0)"
    # compare's cell: the resource first, then where
    assert bottleneck_cell("compute", "stage 0", breakdown) == "NVLink4 collective latency, stage 0"
    assert bottleneck_cell("compute", "region 12 on wafer 0", None) == (
        "compute, region 12 on wafer 0"
    )


def test_prices_read_per_million_tokens() -> None:
    assert per_million_tokens(1.152e-05 * 1e6) == "$11.5 per million tokens"


def test_in_turn_breakdown_names_both_terms_of_every_op() -> None:
    breakdown = {
        "stages": [{"stage": 0, "link": ""}],
        "step": {"compute_bound_s": 3e-3, "memory_bound_s": 1e-3},
        "shares": {"compute_bound_s": 0.75, "memory_bound_s": 0.25},
        "in_turn": True,
    }
    # a CPU thread pays every op's FLOPs and bytes in turn: neither bucket is "bound" ops
    assert breakdown_lines(breakdown) == [
        "where the step goes: compute (every op's FLOPs) 75%, "
        "memory traffic (every op's bytes, in turn with compute) 25%"
    ]


def test_a_device_computing_in_turn_records_it_in_the_breakdown(tiny_decode) -> None:
    base = toy_target([4_000_000] * 2, gpus_per_node=2)
    devices = tuple(dataclasses.replace(d, compute_memory_overlap=False) for d in base.devices)
    target = dataclasses.replace(base, devices=devices)
    plan = plan_pipeline(tiny_decode, target, GpuOptions(solver="dp", tp=1, pp=2)).plan
    breakdown = plan.estimate.extra["time_breakdown"]
    assert breakdown["in_turn"] is True
    step = breakdown["step"]  # both terms of every op, so neither bucket is empty
    assert step["compute_bound_s"] > 0 and step["memory_bound_s"] > 0
    assert "HBM" not in " ".join(breakdown_lines(breakdown))
    overlapping = plan_pipeline(tiny_decode, base, GpuOptions(solver="dp", tp=1, pp=2)).plan
    assert "in_turn" not in overlapping.estimate.extra["time_breakdown"]


@pytest.mark.parametrize(
    "breakdown",
    [None, "x", [], {}, {"step": {"launch_s": "1"}, "shares": {"launch_s": 1}, "dominant": 3}],
)
def test_a_missing_or_mangled_breakdown_prints_nothing(breakdown) -> None:
    assert breakdown_lines(breakdown) == []
