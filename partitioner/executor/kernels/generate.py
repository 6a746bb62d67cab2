"""Ops that make tensors: Constant, ConstantOfShape, Range, EyeLike, OneHot, Trilu, windows."""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto, helper

from partitioner.executor.kernels._common import int_list, normalize_axis, scalar
from partitioner.executor.registry import kernel

__all__: list[str] = []


@kernel("Constant", since=1)
def constant(
    *,
    value: np.ndarray | None = None,
    value_float: float | None = None,
    value_floats: tuple[float, ...] | None = None,
    value_int: int | None = None,
    value_ints: tuple[int, ...] | None = None,
    value_string: str | None = None,
    value_strings: tuple[str, ...] | None = None,
    sparse_value: np.ndarray | None = None,
) -> tuple[np.ndarray]:
    if value is not None:
        return (value,)
    if sparse_value is not None:
        return (sparse_value,)
    if value_float is not None:
        return (np.array(value_float, dtype=np.float32),)
    if value_floats is not None:
        return (np.array(value_floats, dtype=np.float32),)
    if value_int is not None:
        return (np.array(value_int, dtype=np.int64),)
    if value_ints is not None:
        return (np.array(value_ints, dtype=np.int64),)
    if value_string is not None:
        return (np.array(value_string, dtype=object),)
    if value_strings is not None:
        return (np.array(value_strings, dtype=object),)
    raise ValueError("Constant has none of its value attributes")


@kernel("ConstantOfShape", since=9)
def constant_of_shape(shape: np.ndarray, *, value: np.ndarray | None = None) -> tuple[np.ndarray]:
    fill = np.zeros(1, dtype=np.float32) if value is None else value
    return (np.full(int_list(shape), fill.reshape(-1)[0], dtype=fill.dtype),)


_STASH_DTYPES = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64}


@kernel("Range", since=11)
def range_(
    start: np.ndarray, limit: np.ndarray, delta: np.ndarray, *, stash_type: int = 1
) -> tuple[np.ndarray]:
    dtype = start.dtype
    if dtype.kind in "iu":
        first, stop, step = int(scalar(start)), int(scalar(limit)), int(scalar(delta))
        count = max(-(-(stop - first) // step), 0)
        return (first + np.arange(count, dtype=dtype) * dtype.type(step),)
    work = np.dtype(_STASH_DTYPES.get(stash_type, np.float32)) if dtype.itemsize <= 2 else dtype
    first, stop, step = (work.type(float(scalar(v))) for v in (start, limit, delta))
    count = max(math.ceil((float(stop) - float(first)) / float(step)), 0)
    # output[i] = start + i * delta, in the working precision (as the spec writes it).
    return ((first + np.arange(count, dtype=work) * step).astype(dtype),)


@kernel("EyeLike", since=9)
def eye_like(x: np.ndarray, *, dtype: int | None = None, k: int = 0) -> tuple[np.ndarray]:
    out_dtype = x.dtype if not dtype else helper.tensor_dtype_to_np_dtype(dtype)
    rows, cols = x.shape
    return (np.eye(rows, cols, k=k, dtype=out_dtype),)


@kernel("OneHot", since=9)
def one_hot(
    indices: np.ndarray, depth: np.ndarray, values: np.ndarray, *, axis: int = -1
) -> tuple[np.ndarray]:
    size = int(np.asarray(depth).reshape(-1)[0])
    idx = indices.astype(np.int64)
    idx = np.where(idx < 0, idx + size, idx)  # negative indices count from the end
    axis = normalize_axis(axis, indices.ndim + 1)
    hot = np.expand_dims(idx, axis) == np.arange(size).reshape(
        [size if i == axis else 1 for i in range(indices.ndim + 1)]
    )
    off, on = values.reshape(-1)[0], values.reshape(-1)[1]
    return (np.where(hot, on, off).astype(values.dtype, copy=False),)


@kernel("Trilu", since=14)
def trilu(x: np.ndarray, k: np.ndarray | None = None, *, upper: int = 1) -> tuple[np.ndarray]:
    diagonal = 0 if k is None else int(np.asarray(k).reshape(-1)[0])
    return ((np.triu if upper else np.tril)(x, diagonal),)


def _window_positions(size: np.ndarray, periodic: int) -> tuple[np.ndarray, int]:
    n = int(np.asarray(size).reshape(-1)[0])
    return np.arange(n, dtype=np.float64), (n if periodic else n - 1)


def _register_window(op_type: str, cosine_terms: tuple[float, ...]) -> None:
    # w[n] = sum_k (-1)^k a_k cos(2 pi k n / N): generalised cosine windows.
    def window_kernel(
        size: np.ndarray, *, periodic: int = 1, output_datatype: int = TensorProto.FLOAT
    ) -> tuple[np.ndarray]:
        positions, period = _window_positions(size, periodic)
        result = np.zeros_like(positions)
        for k, coefficient in enumerate(cosine_terms):
            result += (-1) ** k * coefficient * np.cos(2 * np.pi * k * positions / period)
        return (result.astype(helper.tensor_dtype_to_np_dtype(output_datatype)),)

    window_kernel.__name__ = f"{op_type.lower()}_kernel"
    kernel(op_type, since=17)(window_kernel)


_register_window("HannWindow", (0.5, 0.5))
_register_window("HammingWindow", (25 / 46, 21 / 46))
_register_window("BlackmanWindow", (0.42, 0.5, 0.08))
