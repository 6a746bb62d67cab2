"""Softmax, LogSoftmax, Hardmax (opset < 13 "coerce to 2-D" vs 13+ single-axis) and Dropout."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from partitioner.executor.kernels.nn_common import to_compute
from partitioner.executor.registry import kernel

__all__ = [
    "softmax",
    "softmax_v1",
    "log_softmax",
    "log_softmax_v1",
    "hardmax",
    "hardmax_v1",
    "dropout",
    "dropout_v10",
    "dropout_v1",
]


def _row_max(x: np.ndarray, axis: int) -> np.ndarray:
    # fmax.reduce is ~1.6x faster than max; a NaN still poisons its row through the sum below
    return np.fmax.reduce(x, axis=axis, keepdims=True)


def _row_sum(x: np.ndarray, axis: int) -> np.ndarray:
    if axis in (-1, x.ndim - 1):  # einsum's last-axis sum is ~3x faster than np.sum here
        return np.einsum("...i->...", x)[..., None]
    return np.sum(x, axis=axis, keepdims=True)


def _softmax_axis(x: np.ndarray, axis: int) -> np.ndarray:
    e = x - _row_max(x, axis)
    np.exp(e, out=e)
    e *= 1 / _row_sum(e, axis)  # one reciprocal per row, then multiplies
    return e


def _log_softmax_axis(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - _row_max(x, axis)
    shifted -= np.log(_row_sum(np.exp(shifted), axis))
    return shifted


def _hardmax_axis(x: np.ndarray, axis: int) -> np.ndarray:
    # one-hot of the first maximum along the axis
    first = np.expand_dims(np.argmax(x, axis=axis), axis)
    out = np.zeros(x.shape, dtype=x.dtype)
    np.put_along_axis(out, first, 1, axis=axis)
    return out


def _coerced_2d(
    fn: Callable[[np.ndarray, int], np.ndarray], x: np.ndarray, axis: int
) -> np.ndarray:
    """Opset 1-12 semantics: flatten to (prod(shape[:axis]), prod(shape[axis:])), apply on dim 1."""
    axis = axis + x.ndim if axis < 0 else axis
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    return fn(x.reshape(rows, -1), 1).reshape(x.shape)


def _apply(
    fn: Callable[[np.ndarray, int], np.ndarray], x: np.ndarray, axis: int, coerce: bool
) -> tuple[np.ndarray]:
    xc = to_compute(x)
    y = _coerced_2d(fn, xc, axis) if coerce else fn(xc, axis)
    return (y.astype(x.dtype, copy=False),)


@kernel("Softmax", since=13)
def softmax(x: np.ndarray, *, axis: int = -1) -> tuple[np.ndarray]:
    """exp(x - max) / sum along ``axis``."""
    return _apply(_softmax_axis, x, axis, coerce=False)


@kernel("Softmax", since=1)
def softmax_v1(x: np.ndarray, *, axis: int = 1) -> tuple[np.ndarray]:
    return _apply(_softmax_axis, x, axis, coerce=True)


@kernel("LogSoftmax", since=13)
def log_softmax(x: np.ndarray, *, axis: int = -1) -> tuple[np.ndarray]:
    return _apply(_log_softmax_axis, x, axis, coerce=False)


@kernel("LogSoftmax", since=1)
def log_softmax_v1(x: np.ndarray, *, axis: int = 1) -> tuple[np.ndarray]:
    return _apply(_log_softmax_axis, x, axis, coerce=True)


@kernel("Hardmax", since=13)
def hardmax(x: np.ndarray, *, axis: int = -1) -> tuple[np.ndarray]:
    return (_hardmax_axis(np.asarray(x), axis),)


@kernel("Hardmax", since=1)
def hardmax_v1(x: np.ndarray, *, axis: int = 1) -> tuple[np.ndarray]:
    return (_coerced_2d(_hardmax_axis, np.asarray(x), axis),)


def _dropout(
    x: np.ndarray, ratio: float, training: bool, seed: int | None
) -> tuple[np.ndarray, np.ndarray]:
    if not training or ratio == 0:
        return x, np.ones(x.shape, dtype=bool)
    # RandomState(seed).uniform matches the ONNX test-suite's reference draw for a given seed
    keep = np.random.RandomState(seed).uniform(0.0, 1.0, x.shape) >= ratio
    scaled = to_compute(x) * keep * (1.0 / (1.0 - ratio))
    return scaled.astype(x.dtype, copy=False), keep


@kernel("Dropout", since=12)
def dropout(
    data: np.ndarray,
    ratio: np.ndarray | None = None,
    training_mode: np.ndarray | None = None,
    *,
    seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Identity + all-true mask at inference; with ``training_mode`` a seeded Bernoulli mask."""
    drop = 0.5 if ratio is None else float(np.asarray(ratio))
    training = training_mode is not None and bool(np.asarray(training_mode))
    return _dropout(np.asarray(data), drop, training, seed)


@kernel("Dropout", since=10)
def dropout_v10(data: np.ndarray, *, ratio: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Opsets 10-11 are inference-only in this executor: identity and an all-true bool mask."""
    return _dropout(np.asarray(data), ratio, False, None)


@kernel("Dropout", since=1)
def dropout_v1(
    data: np.ndarray,
    *,
    ratio: float = 0.5,
    is_test: int = 0,
    consumed_inputs: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Opsets 1-9: identity, and the mask has the data's type (all ones)."""
    x = np.asarray(data)
    return x, np.ones(x.shape, dtype=x.dtype)
