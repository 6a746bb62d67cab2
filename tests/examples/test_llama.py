"""Llama graphs built with onnx.helper: counts, weightless files, and a real decoder in ORT."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from examples import llama
from examples._llama_graph import rope_inv_freq
from examples._onnx_utils import ExampleError, float_initializer_elements
from passes.load import check_model

TINY = llama.CONFIGS["tiny"]


def _dims(value: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


# ---- analytic parameter counts ---------------------------------------------------------


def test_analytic_param_count_tiny_by_hand() -> None:
    # hidden 64, heads 4 -> head_dim 16, kv width 2*16 = 32.
    # q,o 2*64*64 = 8,192; k,v 2*64*32 = 4,096; gate/up/down 3*64*128 = 24,576; norms 128
    # -> 36,992 per layer, 2 layers 73,984. Embedding 256*64 = 16,384, untied head 16,384,
    # final norm 64. Total 73,984 + 32,768 + 64 = 106,816.
    assert llama.analytic_param_count("tiny") == 106_816


def test_analytic_param_count_real_sizes() -> None:
    # 8B: q,o 2*4096^2 = 33,554,432; k,v 2*4096*1024 = 8,388,608; MLP 3*4096*14336 =
    # 176,160,768; norms 8,192 -> 218,112,000 per layer, *32 = 6,979,584,000.
    # Embedding + head 2*128256*4096 = 1,050,673,152; final norm 4,096 -> 8,030,261,248.
    assert llama.analytic_param_count("llama3.1-8b") == 8_030_261_248
    # Published sizes: 70.6B and 405.9B.
    assert llama.analytic_param_count("llama3.1-70b") == 70_553_706_496
    assert llama.analytic_param_count("llama3.1-405b") == 405_853_388_800
    # 3.2-1B ties the head to the embedding: 1.24B, not 1.50B.
    assert llama.analytic_param_count("llama3.2-1b") == 1_235_814_400


def test_rope_inv_freq_applies_llama31_scaling() -> None:
    config = llama.CONFIGS["llama3.1-8b"]
    scaled = rope_inv_freq(config)
    plain = 1.0 / 500_000.0 ** (np.arange(0, 128, 2) / 128)
    assert scaled.shape == (64,)
    # Wavelength 2*pi/f under 8192/4 = 2048 tokens: unchanged (f[0] = 1, wavelength 6.3).
    assert scaled[0] == pytest.approx(1.0)
    # Wavelength over 8192 tokens: divided by the factor 8 (last one: ~4e6 tokens).
    assert scaled[-1] == pytest.approx(plain[-1] / 8, rel=1e-5)
    # In between it is smoothed, so it lies between the two.
    wavelen = 2 * math.pi / plain
    middle = (wavelen > 2048) & (wavelen < 8192)
    assert middle.any()
    assert np.all(scaled[middle] < plain[middle]) and np.all(scaled[middle] > plain[middle] / 8)


# ---- weightless real sizes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def llama8b(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("llama8b")
    return {
        kind: llama.build(folder / f"{kind}.onnx", "llama3.1-8b", kind=kind)
        for kind in ("prefill", "decode")
    }


@pytest.mark.parametrize("kind", ["prefill", "decode"])
def test_weightless_8b_counts_and_checks(llama8b: dict[str, Path], kind: str) -> None:
    path = llama8b[kind]
    assert path.stat().st_size < 1_000_000  # megabytes at most, never the 16 GB of weights
    assert not path.with_name(path.name + ".data").exists()
    model = onnx.load(path, load_external_data=False)
    check_model(model, path)  # the planner's structural check: no weights needed
    assert float_initializer_elements(model) == 8_030_261_248
    # Every initializer is a bfloat16 weight; nothing else hides among them.
    assert {t.data_type for t in model.graph.initializer} == {onnx.TensorProto.BFLOAT16}
    assert all(t.name.startswith(("model.", "lm_head.")) for t in model.graph.initializer)


def test_weightless_external_data_is_a_contiguous_layout(llama8b: dict[str, Path]) -> None:
    model = onnx.load(llama8b["prefill"], load_external_data=False)
    offset = 0
    for tensor in model.graph.initializer:
        assert tensor.data_location == onnx.TensorProto.EXTERNAL
        info = {entry.key: entry.value for entry in tensor.external_data}
        assert info["location"] == "prefill.onnx.data"
        assert int(info["offset"]) == offset
        assert int(info["length"]) == math.prod(tensor.dims) * 2  # bfloat16
        offset += int(info["length"])
    assert offset == 8_030_261_248 * 2


def test_inv_freq_is_a_constant_node_not_an_initializer(llama8b: dict[str, Path]) -> None:
    model = onnx.load(llama8b["prefill"], load_external_data=False)
    (node,) = [n for n in model.graph.node if n.output[0] == "const.inv_freq"]
    assert node.op_type == "Constant"
    assert numpy_helper.to_array(node.attribute[0].t).shape == (64,)  # head_dim / 2
    assert "const.inv_freq" not in {t.name for t in model.graph.initializer}


def test_weightless_graph_passes_the_planners_structural_check(tmp_path: Path) -> None:
    # onnx 1.23's checker insists the data file exists; the planner checks structure without it.
    path = llama.build(tmp_path / "t.onnx", "tiny", weights="none")
    model = onnx.load(path, load_external_data=False)
    with pytest.raises(onnx.checker.ValidationError, match="not regular file"):
        onnx.checker.check_model(model)
    check_model(model, path)


def test_symbolic_dims(llama8b: dict[str, Path]) -> None:
    prefill = onnx.load(llama8b["prefill"], load_external_data=False).graph
    decode = onnx.load(llama8b["decode"], load_external_data=False).graph
    assert [_dims(v) for v in prefill.input] == [["batch", "seq"], ["batch", "seq"]]
    assert _dims(prefill.output[0]) == ["batch", "seq", 128256]
    assert _dims(prefill.output[1]) == ["batch", 8, "seq", 128]
    assert len(prefill.output) == 1 + 2 * 32
    assert _dims(decode.input[0]) == ["batch", 1]
    assert [v.name for v in decode.input[2:4]] == ["past.0.key", "past.0.value"]
    assert _dims(decode.input[2]) == ["batch", 8, "past", 128]
    assert _dims(decode.output[2]) == ["batch", 8, "past+1", 128]


def test_nodes_per_layer(llama8b: dict[str, Path]) -> None:
    # bfloat16 prefill layer: RMSNorm 9 (Cast, Pow, ReduceMean, Add, Sqrt, Reciprocal, Mul,
    # Cast, Mul) x2 = 18; q/k/v MatMul+Reshape+Transpose 9; RoPE on q and k 2x6 = 12
    # (Split, Neg, Concat, Mul, Mul, Add); grouped-query heads 3 (Reshape q into KV groups,
    # Unsqueeze k and v); attention 12 (Transpose, MatMul, Mul, Add mask, Cast, Softmax, Cast,
    # MatMul, Reshape back to heads, Transpose, Reshape, o_proj); MLP 6; two residual Adds:
    # 18 + 9 + 12 + 3 + 12 + 6 + 2 = 62.
    # Decode drops the mask Add and concatenates the cache for k and v: 63.
    for kind, expected in (("prefill", 62), ("decode", 63)):
        nodes = onnx.load(llama8b[kind], load_external_data=False).graph.node
        for layer in (0, 31):
            prefix = f"model.layers.{layer}."
            assert sum(n.name.startswith(prefix) for n in nodes) == expected


def test_405b_builds_in_seconds(tmp_path: Path) -> None:
    start = time.perf_counter()
    path = llama.build(tmp_path / "l405.onnx", "llama3.1-405b", kind="decode")
    assert time.perf_counter() - start < 10
    assert path.stat().st_size < 5_000_000
    model = onnx.load(path, load_external_data=False)
    assert float_initializer_elements(model) == llama.analytic_param_count("llama3.1-405b")


# ---- tiny graphs in onnxruntime -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    return {
        kind: llama.build(folder / f"{kind}.onnx", "tiny", kind=kind)
        for kind in ("prefill", "decode")
    }


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _reference_logits(model: onnx.ModelProto, ids: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Llama written plainly in NumPy (float64), reading the graph's weights by name."""
    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    c = TINY
    batch, seq = ids.shape
    hd, eps = c.head_dim, c.rms_norm_eps
    angles = pos[..., None] / c.rope_theta ** (np.arange(0, hd, 2) / hd)  # [b, s, hd/2]
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]  # [b, 1, s, hd/2]

    def rope(t: np.ndarray) -> np.ndarray:
        a, b = t[..., : hd // 2], t[..., hd // 2 :]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)

    def rms(t: np.ndarray, name: str) -> np.ndarray:
        return t / np.sqrt((t**2).mean(-1, keepdims=True) + eps) * w[name]

    def heads(t: np.ndarray, n: int) -> np.ndarray:
        return t.reshape(batch, seq, n, hd).transpose(0, 2, 1, 3)

    x = w["model.embed_tokens.weight"][ids]
    causal = np.triu(np.full((seq, seq), -np.inf), k=1)
    rep = c.num_heads // c.num_kv_heads
    for i in range(c.num_layers):
        p = f"model.layers.{i}."
        h = rms(x, p + "input_layernorm.weight")
        q = rope(heads(h @ w[p + "self_attn.q_proj.weight"], c.num_heads))
        k = rope(heads(h @ w[p + "self_attn.k_proj.weight"], c.num_kv_heads))
        v = heads(h @ w[p + "self_attn.v_proj.weight"], c.num_kv_heads)
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        scores = q @ k.swapaxes(-1, -2) / math.sqrt(hd) + causal
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, -1)
        x = x + context @ w[p + "self_attn.o_proj.weight"]
        h = rms(x, p + "post_attention_layernorm.weight")
        gate = h @ w[p + "mlp.gate_proj.weight"]
        silu = gate / (1 + np.exp(-gate))
        x = x + (silu * (h @ w[p + "mlp.up_proj.weight"])) @ w[p + "mlp.down_proj.weight"]
    return rms(x, "model.norm.weight") @ w["lm_head.weight"]


