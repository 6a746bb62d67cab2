"""An FP8 plan deploys FP8: stage files and rank graphs hold the quantised weights the
plan counted, and what verify, export and run execute computes the model's numbers."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from examples import llama
from partitioner.planning import GpuOptions, plan_pipeline
from passes.load import load
from targets.presets import presets
from tests.cli import run_cli

DIMS = {"batch": 1, "past": 15}


@pytest.fixture(scope="module")
def fp8(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fp8")
    return llama.build(folder / "t8.onnx", "tiny", kind="decode", opset=21, quant="fp8-kv")


def _float8_bytes(model: onnx.ModelProto) -> int:
    return sum(
        int(np.prod(t.dims))
        for t in model.graph.initializer
        if t.data_type == TensorProto.FLOAT8E4M3FN
    )


def _export(path, tmp_path, tp, pp):
    graph = load(path, DIMS)
    target = presets()["h100x8"]  # a GPU with a float8 rate
    plan = plan_pipeline(graph, target, GpuOptions(tp=tp, pp=pp, time_limit_s=5)).plan
    plan_path = tmp_path / f"tp{tp}pp{pp}.json"
    plan_path.write_text(plan.to_json())
    out = tmp_path / f"out{tp}{pp}"
    result = run_cli("export", str(path), str(plan_path), "--out", str(out))
    assert result.code == 0, result.err
    verified = run_cli("verify", str(path), str(plan_path))
    assert verified.code == 0, verified.err
    manifest = json.loads((out / "manifest.json").read_text())
    return [onnx.load(str(out / s["file"])) for s in manifest["stages"]]


@pytest.mark.parametrize(("tp", "pp"), [(1, 2), (2, 1)])
def test_stage_files_hold_the_float8_weights_not_their_dequantised_copies(fp8, tmp_path, tp, pp):
    whole = _float8_bytes(onnx.load(str(fp8)))
    stages = _export(fp8, tmp_path, tp, pp)
    for model in stages:
        onnx.checker.check_model(model)
    # the tensor-parallel ranks split the projections (zero points are 1-byte scalars)
    held = sum(_float8_bytes(m) for m in stages)
    assert held >= whole
    float_weights = [
        t.name
        for m in stages
        for t in m.graph.initializer
        if t.data_type == TensorProto.FLOAT and "proj" in t.name and len(t.dims) == 2
    ]
    assert float_weights == []
