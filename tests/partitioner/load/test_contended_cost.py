"""A plan's serving cost beside another iteration (`PlanIterationCost.contended`): the
same plan priced with each device's bandwidth while every device of its node streams."""

from __future__ import annotations

import dataclasses
import json

import pytest

from examples import llama
from partitioner.planning import GpuOptions, plan_pipeline
from partitioner.simulate.serving import IterationShape
from partitioner.simulate.serving_cost import iteration_cost
from passes.load import load
from targets import get_preset
from tests.cli import run_cli

SHAPES = (IterationShape(4, 4, 404, 404, 101), IterationShape(1, 1, 40, 40, 40))


@pytest.fixture(scope="module")
def decode(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama") / "tiny-decode.onnx"
    llama.build(path, "tiny", kind="decode")
    return load(path, {"batch": 1, "past": 4095})


def _devices(target, **fields):
    return dataclasses.replace(
        target, devices=tuple(dataclasses.replace(d, **fields) for d in target.devices)
    )


def test_the_contended_cost_is_the_plan_on_the_bandwidth_beside_the_others(decode):
    preset = get_preset("h100x4")
    alone_bw = preset.devices[0].hbm_bandwidth_bytes_per_s
    shared = _devices(preset, contended_bandwidth_bytes_per_s=alone_bw / 3)
    plan = plan_pipeline(decode, shared, GpuOptions(tp=1, pp=2, time_limit_s=5)).plan
    cost = iteration_cost(plan, shared)
    by_hand = iteration_cost(plan, _devices(preset, hbm_bandwidth_bytes_per_s=alone_bw / 3))
    assert cost.contended is not None and cost.contended.contended is None
    for shape in SHAPES:
        alone, beside = cost.stage_seconds(shape), cost.contended.stage_seconds(shape)
        assert list(beside) == pytest.approx(list(by_hand.stage_seconds(shape)), rel=1e-12)
        assert all(b > a for a, b in zip(alone, beside, strict=True))  # bytes cost more


def test_devices_with_memory_of_their_own_have_no_contended_cost(decode):
    preset = get_preset("h100x4")
    plan = plan_pipeline(decode, preset, GpuOptions(tp=1, pp=2, time_limit_s=5)).plan
    assert iteration_cost(plan, preset).contended is None


def test_simulate_counts_and_names_the_iterations_it_priced_beside_another(tmp_path):
    """A target file whose devices share memory (as `partition calibrate --ranks 2` writes
    it): two requests at once on two stages take turns, each formed beside the other."""
    import yaml

    spec = get_preset("h100x2").to_dict()
    for device in spec["devices"]:
        device["contended_bandwidth_bytes_per_s"] = device["hbm_bandwidth_bytes_per_s"] / 2
    target = tmp_path / "shared.yaml"
    target.write_text(yaml.safe_dump(spec))
    model, plan = tmp_path / "tiny-decode.onnx", tmp_path / "plan.json"
    llama.build(model, "tiny", kind="decode")
    made = run_cli(str(model), "--target", str(target), "--tp", "1", "--pp", "2", "--dim",
                   "batch=1", "--dim", "past=4095", "-o", str(plan), "-q")  # fmt: skip
    assert made.code == 0, made.err
    shown = run_cli(str(model), "--target", str(target), "--tp", "1", "--pp", "2", "--dim",
                    "batch=1", "--dim", "past=4095", "-o", str(tmp_path / "again.json"))  # fmt: skip
    assert "share one memory system" in shown.out  # the plan's throughput prices stages alone
    assert "with every stage streaming at once the period is" in shown.out
    # one prompt an iteration (the budget), so the second is formed beside the first
    flags = ("--rate", "inf", "--requests", "2", "--prompt-len", "8", "--output-len", "5",
             "--token-budget", "8")  # fmt: skip
    result = run_cli("simulate", str(plan), "--json", *flags)
    serving = json.loads(result.out)["serving"]
    assert 0 < serving["iterations_beside_another"] < serving["iterations"]
    text = run_cli("simulate", str(plan), *flags).out
    assert "iterations beside another" in text


def test_the_period_side_by_side_by_hand():
    from partitioner.commands.summaries import side_by_side_period_s

    # periods 5 and 3 s; the load model's steps 4 and 1 s alone, 6 and 4 s side by side:
    # 5 + 2 = 7 and 3 + 3 = 6, so 7
    assert side_by_side_period_s([5.0, 3.0], [4.0, 1.0], [6.0, 4.0]) == 7.0