def _tokens(batch: int = 2, seq: int = 7) -> tuple[np.ndarray, np.ndarray]:
    ids = np.random.default_rng(11).integers(0, TINY.vocab_size, (batch, seq))
    return ids, np.tile(np.arange(seq), (batch, 1))


def test_tiny_counts_and_checker(tiny: dict[str, Path]) -> None:
    for path in tiny.values():
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        assert float_initializer_elements(model) == 106_816


def test_tiny_prefill_matches_numpy_reference(tiny: dict[str, Path]) -> None:
    ids, pos = _tokens()
    logits = _session(tiny["prefill"]).run(["logits"], {"input_ids": ids, "position_ids": pos})[0]
    expected = _reference_logits(onnx.load(tiny["prefill"]), ids, pos)
    assert np.abs(expected).max() > 1  # O(1) logits, so the comparison means something
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def _decode_last(
    tiny: dict[str, Path], ids: np.ndarray, pos: np.ndarray, *, drop_first_cached: bool = False
) -> np.ndarray:
    """Prefill all but the last token, then decode the last one with the returned cache."""
    prefill = _session(tiny["prefill"])
    cache = prefill.run(None, {"input_ids": ids[:, :-1], "position_ids": pos[:, :-1]})[1:]
    feeds = {"input_ids": ids[:, -1:], "position_ids": pos[:, -1:]}
    for output, value in zip(prefill.get_outputs()[1:], cache, strict=True):
        feeds[output.name.replace("present.", "past.")] = (
            value[:, :, 1:] if drop_first_cached else value
        )
    return _session(tiny["decode"]).run(["logits"], feeds)[0][:, 0]


