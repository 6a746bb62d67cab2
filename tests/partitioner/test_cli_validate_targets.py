"""`partition validate` and `partition targets` from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

from partitioner.planning import GpuOptions, plan_pipeline
from passes.load import load
from tests.cli import run_cli
from tests.modelgen import init, make_model, save, vi
from tests.partitioner.gpu_targets import toy_target


@pytest.fixture
def planned(tmp_path):
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("MatMul", ["a", "w2"], ["y"], name="fc2"),
    ]
    inits = [init("w1", np.ones((8, 16), np.float32)), init("w2", np.ones((16, 4), np.float32))]
    model = save(
        make_model(nodes, [vi("x", [2, 8])], [vi("y", [2, 4])], inits), tmp_path / "m.onnx"
    )
    plan = plan_pipeline(load(model), toy_target([100_000] * 2), GpuOptions(solver="dp", pp=2)).plan
    path = tmp_path / "m.plan.json"
    path.write_text(plan.to_json())
    return model, path


def test_valid_plan_exits_0(planned):
    model, plan = planned
    result = run_cli("validate", str(plan), str(model))
    assert result.code == 0 and "valid: 2 partitions" in result.out


def test_broken_plan_exits_1_naming_the_violation(planned, tmp_path):
    model, plan = planned
    doc = json.loads(plan.read_text())
    doc["partitions"][1]["nodes"] = []  # fc2 in no partition
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    result = run_cli("validate", str(bad), str(model))
    assert result.code == 1 and "[coverage]" in result.err and "fc2" in result.err


def test_plan_for_another_model_exits_1(planned, tmp_path):
    _, plan = planned
    other = save(
        make_model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [2])], [vi("y", [2])]),
        tmp_path / "o.onnx",
    )
    result = run_cli("validate", str(plan), str(other))
    assert result.code == 1 and "another model" in result.err


def test_schema_violation_exits_1_and_not_json_exits_2(planned, tmp_path):
    _, plan = planned
    doc = json.loads(plan.read_text())
    del doc["solver"]["bound_s"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    result = run_cli("validate", str(bad))
    assert result.code == 1 and "[schema]" in result.err and "bound_s" in result.err
    junk = tmp_path / "junk.json"
    junk.write_text("not json")
    result = run_cli("validate", str(junk))
    assert result.code == 2 and "not JSON" in result.err and result.err.count("\n") == 1


def test_targets_table_and_json():
    result = run_cli("targets")
    assert result.code == 0 and "h100x8" in result.out and "wse3x4" in result.out
    doc = json.loads(run_cli("targets", "--json").out)
    names = {entry["name"] for entry in doc}
    assert {"a100x4", "h100x8", "h100x16", "b200x8", "wse2", "wse3", "wse3x4"} <= names
    h100 = next(entry for entry in doc if entry["name"] == "h100x8")
    assert h100["memory_per_device_bytes"] == 80_000_000_000 and h100["num_devices"] == 8
