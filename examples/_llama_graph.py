"""Graph construction for :mod:`examples.llama`, with ``onnx.helper`` only (no torch).

The public entry point is :func:`build_graph`; :mod:`examples.llama` owns configs and the
CLI. Layout and naming:

* Weights are stored ``[in, out]`` so each projection is a plain ``MatMul`` (Hugging Face
  stores ``[out, in]``); names follow Hugging Face (``model.layers.3.self_attn.q_proj.weight``).
  They are the only initializers. Every other constant (``inv_freq``, reshape shapes,
  axes, epsilon, the attention scale) is a ``Constant`` node, created once and shared.
* Mixed precision follows Hugging Face's Llama: RMSNorm and softmax run in float32 (with
  ``Cast`` in and out when the model dtype is 16-bit), cos/sin are computed in float32 from
  ``position_ids`` and cast to the model dtype. A float32 model has no Casts.
* The prefill causal mask is built at run time from the sequence length (Shape, Gather,
  Range, Unsqueeze, GreaterOrEqual, Where), so folding it needs the ``--dim`` overrides.
* Decode attends to all ``past + 1`` keys, so it needs no mask.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from examples._llama_quant import cache_read, cache_write, fp8_matmul
from examples._llama_rope import rope_inv_freq, rope_tables

if TYPE_CHECKING:
    from examples.llama import LlamaConfig

__all__ = ["DTYPES", "GraphKind", "WeightMode", "build_graph", "rope_inv_freq"]

logger = logging.getLogger(__name__)

GraphKind = Literal["prefill", "decode"]
WeightMode = Literal["none", "random"]


@dataclass(frozen=True)
class _DType:
    onnx_type: int
    itemsize_bytes: int

    @property
    def numpy_type(self) -> np.dtype:
        return helper.tensor_dtype_to_np_dtype(self.onnx_type)


#: Model dtypes by name (bfloat16's numpy type comes from ml_dtypes, through onnx).
DTYPES: dict[str, _DType] = {
    "float32": _DType(TensorProto.FLOAT, 4),
    "float16": _DType(TensorProto.FLOAT16, 2),
    "bfloat16": _DType(TensorProto.BFLOAT16, 2),
}


class _Builder:
    """Accumulates nodes, shared constants and weight initializers."""

    def __init__(
        self, dtype: str, weights: WeightMode, data_location: str, seed: int, opset: int,
        quant: str = "none",
    ) -> None:  # fmt: skip
        self.dtype = DTYPES[dtype]
        self.numpy_type = self.dtype.numpy_type
        self.weights = weights
        self.data_location = data_location
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.quant = quant
        self.kv_fp8 = quant == "fp8-kv"  # the KV cache too (`_llama_quant.cache_read`)
        self.quantized: dict[str, str] = {}  # tensor -> its FP8 round trip (`_llama_quant`)
        self.nodes: list = []
        self.constant_nodes: list = []
        self.initializers: list[TensorProto] = []
        self._constants: dict[tuple, str] = {}
        self._offset_bytes = 0

    def node(self, op: str, inputs: Sequence[str], name: str, *, out: str = "", **attrs) -> str:
        """Add a one-output node; the output is called ``out`` or, by default, ``name``."""
        return self.node_outputs(op, inputs, name, [out or name], **attrs)[0]

    def node_outputs(
        self, op: str, inputs: Sequence[str], name: str, outputs: Sequence[str], **attrs
    ) -> list[str]:
        """Add a node with the given output names."""
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), name=name, **attrs))
        return list(outputs)

    def const(self, value: np.ndarray, hint: str) -> str:
        """A shared ``Constant`` node holding ``value`` (created once per distinct value)."""
        key = (value.dtype.str, value.shape, value.tobytes())
        if key not in self._constants:
            name = f"const.{hint}"
            suffix = 1
            while name in self._constants.values():
                suffix += 1
                name = f"const.{hint}.{suffix}"
            tensor = numpy_helper.from_array(value, name)
            self.constant_nodes.append(
                helper.make_node("Constant", [], [name], name=name, value=tensor)
            )
            self._constants[key] = name
        return self._constants[key]

    def ints(self, values: int | Sequence[int], hint: str) -> str:
        return self.const(np.array(values, dtype=np.int64), hint)

    def scalar(self, value: float, hint: str, *, float32: bool = False) -> str:
        numpy_type = np.float32 if float32 else self.numpy_type
        return self.const(np.array(value, dtype=numpy_type), hint)

    def weight(self, name: str, shape: tuple[int, ...], *, fan_in: int | None = None) -> str:
        """An initializer: external data never written, or seeded random values.

        Matrices get ``N(0, 1/fan_in)`` so activations stay O(1) (a decode-vs-prefill
        comparison on near-zero logits would prove nothing); norm scales get ``1 + N(0,
        0.1)``; the embedding gets ``N(0, 1)``.
        """
        tensor = TensorProto()
        tensor.name = name
        tensor.dims.extend(shape)
        tensor.data_type = self.dtype.onnx_type
        if self.weights == "none":
            self.external(tensor, math.prod(shape) * self.dtype.itemsize_bytes)
        else:
            if fan_in is None and len(shape) == 1:
                values = 1.0 + 0.1 * self.rng.standard_normal(shape)
            else:
                values = self.rng.standard_normal(shape) / math.sqrt(fan_in or 1)
            tensor.raw_data = values.astype(np.float32).astype(self.numpy_type).tobytes()
        self.initializers.append(tensor)
        return name

    def external(self, tensor: TensorProto, length_bytes: int) -> None:
        """Point ``tensor`` at the next ``length_bytes`` of the (never written) data file."""
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (
            ("location", self.data_location),
            ("offset", str(self._offset_bytes)),
            ("length", str(length_bytes)),
        ):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        self._offset_bytes += length_bytes

    def linear(self, x: str, weight: str, shape: tuple[int, int], name: str) -> str:
        """``x @ weight`` for a projection (fan-in ``shape[0]``); FP8 with ``--quant fp8``."""
        if self.quant in ("fp8", "fp8-kv"):
            return fp8_matmul(self, x, weight, shape, shape[0], name)
        return self.node("MatMul", [x, self.weight(weight, shape, fan_in=shape[0])], name)

    def cast(self, value: str, to: int, name: str) -> str:
        return self.node("Cast", [value], name, to=to)


def _rms_norm(b: _Builder, x: str, weight: str, eps: float, name: str) -> str:
    if b.opset >= 23:
        # Fused op (opset 23); stash_type=1 computes in float32 like the decomposition.
        return b.node("RMSNormalization", [x, weight], name, axis=-1, epsilon=eps, stash_type=1)
    low_precision = b.dtype.onnx_type != TensorProto.FLOAT
    x32 = b.cast(x, TensorProto.FLOAT, f"{name}.cast_in") if low_precision else x
    square = b.node("Pow", [x32, b.scalar(2.0, "two", float32=True)], f"{name}.pow")
    mean = b.node("ReduceMean", [square, b.ints([-1], "axes_last")], f"{name}.mean", keepdims=1)
    shifted = b.node("Add", [mean, b.scalar(eps, "rms_eps", float32=True)], f"{name}.add_eps")
    root = b.node("Sqrt", [shifted], f"{name}.sqrt")
    inverse = b.node("Reciprocal", [root], f"{name}.reciprocal")
    normed = b.node("Mul", [x32, inverse], f"{name}.normalize")
    if low_precision:
        normed = b.cast(normed, b.dtype.onnx_type, f"{name}.cast_out")
    return b.node("Mul", [normed, weight], f"{name}.scale")


def _rotary(b: _Builder, x: str, cos: str, sin: str, half: int, name: str, out: str = "") -> str:
    halves = b.ints([half, half], "rope_halves")
    first, second = b.node_outputs(
        "Split",
        [x, halves],
        f"{name}.split",
        [f"{name}.first_half", f"{name}.second_half"],
        axis=-1,
    )
    negated = b.node("Neg", [second], f"{name}.neg")
    rotated = b.node("Concat", [negated, first], f"{name}.rotate_half", axis=-1)
    with_cos = b.node("Mul", [x, cos], f"{name}.mul_cos")
    with_sin = b.node("Mul", [rotated, sin], f"{name}.mul_sin")
    return b.node("Add", [with_cos, with_sin], f"{name}.add", out=out)


def _group_heads(b: _Builder, q: str, config: LlamaConfig, name: str) -> str:
    """[batch, heads, S, d] -> [batch, kv_heads, group, S, d]: query heads grouped by KV head.

    Grouped-query attention then broadcasts each K/V head over its group inside
    MatMul, as efficient exporters write it, instead of materialising repeated
    K/V tensors (which would cost heads/kv_heads times the cache in activations).
    """
    group = config.num_heads // config.num_kv_heads
    shape = b.ints([0, config.num_kv_heads, group, -1, config.head_dim], "grouped_heads_shape")
    return b.node("Reshape", [q, shape], f"{name}.group_heads")


def _project_heads(
    b: _Builder, x: str, layer: int, config: LlamaConfig, kind: GraphKind, rope: tuple[str, str]
) -> tuple[str, str, str]:
    """q, k (rotated) and v as [batch, heads, seq, head_dim]; k and v include the cache."""
    p = f"model.layers.{layer}.self_attn"
    hidden, head_dim = config.hidden_size, config.head_dim
    prefill = kind == "prefill"
    heads = {}
    for proj, count in (
        ("q", config.num_heads),
        ("k", config.num_kv_heads),
        ("v", config.num_kv_heads),
    ):
        y = b.linear(x, f"{p}.{proj}_proj.weight", (hidden, count * head_dim), f"{p}.{proj}_proj")
        y = b.node(
            "Reshape",
            [y, b.ints([0, 0, count, head_dim], f"{proj}_heads_shape")],
            f"{p}.{proj}_reshape",
        )
        # In prefill the new V (and the rotated K below) is the cache: name it as the output
        # (with an FP8 cache, its quantised copy is: `cache_write` below).
        out = f"present.{layer}.value" if prefill and proj == "v" and not b.kv_fp8 else ""
        heads[proj] = b.node("Transpose", [y], f"{p}.{proj}_transpose", out=out, perm=[0, 2, 1, 3])
    cos, sin = rope
    q = _rotary(b, heads["q"], cos, sin, head_dim // 2, f"{p}.q_rope")
    named = {part: "" if b.kv_fp8 else f"present.{layer}.{part}" for part in ("key", "value")}
    k = _rotary(
        b, heads["k"], cos, sin, head_dim // 2, f"{p}.k_rope", out=named["key"] if prefill else ""
    )
    v = heads["v"]
    if not prefill:
        # appended after the new rows exist, so a tensor-parallel split reaches the cache
        past = {part: cache_read(b, f"past.{layer}.{part}") for part in ("key", "value")}
        k = b.node("Concat", [past["key"], k], f"{p}.k_cache", out=named["key"], axis=2)
        v = b.node("Concat", [past["value"], v], f"{p}.v_cache", out=named["value"], axis=2)
    if b.kv_fp8:
        cache_write(b, k, f"present.{layer}.key")
        cache_write(b, v, f"present.{layer}.value")
    return q, k, v


def _attention(
    b: _Builder,
    x: str,
    layer: int,
    config: LlamaConfig,
    kind: GraphKind,
    rope: tuple[str, str],
    mask: str | None,
) -> str:
    p = f"model.layers.{layer}.self_attn"
    q, k, v = _project_heads(b, x, layer, config, kind, rope)
    # Grouped-query attention by broadcasting: q [b, kv, g, S, d], k and v [b, kv, 1, T, d].
    q = _group_heads(b, q, config, p)
    axis_2 = b.ints([2], "axis_2")
    k = b.node("Unsqueeze", [k, axis_2], f"{p}.k_group_axis")
    v = b.node("Unsqueeze", [v, axis_2], f"{p}.v_group_axis")
    k_t = b.node("Transpose", [k], f"{p}.k_transpose_for_scores", perm=[0, 1, 2, 4, 3])
    scores = b.node("MatMul", [q, k_t], f"{p}.qk")
    scale = b.scalar(1.0 / math.sqrt(config.head_dim), "attn_scale")
    scores = b.node("Mul", [scores, scale], f"{p}.scale")
    if mask is not None:
        scores = b.node("Add", [scores, mask], f"{p}.mask")
    low_precision = b.dtype.onnx_type != TensorProto.FLOAT
    if low_precision:
        scores = b.cast(scores, TensorProto.FLOAT, f"{p}.softmax_cast_in")
    probs = b.node("Softmax", [scores], f"{p}.softmax", axis=-1)
    if low_precision:
        probs = b.cast(probs, b.dtype.onnx_type, f"{p}.softmax_cast_out")
    context = b.node("MatMul", [probs, v], f"{p}.pv")  # [b, kv, g, S, d]
    heads_shape = b.ints([0, config.num_heads, -1, config.head_dim], "heads_shape")
    context = b.node("Reshape", [context, heads_shape], f"{p}.ungroup_heads")
    context = b.node("Transpose", [context], f"{p}.context_transpose", perm=[0, 2, 1, 3])
    hidden = config.hidden_size
    merged = b.ints([0, 0, hidden], "hidden_shape")
    context = b.node("Reshape", [context, merged], f"{p}.merge_heads")
    return b.linear(context, f"{p}.o_proj.weight", (hidden, hidden), f"{p}.o_proj")


def _mlp(b: _Builder, x: str, layer: int, config: LlamaConfig) -> str:
    p = f"model.layers.{layer}.mlp"
    hidden, inner = config.hidden_size, config.intermediate_size
    gate = b.linear(x, f"{p}.gate_proj.weight", (hidden, inner), f"{p}.gate_proj")
    up = b.linear(x, f"{p}.up_proj.weight", (hidden, inner), f"{p}.up_proj")
    # SiLU(g) = g * sigmoid(g), spelled out in standard ops.
    sigmoid = b.node("Sigmoid", [gate], f"{p}.sigmoid")
    silu = b.node("Mul", [gate, sigmoid], f"{p}.silu")
    gated = b.node("Mul", [silu, up], f"{p}.gate_mul_up")
    return b.linear(gated, f"{p}.down_proj.weight", (inner, hidden), f"{p}.down_proj")


def _causal_mask(b: _Builder) -> str:
    """Additive [seq, seq] mask: 0 where key <= query, -inf above the diagonal."""
    shape = b.node("Shape", ["input_ids"], "mask.shape")
    seq = b.node("Gather", [shape, b.ints(1, "index_1")], "mask.seq", axis=0)
    positions = b.node("Range", [b.ints(0, "zero"), seq, b.ints(1, "one")], "mask.range")
    query = b.node("Unsqueeze", [positions, b.ints([1], "axis_1")], "mask.query_positions")
    key = b.node("Unsqueeze", [positions, b.ints([0], "axis_0")], "mask.key_positions")
    allowed = b.node("GreaterOrEqual", [query, key], "mask.allowed")
    return b.node(
        "Where",
        [allowed, b.scalar(0.0, "zero_float"), b.scalar(-np.inf, "minus_inf")],
        "mask.additive",
    )


def build_graph(
    config: LlamaConfig,
    kind: GraphKind,
    *,
    dtype: str,
    weights: WeightMode,
    data_location: str,
    seed: int,
    opset: int,
    quant: str = "none",
) -> tuple[list, list, list[TensorProto]]:
    """Nodes, graph inputs/outputs and initializers of a Llama prefill or decode graph.

    Args:
        config: Model shape.
        kind: ``"prefill"`` or ``"decode"``.
        dtype: Key of :data:`DTYPES`.
        weights: ``"none"`` (external data that is never written) or ``"random"``.
        data_location: External data file name recorded in weightless initializers.
        seed: Seed of random weights.
        opset: ONNX opset; 23 and above use the fused ``RMSNormalization``.
        quant: ``"none"``, or ``"fp8"`` for FP8 projections (`examples._llama_quant`).

    Returns:
        ``(nodes, (inputs, outputs), initializers)`` ready for ``helper.make_graph``.
    """
    b = _Builder(dtype, weights, data_location, seed, opset, quant)
    hidden, vocab = config.hidden_size, config.vocab_size
    embed = b.weight("model.embed_tokens.weight", (vocab, hidden))
    x = b.node("Gather", [embed, "input_ids"], "model.embed_tokens", axis=0)
    rope = rope_tables(b, config)
    mask = _causal_mask(b) if kind == "prefill" else None
    for layer in range(config.num_layers):
        p = f"model.layers.{layer}"
        norm_w = b.weight(f"{p}.input_layernorm.weight", (hidden,))
        normed = _rms_norm(b, x, norm_w, config.rms_norm_eps, f"{p}.input_layernorm")
        attn = _attention(b, normed, layer, config, kind, rope, mask)
        x = b.node("Add", [x, attn], f"{p}.attn_residual")
        norm_w = b.weight(f"{p}.post_attention_layernorm.weight", (hidden,))
        normed = _rms_norm(b, x, norm_w, config.rms_norm_eps, f"{p}.post_attention_layernorm")
        x = b.node("Add", [x, _mlp(b, normed, layer, config)], f"{p}.mlp_residual")
    norm_w = b.weight("model.norm.weight", (hidden,))
    x = _rms_norm(b, x, norm_w, config.rms_norm_eps, "model.norm")
    if config.tie_word_embeddings:
        head = b.node("Transpose", [embed], "lm_head.tied_transpose", perm=[1, 0])
    else:
        head = b.weight("lm_head.weight", (hidden, vocab), fan_in=hidden)
    b.node("MatMul", [x, head], "lm_head", out="logits")
    kv_type = TensorProto.FLOAT8E4M3FN if b.kv_fp8 else b.dtype.onnx_type
    inputs, outputs = _io(config, kind, b.dtype.onnx_type, kv_type)
    return [*b.constant_nodes, *b.nodes], (inputs, outputs), b.initializers


def _io(config: LlamaConfig, kind: GraphKind, elem_type: int, kv_type: int) -> tuple[list, list]:
    seq = "seq" if kind == "prefill" else 1
    total = "seq" if kind == "prefill" else "past+1"
    kv = [config.num_kv_heads, config.head_dim]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", seq]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", seq]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", elem_type, ["batch", seq, config.vocab_size])
    ]
    for layer in range(config.num_layers):
        for part in ("key", "value"):
            if kind == "decode":
                inputs.append(
                    helper.make_tensor_value_info(
                        f"past.{layer}.{part}", kv_type, ["batch", kv[0], "past", kv[1]]
                    )
                )
            outputs.append(
                helper.make_tensor_value_info(
                    f"present.{layer}.{part}", kv_type, ["batch", kv[0], total, kv[1]]
                )
            )
    return inputs, outputs