def test_decode_with_cache_equals_prefill(tiny: dict[str, Path]) -> None:
    ids, pos = _tokens()
    full = _session(tiny["prefill"]).run(["logits"], {"input_ids": ids, "position_ids": pos})[0]
    np.testing.assert_allclose(_decode_last(tiny, ids, pos), full[:, -1], rtol=1e-5, atol=1e-5)


def test_decode_depends_on_position_and_cache(tiny: dict[str, Path]) -> None:
    # Controls: the equality above is not a coincidence of an insensitive graph.
    ids, pos = _tokens()
    right = _decode_last(tiny, ids, pos)
    wrong_position = pos.copy()
    wrong_position[:, -1] = 0
    assert np.abs(_decode_last(tiny, ids, wrong_position) - right).max() > 1e-2
    assert np.abs(_decode_last(tiny, ids, pos, drop_first_cached=True) - right).max() > 1e-2


def test_prefill_is_causal(tiny: dict[str, Path]) -> None:
    ids, pos = _tokens()
    session = _session(tiny["prefill"])
    before = session.run(["logits"], {"input_ids": ids, "position_ids": pos})[0]
    changed = ids.copy()
    changed[:, -1] = (changed[:, -1] + 1) % TINY.vocab_size
    after = session.run(["logits"], {"input_ids": changed, "position_ids": pos})[0]
    np.testing.assert_array_equal(after[:, :-1], before[:, :-1])
    assert np.abs(after[:, -1] - before[:, -1]).max() > 1e-2


