"""`examples.llama --quant fp8`: QDQ projections that onnxruntime runs and the planner
costs at their stored bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from examples import llama
from examples._onnx_utils import ExampleError
from passes.analysis import node_costs
from passes.load import load

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _logits(path: Path) -> np.ndarray:
    ids = np.random.default_rng(5).integers(0, llama.CONFIGS["tiny"].vocab_size, (2, 6))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids, "position_ids": np.tile(np.arange(6), (2, 1))}
    return session.run(["logits"], feeds)[0]


def test_fp8_tiny_runs_and_stays_close_to_the_plain_model(tmp_path):
    """The FP8 model quantises the plain model's own random weights: its logits follow
    the plain ones to within FP8's rounding, and differ from them (it is not a no-op)."""
    plain = llama.build(tmp_path / "plain.onnx", "tiny", opset=21)
    fp8 = llama.build(tmp_path / "fp8.onnx", "tiny", opset=21, quant="fp8")
    model = onnx.load(fp8)
    onnx.checker.check_model(model, full_check=True)
    stored = {i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT8E4M3FN}
    layers = llama.CONFIGS["tiny"].num_layers
    assert len(stored) == layers * len(PROJECTIONS)
    assert all(name.split(".")[-2] in PROJECTIONS for name in stored)
    a, b = _logits(plain), _logits(fp8)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
    assert np.abs(a - b).max() > 1e-3


def test_fp8_needs_opset_19(tmp_path):
    with pytest.raises(ExampleError, match="--quant fp8 needs --opset 19 or later"):
        llama.build(tmp_path / "x.onnx", "tiny", quant="fp8")
    with pytest.raises(ExampleError, match="unknown quantisation 'int3'"):
        llama.build(tmp_path / "x.onnx", "tiny", opset=21, quant="int3")


def test_weightless_8b_fp8_holds_one_byte_per_projection_weight(tmp_path):
    """Projections are stored in FP8 (1 byte), the embedding, norms and LM head in bf16."""
    path = llama.build(tmp_path / "l8.onnx", "llama3.1-8b", kind="decode", opset=21, quant="fp8")
    c = llama.CONFIGS["llama3.1-8b"]
    kv = c.num_kv_heads * c.head_dim
    per_layer = c.hidden_size * (2 * c.hidden_size + 2 * kv + 3 * c.intermediate_size)
    projections = c.num_layers * per_layer
    total = llama.analytic_param_count(c)
    costs = node_costs(load(path, dims={"batch": 1, "past": 15}))
    expected = projections + 2 * (total - projections)
    assert abs(costs.param_bytes - expected) < 1024  # plus the activation scale's constants


def test_fp8_projections_shard_like_the_plain_ones(tmp_path):
    """Per-tensor QuantizeLinear/DequantizeLinear carry a split through, so tensor
    parallelism needs the same collectives as the plain model, not an all-gather before
    every quantised input."""
    from passes.analysis.sharding import shard_graph

    dims = {"batch": 1, "past": 15}
    plain = llama.build(tmp_path / "plain.onnx", "tiny", kind="decode", opset=21)
    fp8 = llama.build(tmp_path / "fp8.onnx", "tiny", kind="decode", opset=21, quant="fp8")
    kinds = [
        sorted(c.kind for c in shard_graph(load(path, dims=dims), 2).collectives)
        for path in (plain, fp8)
    ]
    assert kinds[0] == kinds[1] and kinds[0]


def test_fp8_kv_cache_decodes_what_prefill_cached(tmp_path):
    """With ``fp8-kv`` the cache is float8 in and out; decoding the last token from the
    prefill's cache gives about the prefill's own last logits (onnxruntime's numpy binding
    takes float8 only through OrtValues: `partitioner.executor.reference`)."""
    from partitioner.executor.reference import session_run

    kw = {"opset": 21, "quant": "fp8-kv"}
    prefill = llama.build(tmp_path / "p.onnx", "tiny", kind="prefill", **kw)
    decode = llama.build(tmp_path / "d.onnx", "tiny", kind="decode", **kw)
    inputs = onnx.load(decode).graph.input
    assert {i.type.tensor_type.elem_type for i in inputs if i.name.startswith("past")} == {
        TensorProto.FLOAT8E4M3FN
    }
    p, d = (ort.InferenceSession(str(m), providers=["CPUExecutionProvider"])
            for m in (prefill, decode))  # fmt: skip
    ids = np.random.default_rng(2).integers(0, llama.CONFIGS["tiny"].vocab_size, (2, 7))
    pos = np.tile(np.arange(7), (2, 1))
    names = [o.name for o in p.get_outputs()]
    full = session_run(p, names, {"input_ids": ids, "position_ids": pos})
    cached = session_run(p, names, {"input_ids": ids[:, :-1], "position_ids": pos[:, :-1]})
    feeds = {"input_ids": ids[:, -1:], "position_ids": pos[:, -1:]}
    feeds |= {n.replace("present.", "past."): v for n, v in zip(names[1:], cached[1:], strict=True)}
    last = session_run(d, [o.name for o in d.get_outputs()], feeds)[0][:, 0]
    assert cached[1].dtype.name == "float8_e4m3fn"
    # close, not equal: the prefill attended to its own rows before they were rounded to FP8
    assert np.corrcoef(last.ravel(), full[0][:, -1].ravel())[0, 1] > 0.99


def test_fp8_kv_cache_shards_by_heads_and_halves_the_cache_bytes(tmp_path):
    from passes.analysis.sharding import shard_graph

    dims = {"batch": 1, "past": 15}
    kinds = []
    for quant in ("fp8", "fp8-kv"):
        path = llama.build(tmp_path / f"{quant}.onnx", "tiny", kind="decode", opset=21, quant=quant)
        graph = load(path, dims=dims)
        kinds.append(sorted(c.kind for c in shard_graph(graph, 2).collectives))
        cache = sum(t.nbytes for t in graph.iter_tensors() if t.is_kv_cache)
        if quant == "fp8":
            float32_cache = cache
    assert kinds[0] == kinds[1]  # the dequantised cache is split by heads like the rows
    assert cache * 4 == float32_cache  # the tiny model's cache is float32 otherwise
