"""Dims that move with the past: a decode step's attention mask spans the cache and the new
token (Hugging Face's and onnxruntime-genai's exports name its length
"total_sequence_length"), so the load model's points bind it at past + 1."""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from partitioner.planning import GpuOptions, plan_pipeline
from partitioner.planning.load_fit import EXACT
from partitioner.planning.serving_dims import dims_at, past_followers
from passes.load import load
from targets import get_preset
from tests.cli import run_cli

WIDTH = 8


def _decode_step(path, mask_dim: str) -> None:
    """One attention head over a cache: present = past ++ k; softmax(q·presentᵀ + mask)."""
    f = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("x", f, ["batch", 1, WIDTH]),
        helper.make_tensor_value_info("past_key", f, ["batch", 1, "past", WIDTH]),
        helper.make_tensor_value_info("attention_mask", f, ["batch", mask_dim]),
    ]
    outputs = [
        helper.make_tensor_value_info("y", f, [None] * 4),
        helper.make_tensor_value_info("present_key", f, [None] * 4),
    ]
    weight = numpy_helper.from_array(np.eye(WIDTH, dtype=np.float32), "w_k")
    axes = [numpy_helper.from_array(np.array(a, np.int64), n)
            for a, n in (([1], "ax1"), ([1, 2], "ax12"))]  # fmt: skip
    nodes = [
        helper.make_node("MatMul", ["x", "w_k"], ["k3"]),
        helper.make_node("Unsqueeze", ["k3", "ax1"], ["k"]),
        helper.make_node("Concat", ["past_key", "k"], ["present_key"], axis=2),
        helper.make_node("Unsqueeze", ["x", "ax1"], ["q"]),
        helper.make_node("Transpose", ["present_key"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Unsqueeze", ["attention_mask", "ax12"], ["mask"]),
        helper.make_node("Add", ["scores", "mask"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "present_key"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "step", inputs, outputs, [weight, *axes])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


def test_the_mask_length_is_bound_at_past_plus_one_at_every_point(tmp_path):
    path = tmp_path / "step.onnx"
    _decode_step(path, "total_sequence_length")
    graph = load(path, {"batch": 1, "past": 4095, "total_sequence_length": 4096})
    roles = {"batch": "batch", "past": "past"}
    assert past_followers(graph, roles) == {"total_sequence_length": 1}
    assert dims_at(graph, roles, (3, 99)) == {"batch": 3, "past": 99, "total_sequence_length": 100}
    plan = plan_pipeline(graph, get_preset("h100x1"), GpuOptions(tp=1, pp=1)).plan
    assert plan.load_model is not None and plan.load_model.max_relative_error <= EXACT
    # the mask (4 B a row of the cache and one more, per sequence) is a host input the fit
    # moves with the past: at (b, p) it is 4·b·(p + 1) bytes
    mask = next(t for t in plan.transfers if t.tensor == "attention_mask")
    coefficients = plan.load_model.transfers[plan.transfers.index(mask)].bytes
    assert plan.load_model.value(coefficients, 3, 99) == 4 * 3 * 100


def test_a_length_the_name_does_not_tie_to_the_past_stays_where_it_was_bound(tmp_path):
    path = tmp_path / "step.onnx"
    _decode_step(path, "sequence_length")
    graph = load(path, {"batch": 1, "past": 4095, "sequence_length": 1})
    # a count of new tokens is no follower: its value is not the past's or one more
    assert past_followers(graph, {"batch": "batch", "past": "past"}) == {}


def test_without_a_load_model_the_plan_stands_and_says_why(tmp_path, caplog):
    """A mask length whose name says nothing of the cache is held at its value while the past
    moves; the graph then contradicts itself, and the plan is written without a load model."""
    path = tmp_path / "step.onnx"
    _decode_step(path, "m")
    graph = load(path, {"batch": 1, "past": 4095, "m": 4096})
    with caplog.at_level(logging.WARNING):
        plan = plan_pipeline(graph, get_preset("h100x1"), GpuOptions(tp=1, pp=1)).plan
    assert plan.load_model is None and plan.partitions
    assert any("no load model" in r.getMessage() for r in caplog.records)
    # the plan keeps the reason, and serving it repeats it in its one line
    why = plan.estimate.extra["no_load_model"]
    assert "shape inference no longer knows" in why and "m=4096" in why
    written = tmp_path / "step.plan.json"
    written.write_text(plan.to_json())
    result = run_cli("simulate", str(written), "--rate", "1")
    assert result.code == 2 and result.err.count("\n") == 1 and why in result.err