def test_opset23_uses_fused_rmsnorm_with_same_logits(tiny: dict[str, Path], tmp_path: Path) -> None:
    path = llama.build(tmp_path / "p23.onnx", "tiny", opset=23)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert "RMSNormalization" in ops and "ReduceMean" not in ops
    ids, pos = _tokens()
    feeds = {"input_ids": ids, "position_ids": pos}
    fused = _session(path).run(["logits"], feeds)[0]
    decomposed = _session(tiny["prefill"]).run(["logits"], feeds)[0]
    np.testing.assert_allclose(fused, decomposed, rtol=1e-5, atol=1e-5)


def test_float16_runs_close_to_float32(tiny: dict[str, Path], tmp_path: Path) -> None:
    path = llama.build(tmp_path / "f16.onnx", "tiny", dtype="float16")
    ids, pos = _tokens()
    feeds = {"input_ids": ids, "position_ids": pos}
    half = _session(path).run(["logits"], feeds)[0]
    assert half.dtype == np.float16
    full = _session(tiny["prefill"]).run(["logits"], feeds)[0]
    np.testing.assert_allclose(half.astype(np.float32), full, atol=0.1)


def test_bfloat16_graph_casts_norm_and_softmax_to_float32(tmp_path: Path) -> None:
    # ORT's CPU provider has no bfloat16 kernels (Where, MatMul...), so this graph is
    # checked, not run.
    path = llama.build(tmp_path / "bf16.onnx", "tiny", dtype="bfloat16")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    by_name = {n.name: n for n in model.graph.node}
    softmax_in = by_name["model.layers.0.self_attn.softmax_cast_in"]
    assert softmax_in.attribute[0].i == onnx.TensorProto.FLOAT
    assert by_name["model.layers.0.input_layernorm.cast_in"].op_type == "Cast"


# ---- errors and CLI ------------------------------------------------------------------------


def test_random_weights_for_a_real_size_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(ExampleError, match="random weights would take 15.0 GiB"):
        llama.build(tmp_path / "x.onnx", "llama3.1-8b", weights="random")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"config": "llama9"}, "unknown Llama config 'llama9'"),
        ({"kind": "train"}, "unknown graph kind 'train'"),
        ({"dtype": "int8"}, "unknown dtype 'int8'"),
        ({"opset": 17}, "opset 17 is not supported"),
    ],
)
def test_bad_options_are_user_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ExampleError, match=message):
        llama.build(tmp_path / "x.onnx", **{"config": "tiny", **kwargs})


def test_invalid_config_is_a_user_error() -> None:
    with pytest.raises(ExampleError, match="must each divide"):
        llama.LlamaConfig(64, 1, 4, 3, 128, 256)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "l70.onnx"
    assert llama.main(["--config", "llama3.1-70b", "--kind", "decode", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    model = onnx.load(out, load_external_data=False)
    assert float_initializer_elements(model) == 70_553_706_496
    assert llama.main(["--config", "llama3.1-8b", "--weights", "random", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: random weights would take")


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        llama.main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--config", "--kind", "--dtype", "--weights", "--opset", "--data-location"):
        assert option in help_text


def test_llama_never_imports_torch() -> None:
    import subprocess
    import sys

    code = "import sys, examples.llama; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("config", "kind", "dims"),
    [
        ("tiny", "prefill", {"batch": 1, "seq": 8}),
        ("tiny", "decode", {"batch": 2, "past": 15}),
        ("llama3.1-8b", "decode", {"batch": 1, "past": 4095}),
    ],
)
def test_every_layer_has_its_attention_found(tmp_path: Path, config, kind, dims) -> None:
    from passes.analysis import node_costs
    from passes.analysis.patterns import attention_patterns
    from passes.load import load

    path = llama.build(tmp_path / "m.onnx", config, kind=kind, weights="none")
    graph = load(path, dims)
    found = attention_patterns(graph, node_costs(graph))
    assert len(found) == llama.CONFIGS[config].num_layers
    queries = dims.get("seq", 1)
    keys = dims.get("seq", dims.get("past", 0) + 1)
    assert all((p.q_len, p.kv_len) == (queries, keys) for p in found)
