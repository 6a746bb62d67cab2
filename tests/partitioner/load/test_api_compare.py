"""A wafer plan's serving estimate prints Cerebras' public API price beside it."""

from __future__ import annotations

import json

import pytest

from examples import llama
from partitioner.commands.api_compare import active_params, api_comparison
from partitioner.plan.io import load_plan
from tests.cli import run_cli


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    model = llama.build(folder / "tiny-decode.onnx", "tiny", kind="decode")
    out = {}
    for target in ("wse3", "h100x2"):
        out[target] = folder / f"{target}.json"
        made = run_cli(str(model), "--target", target, "--dim", "batch=1", "--dim", "past=255",
                       "-o", str(out[target]), "-q")  # fmt: skip
        assert made.code == 0, made.err
    return out


def test_the_size_is_half_a_decode_steps_flops_at_batch_1_and_an_empty_cache(plans):
    # the tiny Llama's weights a token multiplies by, per layer: q and o 64x64, k and v
    # 64x32, gate and up 64x128, down 128x64: 36,864; two layers and the 64x256 head:
    # 90,112. The norms, rotary, softmax and activations add a little FLOPs of their own.
    size = active_params(load_plan(plans["wse3"]))
    assert 90_112 < size < 1.03 * 90_112


def test_a_wafer_plan_says_the_price_and_a_gpu_plan_does_not(plans):
    flags = ("--rate", "5", "--requests", "8", "--prompt-len", "16", "--output-len", "4")
    wafer = run_cli("simulate", str(plans["wse3"]), *flags)
    assert wafer.code == 0, wafer.err
    assert "Cerebras' public API lists no model of this size" in wafer.out
    assert "Llama 3.1 8B $0.10 in / $0.10 out" in wafer.out
    assert "(a comparison point, not an input)" in wafer.out
    doc = json.loads(run_cli("simulate", str(plans["wse3"]), *flags, "--json").out)
    assert doc["cerebras_api_prices"]["same_size"] is False
    assert len(doc["cerebras_api_prices"]["prices"]) == 4
    gpu = run_cli("simulate", str(plans["h100x2"]), *flags, "--json")
    assert "cerebras_api_prices" not in json.loads(gpu.out)
    assert api_comparison(load_plan(plans["h100x2"])) is None
