"""Comparisons, boolean logic, bit operations, Where, IsNaN and IsInf."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from partitioner.executor.kernels._common import ML_FLOAT_DTYPES
from partitioner.executor.registry import kernel

__all__: list[str] = []


def _comparable(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) if x.dtype in ML_FLOAT_DTYPES else x


def _register_compare(op_type: str, fn: Callable[[Any, Any], Any], since: int) -> None:
    def compare_kernel(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
        return (np.asarray(fn(_comparable(a), _comparable(b)), dtype=bool),)

    compare_kernel.__name__ = f"{op_type.lower()}_kernel"
    kernel(op_type, since=since)(compare_kernel)


for _op, _fn, _since in (
    ("Equal", np.equal, 7),
    ("Less", np.less, 7),
    ("LessOrEqual", np.less_equal, 12),
    ("Greater", np.greater, 7),
    ("GreaterOrEqual", np.greater_equal, 12),
    ("And", np.logical_and, 7),
    ("Or", np.logical_or, 7),
    ("Xor", np.logical_xor, 7),
):
    _register_compare(_op, _fn, _since)


@kernel("Not", since=1)
def logical_not(x: np.ndarray) -> tuple[np.ndarray]:
    return (np.logical_not(x),)


def _register_bitwise(op_type: str, fn: Callable[[Any, Any], Any]) -> None:
    def bitwise_kernel(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
        return (np.asarray(fn(a, b)).astype(a.dtype, copy=False),)

    bitwise_kernel.__name__ = f"{op_type.lower()}_kernel"
    kernel(op_type, since=18)(bitwise_kernel)


for _op, _fn in (
    ("BitwiseAnd", np.bitwise_and),
    ("BitwiseOr", np.bitwise_or),
    ("BitwiseXor", np.bitwise_xor),
):
    _register_bitwise(_op, _fn)


@kernel("BitwiseNot", since=18)
def bitwise_not(x: np.ndarray) -> tuple[np.ndarray]:
    return (np.invert(x),)


@kernel("BitShift", since=11)
def bit_shift(x: np.ndarray, shift: np.ndarray, *, direction: str) -> tuple[np.ndarray]:
    shift = shift.astype(x.dtype, copy=False)
    if direction == "LEFT":
        return (np.left_shift(x, shift).astype(x.dtype, copy=False),)
    if direction == "RIGHT":
        return (np.right_shift(x, shift).astype(x.dtype, copy=False),)
    raise ValueError(f"BitShift direction must be LEFT or RIGHT, got {direction!r}")


@kernel("Where", since=9)
def where(condition: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray]:
    return (np.where(condition, x, y).astype(x.dtype, copy=False),)


@kernel("IsNaN", since=9)
def is_nan(x: np.ndarray) -> tuple[np.ndarray]:
    return (np.isnan(_comparable(x)),)


@kernel("IsInf", since=10)
def is_inf(
    x: np.ndarray, *, detect_negative: int = 1, detect_positive: int = 1
) -> tuple[np.ndarray]:
    x = _comparable(x)
    if detect_negative and detect_positive:
        return (np.isinf(x),)
    if detect_negative:
        return (np.isneginf(x),)
    if detect_positive:
        return (np.isposinf(x),)
    return (np.zeros(x.shape, dtype=bool),)
