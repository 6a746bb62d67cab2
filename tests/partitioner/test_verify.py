"""Running plans partition by partition and verifying them against onnxruntime."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from onnx import helper

from examples import llama
from partitioner.executor.graph_run import PlanExecutionError, run_graph, run_plan
from partitioner.executor.verify import make_inputs, verify_plan
from partitioner.plan import Plan
from partitioner.planning import GpuOptions, plan_pipeline
from passes.load import load
from tests.cli import run_cli
from tests.modelgen import init, make_model, save, vi
from tests.partitioner.gpu_targets import toy_target


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    path = llama.build(folder / "tiny.onnx", "tiny", kind="prefill", weights="random")
    graph = load(path, {"batch": 2, "seq": 5})
    plan = plan_pipeline(
        graph, toy_target([400_000] * 3), GpuOptions(time_limit_s=5, command="t")
    ).plan
    plan_path = folder / "tiny.plan.json"
    plan_path.write_text(plan.to_json())
    return path, graph, plan, plan_path


def test_plan_run_equals_whole_graph_run(tiny_llama):
    _, graph, plan, _ = tiny_llama
    assert len(plan.partitions) == 3
    feeds = make_inputs(graph, seed=1)
    whole = run_graph(graph, feeds)
    split = run_plan(graph, plan, feeds)
    for name in graph.outputs:
        np.testing.assert_array_equal(split.outputs[name], whole[name])
    # every partition really held something, and no more than its plan gives it
    for run in split.partitions:
        assert 0 < run.peak_bytes <= run.planned_bytes


def test_verify_matches_onnxruntime(tiny_llama):
    _, graph, plan, _ = tiny_llama
    report = verify_plan(graph, plan, make_inputs(graph, seed=0))
    assert report.ok
    assert all(c.max_rel < 1e-5 for c in report.outputs)


def test_verify_fails_when_a_partition_holds_more_than_its_plan(tiny_llama, tmp_path):
    path, graph, plan, _ = tiny_llama
    starved = dataclasses.replace(plan.partitions[1], memory_bytes=plan.partitions[1].param_bytes)
    edited = dataclasses.replace(
        plan, partitions=(plan.partitions[0], starved, *plan.partitions[2:])
    )
    report = verify_plan(graph, edited, make_inputs(graph, seed=0))
    assert all(c.ok for c in report.outputs)  # the numbers are right; the memory is not
    assert not report.ok and report.over_memory == (1,)


def test_generated_token_ids_stay_inside_the_embedding(tiny_llama):
    _, graph, _, _ = tiny_llama
    feeds = make_inputs(graph, seed=3)
    vocab = llama.CONFIGS["tiny"].vocab_size
    assert feeds["input_ids"].min() >= 0 and feeds["input_ids"].max() < vocab
    assert (feeds["position_ids"][0] == np.arange(5)).all()


def test_missing_transfer_names_tensor_and_both_partitions(tiny_llama):
    _, graph, plan, _ = tiny_llama
    relay = next(t for t in plan.transfers if t.src == 0 and t.dst == 1)
    broken = dataclasses.replace(plan, transfers=tuple(t for t in plan.transfers if t != relay))
    with pytest.raises(
        PlanExecutionError, match=rf"partition 1 needs tensor '{relay.tensor}' from partition 0"
    ):
        run_plan(graph, broken, make_inputs(graph))


def test_cli_verify_ok_and_json(tiny_llama):
    path, _, _, plan_path = tiny_llama
    result = run_cli("verify", str(path), str(plan_path), "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["ok"] and doc["outputs"][0]["name"] == "logits"
    assert len(doc["partitions"]) == 3


def test_cli_verify_missing_transfer_exits_1(tiny_llama, tmp_path):
    path, _, plan, _ = tiny_llama
    relay = next(t for t in plan.transfers if t.src == 0 and t.dst == 1)
    broken = dataclasses.replace(plan, transfers=tuple(t for t in plan.transfers if t != relay))
    bad = tmp_path / "broken.plan.json"
    bad.write_text(broken.to_json())
    result = run_cli("verify", str(path), str(bad))
    assert result.code == 1 and relay.tensor in result.err


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda f: f.pop("position_ids"), "no array named 'position_ids'"),
        (lambda f: f.update(input_ids=f["input_ids"][:, :3]), "has shape [2, 3]"),
        (
            lambda f: f.update(input_ids=f["input_ids"].astype(np.int32)),
            "is int32, the model wants int64",
        ),
        (lambda f: f.update(extra=np.zeros(2)), "'extra' is not a model input"),
    ],
)
def test_cli_verify_bad_npz_exits_2(tiny_llama, tmp_path, mutate, needle):
    path, graph, _, plan_path = tiny_llama
    feeds = make_inputs(graph)
    mutate(feeds)
    npz = tmp_path / "in.npz"
    np.savez(npz, **feeds)
    result = run_cli("verify", str(path), str(plan_path), "--inputs", str(npz))
    assert result.code == 2 and needle in result.err and result.err.count("\n") == 1


def test_cli_verify_plan_for_another_model(tiny_llama, tmp_path):
    _, _, _, plan_path = tiny_llama
    other = llama.build(tmp_path / "other.onnx", "tiny", kind="prefill", weights="random", seed=7)
    result = run_cli("verify", str(other), str(plan_path))
    assert result.code == 2 and "another model" in result.err


def test_cli_verify_needs_weights(tmp_path):
    path = llama.build(tmp_path / "weightless.onnx", "tiny", kind="prefill", weights="none")
    graph = load(path, {"batch": 1, "seq": 4})
    plan = plan_pipeline(graph, toy_target([400_000] * 2), GpuOptions(solver="dp")).plan
    (tmp_path / "p.json").write_text(plan.to_json())
    result = run_cli("verify", str(path), str(tmp_path / "p.json"))
    assert result.code == 2 and "weightless.onnx.data" in result.err


def test_cli_verify_lists_unsupported_ops(tmp_path):
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Fancy", ["h"], ["y"], domain="com.example", name="fancy_node"),
    ]
    model = make_model(
        nodes,
        [vi("x", [2, 4])],
        [vi("y", [2, 4])],
        [init("w", np.eye(4, dtype=np.float32))],
        extra_opsets={"com.example": 1},
    )
    path = save(model, tmp_path / "custom.onnx")
    plan = plan_pipeline(load(path), toy_target([100_000]), GpuOptions(solver="dp")).plan
    (tmp_path / "p.json").write_text(plan.to_json())
    result = run_cli("verify", str(path), str(tmp_path / "p.json"))
    assert result.code == 2 and "com.example::Fancy (node fancy_node)" in result.err


def test_mismatch_names_the_first_divergent_partition(tiny_llama, monkeypatch):
    _, graph, plan, _ = tiny_llama
    import partitioner.executor.interpreter as interpreter

    real_lookup = interpreter.lookup

    def broken_lookup(op_type, domain, opset):
        reg = real_lookup(op_type, domain, opset)
        if op_type != "Sigmoid" or reg is None:
            return reg
        return dataclasses.replace(reg, fn=lambda x: (np.zeros_like(x),))  # a wrong SiLU gate

    monkeypatch.setattr(interpreter, "lookup", broken_lookup)
    report = verify_plan(graph, plan, make_inputs(graph))
    assert not report.ok
    first_sigmoid = min(n.index for n in graph.nodes if n.op_type == "Sigmoid")
    expected = next(p.id for p in plan.partitions if first_sigmoid in p.nodes)
    assert report.first_divergent_partition == expected


def test_plan_round_trip_keeps_verification(tiny_llama):
    _, graph, plan, plan_path = tiny_llama
    again = Plan.from_json(plan_path.read_text())
    assert verify_plan(graph, again, make_inputs(graph)).ok


def test_float16_model_verifies_with_half_precision_tolerances(tmp_path):
    path = llama.build(
        tmp_path / "half.onnx", "tiny", kind="prefill", dtype="float16", weights="random"
    )
    graph = load(path, {"batch": 1, "seq": 5})
    plan = plan_pipeline(graph, toy_target([400_000] * 2), GpuOptions(time_limit_s=3)).plan
    report = verify_plan(graph, plan, make_inputs(graph))
    assert report.ok
    (logits,) = [c for c in report.outputs if c.name == "logits"]
    assert logits.dtype == "float16" and logits.tolerance.rtol == 1e-2


def test_bfloat16_model_is_verified_against_a_float32_copy(tmp_path):
    path = llama.build(
        tmp_path / "bf16.onnx", "tiny", kind="prefill", dtype="bfloat16", weights="random"
    )
    graph = load(path, {"batch": 1, "seq": 5})
    plan = plan_pipeline(graph, toy_target([400_000] * 2), GpuOptions(solver="dp")).plan
    (tmp_path / "p.json").write_text(plan.to_json())
    result = run_cli("verify", str(path), str(tmp_path / "p.json"), "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["ok"] and "float32 copy" in doc["reference"]
    (logits,) = [o for o in doc["outputs"] if o["name"] == "logits"]
    assert logits["dtype"] == "bfloat16" and logits["rtol"] == 5e-2  # bfloat16 tolerances
    assert logits["max_abs"] > 0  # the float32 reference really differs from bfloat16 rounding
    text = run_cli("verify", str(path), str(tmp_path / "p.json"))
    assert text.code == 0 and "float32 copy" in text.out


def test_bfloat16_mismatch_is_still_caught(tmp_path):
    """A wrong split of a bfloat16 model fails against the float32 reference (the check can fail)."""
    path = llama.build(
        tmp_path / "bf16.onnx", "tiny", kind="prefill", dtype="bfloat16", weights="random"
    )
    graph = load(path, {"batch": 1, "seq": 5})
    plan = plan_pipeline(graph, toy_target([400_000] * 2), GpuOptions(solver="dp")).plan
    feeds = make_inputs(graph)
    feeds["position_ids"] = feeds["position_ids"][:, ::-1].copy()  # valid ids, other numbers
    good = verify_plan(graph, plan, feeds)
    assert good.ok
    from partitioner.executor.reference import run_reference

    reference = run_reference(path, make_inputs(graph))
    assert reference.float32_copy
    logits = reference.outputs["logits"]
    ours = good.outputs[0]
    assert ours.name == "logits" and logits.dtype == np.float32
    # outputs for other inputs differ beyond the bfloat16 tolerance, so a comparison can fail
    from partitioner.executor.verify import compare_output

    shuffled = run_plan(graph, plan, feeds).outputs["logits"]
    assert not compare_output("logits", shuffled, logits, None, widened=True).ok
