"""Linear (de)quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
QLinearMatMul. Per-tensor, per-axis and blocked scales; integer targets from
2 to 32 bits and float8/float4 targets (through `cast_array`)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
from onnx import helper

from partitioner.executor.kernels._common import ML_FLOAT_DTYPES, is_float, normalize_axis
from partitioner.executor.kernels.cast import cast_array
from partitioner.executor.registry import kernel

__all__: list[str] = []


def _expand_param(param: np.ndarray, x: np.ndarray, axis: int, block_size: int) -> np.ndarray:
    """A scale/zero point broadcastable against ``x`` (per tensor, per axis or blocked)."""
    if param.size == 1:
        return param.reshape(())
    axis = normalize_axis(axis, x.ndim)
    if block_size > 0:
        repeated = np.repeat(param, block_size, axis=axis)
        return np.take(repeated, np.arange(x.shape[axis]), axis=axis)
    shape = [1] * x.ndim
    shape[axis] = param.size
    return param.reshape(shape)


def _int_range(dtype: np.dtype) -> tuple[int, int]:
    info = ml_dtypes.iinfo(dtype)
    return int(info.min), int(info.max)


def _work_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype in ML_FLOAT_DTYPES else np.dtype(dtype)


@kernel("QuantizeLinear", since=10)
def quantize_linear(
    x: np.ndarray,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray | None = None,
    *,
    axis: int = 1,
    saturate: int = 1,
    block_size: int = 0,
    output_dtype: int = 0,
    precision: int = 0,
) -> tuple[np.ndarray]:
    if output_dtype:
        target = np.dtype(helper.tensor_dtype_to_np_dtype(output_dtype))
    else:
        target = np.dtype(np.uint8) if y_zero_point is None else y_zero_point.dtype
    precise = helper.tensor_dtype_to_np_dtype(precision) if precision else y_scale.dtype
    work = _work_dtype(precise)
    scale = _expand_param(y_scale, x, axis, block_size).astype(work)
    scaled = x.astype(work) / scale
    if precise in ML_FLOAT_DTYPES:  # the division happens in that format
        scaled = scaled.astype(precise).astype(work)
    zero = None if y_zero_point is None else _expand_param(y_zero_point, x, axis, block_size)
    if is_float(target):
        if zero is not None:
            scaled = scaled + zero.astype(work)
        return (cast_array(scaled, target, saturate=saturate),)
    low, high = _int_range(target)
    # Round half to even, then shift and clamp in a wide type.
    quantized = np.rint(scaled).astype(np.float64)
    if zero is not None:
        quantized = quantized + zero.astype(np.float64)
    return (np.clip(quantized, low, high).astype(target),)


@kernel("DequantizeLinear", since=10)
def dequantize_linear(
    x: np.ndarray,
    x_scale: np.ndarray,
    x_zero_point: np.ndarray | None = None,
    *,
    axis: int = 1,
    block_size: int = 0,
    output_dtype: int = 0,
) -> tuple[np.ndarray]:
    target = (
        np.dtype(helper.tensor_dtype_to_np_dtype(output_dtype)) if output_dtype else x_scale.dtype
    )
    work = _work_dtype(target)
    if is_float(x.dtype):
        shifted = x.astype(work)
        if x_zero_point is not None:
            zero = _expand_param(x_zero_point, x, axis, block_size)
            shifted = shifted - zero.astype(work)
    else:
        # Subtract in integers (exact), then convert.
        shifted = x.astype(np.int64)
        if x_zero_point is not None:
            shifted = shifted - _expand_param(x_zero_point, x, axis, block_size).astype(np.int64)
        shifted = shifted.astype(work)
    scale = _expand_param(x_scale, x, axis, block_size).astype(work)
    return ((shifted * scale).astype(target),)


@kernel("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    low, high = 0, 255
    x32 = x.astype(np.float32)
    top = np.float32(max(0.0, float(np.max(x32)))) if x.size else np.float32(0)
    bottom = np.float32(min(0.0, float(np.min(x32)))) if x.size else np.float32(0)
    span = top - bottom if top != bottom else np.float32(1)
    scale = np.float32(span / np.float32(high - low))
    zero = np.rint(np.clip(np.float32(low) - bottom / scale, low, high))
    y = np.clip(np.rint(x32 / scale) + zero, low, high).astype(np.uint8)
    return y, np.array(scale, dtype=x.dtype), np.array(zero, dtype=np.uint8)


def _row_param(param: np.ndarray) -> np.ndarray:
    """A per-row parameter of A (1-D of length M) as a column, so it broadcasts over rows."""
    return param.reshape(-1, 1) if param.ndim == 1 and param.size > 1 else param


@kernel("QLinearMatMul", since=10)
def qlinear_matmul(
    a: np.ndarray,
    a_scale: np.ndarray,
    a_zero_point: np.ndarray,
    b: np.ndarray,
    b_scale: np.ndarray,
    b_zero_point: np.ndarray,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray,
) -> tuple[np.ndarray]:
    left = a.astype(np.int32) - _row_param(a_zero_point).astype(np.int32)
    right = b.astype(np.int32) - b_zero_point.astype(np.int32)
    accumulated = np.matmul(left, right)
    multiplier = (
        _row_param(a_scale).astype(np.float32) * b_scale.astype(np.float32)
    ) / y_scale.astype(np.float32)
    low, high = _int_range(y_zero_point.dtype)
    y = np.rint(accumulated * multiplier) + y_zero_point.astype(np.float32)
    return (np.clip(y, low, high).astype(y_zero_point.dtype),)
