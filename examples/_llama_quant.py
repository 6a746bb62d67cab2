"""FP8 projections for :mod:`examples.llama` (``--quant fp8``), in ONNX's QDQ form.

This is the recipe MLPerf's FP8 Llama submissions and TensorRT-LLM's FP8 checkpoints
use, written as a QDQ graph, which is how TensorRT and onnxruntime take quantised
models:

* each projection weight (q, k, v, o, gate, up, down) is stored as
  ``float8e4m3fn`` with one per-tensor scale (``<weight>_scale``, the model dtype),
  and a ``DequantizeLinear`` turns it back into the model dtype for its ``MatMul``;
* each projection's input is quantised with a static per-tensor scale
  (``QuantizeLinear`` then ``DequantizeLinear``), so a runtime that fuses the pair
  into the GEMM runs it on FP8 tensor cores; projections reading the same input
  share one pair;
* the embedding, the norms and the LM head stay in the model dtype, as in those
  checkpoints;
* ``fp8-kv`` also keeps the KV cache in FP8 (MLPerf's FP8 entries did): ``past`` is
  float8e4m3fn, dequantised before the new rows are appended (Concat has no float8
  types), and ``present`` is the appended cache quantised back.

Random weights are quantised from the same values the plain model draws (scale
``max|w| / 448``); weightless ones declare FP8 external data and a scale of 1. The
activation scale is 1: the random model's activations are O(1), well inside FP8's
range, and a real checkpoint carries calibrated scales (the value does not change
any cost).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import ml_dtypes
import numpy as np
from onnx import TensorProto, numpy_helper

if TYPE_CHECKING:
    from examples._llama_graph import _Builder

__all__ = ["QUANT_MODES", "FP8_MIN_OPSET", "fp8_matmul", "cache_read", "cache_write"]

QUANT_MODES = ("none", "fp8", "fp8-kv")
FP8_MIN_OPSET = 19
"""QuantizeLinear and DequantizeLinear take float8 types from opset 19."""
FP8_MAX = 448.0
"""The largest finite float8e4m3fn value."""


def _fp8_weight(b: _Builder, name: str, shape: tuple[int, int], fan_in: int) -> str:
    """The FP8 initializer and its scale; the dequantised weight's name."""
    tensor = TensorProto()
    tensor.name, tensor.data_type = name, TensorProto.FLOAT8E4M3FN
    tensor.dims.extend(shape)
    if b.weights == "none":
        b.external(tensor, math.prod(shape))
        scale = 1.0
    else:
        values = b.rng.standard_normal(shape) / math.sqrt(fan_in)
        scale = float(np.abs(values).max()) / FP8_MAX
        tensor.raw_data = (values / scale).astype(ml_dtypes.float8_e4m3fn).tobytes()
    b.initializers.append(tensor)
    scale_name = f"{name}_scale"
    b.initializers.append(numpy_helper.from_array(np.array(scale, dtype=b.numpy_type), scale_name))
    return b.node("DequantizeLinear", [name, scale_name], f"{name}.dequantize")


def _fp8_activation(b: _Builder, x: str) -> str:
    """``x`` quantised to FP8 and back, once per tensor."""
    if x not in b.quantized:
        scale, zero = b.scalar(1.0, "activation_scale"), _fp8_zero(b)
        q = b.node("QuantizeLinear", [x, scale, zero], f"{x}.quantize")
        b.quantized[x] = b.node("DequantizeLinear", [q, scale, zero], f"{x}.dequantize")
    return b.quantized[x]


def fp8_matmul(b: _Builder, x: str, weight: str, shape: tuple[int, int], fan_in: int,
               name: str) -> str:  # fmt: skip
    """``x @ weight`` with both operands FP8 in QDQ form; the MatMul's output name."""
    w = _fp8_weight(b, weight, shape, fan_in)
    return b.node("MatMul", [_fp8_activation(b, x), w], name)


def _fp8_zero(b: _Builder) -> str:
    """The shared float8 zero point: it gives QuantizeLinear its output type."""
    return b.const(np.array(0, dtype=ml_dtypes.float8_e4m3fn), "fp8_zero")


def _kv_scale(b: _Builder) -> tuple[str, str]:
    return b.scalar(1.0, "kv_scale"), _fp8_zero(b)


def cache_read(b: _Builder, past: str) -> str:
    """The cache input as the model computes with it: dequantised from FP8 with ``fp8-kv``."""
    if not b.kv_fp8:
        return past
    scale, zero = _kv_scale(b)
    return b.node("DequantizeLinear", [past, scale, zero], f"{past}.dequantize")


def cache_write(b: _Builder, value: str, present: str) -> None:
    """The appended cache quantised to FP8 as the ``present`` output (``fp8-kv``)."""
    scale, zero = _kv_scale(b)
    b.node("QuantizeLinear", [value, scale, zero], f"{present}.quantize", out=present)
