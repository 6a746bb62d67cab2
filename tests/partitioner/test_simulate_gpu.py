"""The GPU simulator: hand-worked stage and link figures, and plans it reproduces exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from onnx import helper

from partitioner.plan import HOST, Bottleneck, Partition, Plan, Transfer
from partitioner.planning import GpuOptions, plan_pipeline
from partitioner.simulate import estimate_differences, simulate_gpu, simulate_plan
from passes.load import load
from targets import GpuTarget, Link
from tests.modelgen import init, make_model, random_dag, save, vi
from tests.partitioner.gpu_targets import toy_gpu, toy_target


def stage(pid: int, device: int, compute_s: float) -> Partition:
    return Partition(pid, pid, (device,), (pid,), 0, 0, 0, 0, 1, 0, compute_s)


def test_stage_times_and_link_classes_by_hand() -> None:
    # toy target, 2 GPUs per node: 0 -> 1 inside node 0 (link), 1 -> 2 across nodes (net)
    target = toy_target([1_000] * 4)
    parts = [stage(0, 0, 1.0), stage(1, 1, 2.0), stage(2, 2, 1.5)]
    transfers = [
        Transfer("x", 10, HOST, 0, 0.3),
        Transfer("a", 100, 0, 1, 0.2),
        Transfer("b", 200, 1, 2, 0.4),
        Transfer("c", 50, 1, 2, 0.1),
        Transfer("y", 5, 2, HOST, 0.05),
    ]
    report = simulate_gpu(parts, transfers, target, overlap_transfers=False)
    # send 0.2, 0.5, 0; host 0.3 (input of stage 0), 0, 0.05 (output of stage 2)
    # recv 0, 0.2, 0.5; periods 0+1+0.2+0.3 = 1.5, 0.2+2+0.5 = 2.7, 0.5+1.5+0+0.05 = 2.05
    assert [(s.recv_s, s.send_s, s.host_s) for s in report.stages] == [
        (0.0, 0.2, 0.3),
        (0.2, 0.5, 0.0),
        (0.5, 0.0, 0.05),
    ]
    assert [s.period_s for s in report.stages] == pytest.approx([1.5, 2.7, 2.05])
    assert report.period_s == pytest.approx(2.7)
    # latency: 4.5 compute + 0.7 send + 0.35 host = 5.55
    assert report.latency_s == pytest.approx(5.55)
    assert report.bottleneck == Bottleneck("compute", "stage 1")
    links = {(link.src_device, link.dst_device): link for link in report.links}
    assert links[1, 2].link_class == "inter-node" and links[1, 2].link_name == "net"
    assert (links[1, 2].bytes, links[1, 2].transfers) == (250, 2)
    assert links[1, 2].busy_s == pytest.approx(0.5)
    assert links[1, 2].utilisation == pytest.approx(0.5 / 2.7)
    assert links[0, 1].link_class == "intra-node"
    assert links[HOST, 0].link_class == links[2, HOST].link_class == "host"
    assert [link.src_device for link in report.links][:2] == [1, HOST]  # busiest first
    classes = {c.link_class: (c.bytes, c.transfers) for c in report.link_classes}
    assert classes == {"intra-node": (100, 1), "inter-node": (250, 2), "host": (15, 2)}
    # no collectives; the busiest GPU per class: GPU 0 sends 0.2 s over NVLink, GPU 1 0.5 s
    # over the network, GPU 0's host link 0.3 s (GPU 2's 0.05 s): 0.2, 0.5, 0.3 of 2.7 s
    assert [c.collectives for c in report.link_classes] == [0, 0, 0]
    assert [c.utilisation for c in report.link_classes] == pytest.approx(
        [0.2 / 2.7, 0.5 / 2.7, 0.3 / 2.7]
    )
    gpus = {(g.device, g.link_class): (g.bytes, g.transfers) for g in report.gpu_links}
    assert gpus == {
        (0, "intra-node"): (100, 1),
        (0, "host"): (10, 1),
        (1, "inter-node"): (250, 2),
        (2, "host"): (5, 1),
    }


@pytest.fixture(scope="module")
def dag(tmp_path_factory):
    rng = np.random.default_rng(3)
    model = random_dag(lambda lo, hi: int(rng.integers(lo, hi + 1)), 40)
    return load(save(model, tmp_path_factory.mktemp("dag") / "dag.onnx"))


@pytest.mark.parametrize("overlap", [False, True])
def test_simulating_a_planned_pipeline_reproduces_its_estimate(dag, overlap) -> None:
    target = toy_target([50_000] * 4)
    outcome = plan_pipeline(dag, target, GpuOptions(solver="dp", overlap_transfers=overlap))
    plan = Plan.from_json(outcome.plan.to_json())
    report = simulate_plan(plan)
    assert report.latency_s == plan.estimate.latency_s
    assert report.throughput_per_s == plan.estimate.throughput_per_s
    assert report.bottleneck == plan.estimate.bottleneck
    assert report.period_s == plan.estimate.extra["period_s"]
    assert [s.period_s for s in report.stages] == plan.estimate.extra["stage_period_s"]
    assert estimate_differences(report, plan) == []
    assert report.overlap_transfers is overlap


def test_a_changed_plan_is_reported_as_different(dag) -> None:
    plan = plan_pipeline(dag, toy_target([50_000] * 4), GpuOptions(solver="dp")).plan
    slower = dataclasses.replace(
        plan,
        partitions=tuple(
            dataclasses.replace(p, compute_s=p.compute_s * 2) for p in plan.partitions
        ),
    )
    differences = estimate_differences(simulate_plan(slower), plan)
    assert differences and differences[0].startswith("latency")


def test_decode_step_figures_match_the_plan(tmp_path) -> None:
    # batch 2; a KV-cache input past_kv that stays on its stage
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("Add", ["h", "past_kv"], ["present_kv"], name="add"),
        helper.make_node("MatMul", ["present_kv", "w2"], ["y"], name="mm2"),
    ]
    w = np.full((8, 8), 0.1, np.float32)
    model = make_model(
        nodes,
        [vi("x", [2, 8]), vi("past_kv", [2, 8])],
        [vi("y", [2, 8]), vi("present_kv", [2, 8])],
        [init("w1", w), init("w2", w)],
    )
    graph = load(save(model, tmp_path / "decode.onnx"))
    priced = dataclasses.replace(toy_gpu(50_000), usd_per_hour=3.6)
    target = GpuTarget(
        "priced",
        (priced, priced),
        2,
        Link("l", 1e9, 1.0, 1e-6),
        Link("n", 1e8, 1.0, 1e-5),
        Link("h", 1e9, 1.0, 1e-6),
    )
    plan = plan_pipeline(graph, target, GpuOptions(solver="dp")).plan
    extra = plan.estimate.extra
    assert extra["llm_decode_step"] and extra["batch"] == 2
    report = simulate_plan(plan)
    for key in ("batch", "s_per_token", "tokens_per_s", "tokens_per_s_per_stream", "usd_per_token"):
        assert report.decode[key] == extra[key], key
    # 2 tokens per period; two GPUs at $3.6/h = $0.002/s
    assert report.decode["tokens_per_s"] == pytest.approx(2 / report.period_s)
    assert report.decode["usd_per_token"] == pytest.approx(0.002 / report.decode["tokens_per_s"])
