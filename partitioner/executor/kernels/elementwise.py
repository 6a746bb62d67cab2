"""Element-wise math: unary functions, broadcasting arithmetic, variadic Min/Max/Sum/Mean, Clip.

Results keep the input dtype. Formats NumPy cannot compute in natively
(bfloat16, float8) are computed in float32 and rounded once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.polynomial import chebyshev

from partitioner.executor.kernels._common import ML_FLOAT_DTYPES
from partitioner.executor.registry import kernel

__all__ = ["erf"]

Unary = Callable[[np.ndarray], np.ndarray]


def _in_native(fn: Unary, x: np.ndarray) -> np.ndarray:
    if x.dtype in ML_FLOAT_DTYPES:
        return fn(x.astype(np.float32)).astype(x.dtype)
    return np.asarray(fn(x)).astype(x.dtype, copy=False)


def _register_unary(op_type: str, fn: Unary, since: int = 1) -> None:
    # Opset-1 versions of several ops carry `consumed_inputs`, a legacy
    # in-place hint with no effect on the result.
    def unary_kernel(x: np.ndarray, *, consumed_inputs: Any = None) -> tuple[np.ndarray]:
        return (_in_native(fn, x),)

    unary_kernel.__name__ = f"{op_type.lower()}_kernel"
    kernel(op_type, since=since)(unary_kernel)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of -|x| never overflows; the two branches are the same function.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _round_half_even(x: np.ndarray) -> np.ndarray:
    return np.rint(x)


def _reciprocal(x: np.ndarray) -> np.ndarray:
    return np.reciprocal(x) if x.dtype.kind == "f" else (1 / x)


# erf on [0, 6] as Chebyshev series fitted once at import to math.erf (double
# precision, ~4e-15 relative); the first piece fits erf(x)/x so tiny x keep
# their relative accuracy. |x| >= 6 gives ±1 in double.
_ERF_EDGES = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)
_ERF_DEGREE = 20


def _erf_piece(lo: float, hi: float, divide_by_x: bool) -> np.ndarray:
    def target(t: np.ndarray) -> np.ndarray:
        xs = lo + (t + 1) * (hi - lo) / 2
        return np.array([math.erf(v) / v if divide_by_x else math.erf(v) for v in xs])

    return chebyshev.chebinterpolate(target, _ERF_DEGREE)


_ERF_PIECES = tuple(
    (lo, hi, _erf_piece(lo, hi, divide_by_x=(i == 0)))
    for i, (lo, hi) in enumerate(zip(_ERF_EDGES[:-1], _ERF_EDGES[1:], strict=True))
)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, vectorised, in float64 (about 4e-15 relative error)."""
    x64 = np.asarray(x, dtype=np.float64)
    ax = np.abs(x64)
    out = np.ones_like(ax)
    for i, (lo, hi, coef) in enumerate(_ERF_PIECES):
        mask = (ax >= lo) & (ax < hi)
        v = ax[mask]
        y = chebyshev.chebval((v - lo) * (2 / (hi - lo)) - 1, coef)
        out[mask] = y * v if i == 0 else y
    out[np.isnan(ax)] = np.nan
    return np.copysign(out, x64)


_UNARY: dict[str, Unary] = {
    "Abs": np.abs,
    "Neg": np.negative,
    "Sqrt": np.sqrt,
    "Reciprocal": _reciprocal,
    "Exp": np.exp,
    "Log": np.log,
    "Sin": np.sin,
    "Cos": np.cos,
    "Tan": np.tan,
    "Asin": np.arcsin,
    "Acos": np.arccos,
    "Atan": np.arctan,
    "Sinh": np.sinh,
    "Cosh": np.cosh,
    "Tanh": np.tanh,
    "Asinh": np.arcsinh,
    "Acosh": np.arccosh,
    "Atanh": np.arctanh,
    "Sigmoid": _sigmoid,
    "Erf": erf,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Round": _round_half_even,
    "Sign": np.sign,
}

for _op, _fn in _UNARY.items():
    _register_unary(_op, _fn)


def _binary(fn: Callable[[Any, Any], Any], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype in ML_FLOAT_DTYPES:
        return np.asarray(fn(a.astype(np.float32), b.astype(np.float32))).astype(a.dtype)
    return np.asarray(fn(a, b)).astype(a.dtype, copy=False)


@kernel("Add", since=7)
def add(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
    return (_binary(np.add, a, b),)


@kernel("Sub", since=7)
def sub(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
    return (_binary(np.subtract, a, b),)


@kernel("Mul", since=7)
def mul(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
    return (_binary(np.multiply, a, b),)


def _int_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division truncating toward zero (C semantics, as onnxruntime)."""
    quotient = np.floor_divide(a, b)
    if a.dtype.kind == "i":
        inexact = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
        quotient = quotient + inexact.astype(quotient.dtype)
    return quotient


@kernel("Div", since=7)
def div(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
    if a.dtype.kind in "iu":
        return (_int_divide(a, b).astype(a.dtype, copy=False),)
    return (_binary(np.divide, a, b),)


@kernel("Mod", since=10)
def mod(a: np.ndarray, b: np.ndarray, *, fmod: int = 0) -> tuple[np.ndarray]:
    # fmod=0: the remainder takes the divisor's sign (Python %); fmod=1: the dividend's (C fmod).
    return (_binary(np.fmod if fmod else np.mod, a, b),)


@kernel("Pow", since=7)
def power(base: np.ndarray, exponent: np.ndarray) -> tuple[np.ndarray]:
    if exponent.size == 1 and base.dtype.kind == "f":
        # x**2 and x**3 by multiplication, as onnxruntime does: exporters write
        # LayerNorm and GELU with them, and powf is ~10x slower than a multiply.
        power_of = float(exponent.reshape(-1)[0])
        if power_of == 2.0:
            return (base * base,)
        if power_of == 3.0:
            return (base * base * base,)
    if base.dtype.kind in "iu":
        if exponent.dtype.kind in "iu" and not np.any(exponent < 0):
            return (np.power(base, exponent.astype(base.dtype)),)
        return (np.power(base.astype(np.float64), exponent).astype(base.dtype),)
    if exponent.dtype != base.dtype:
        exponent = exponent.astype(np.float64 if base.dtype == np.float64 else np.float32)
        if base.dtype in ML_FLOAT_DTYPES or base.dtype == np.float16:
            return (np.power(base.astype(np.float32), exponent).astype(base.dtype),)
    return (_binary(np.power, base, exponent),)


def _variadic(fn: Callable[[Any, Any], Any], inputs: tuple[np.ndarray, ...]) -> np.ndarray:
    dtype = inputs[0].dtype
    if dtype in ML_FLOAT_DTYPES:
        result = functools.reduce(fn, (x.astype(np.float32) for x in inputs))
        return np.asarray(result).astype(dtype)
    return np.asarray(functools.reduce(fn, inputs)).astype(dtype, copy=False)


@kernel("Max", since=1)
def maximum(*inputs: np.ndarray, consumed_inputs: Any = None) -> tuple[np.ndarray]:
    return (_variadic(np.maximum, inputs),)


@kernel("Min", since=1)
def minimum(*inputs: np.ndarray, consumed_inputs: Any = None) -> tuple[np.ndarray]:
    return (_variadic(np.minimum, inputs),)


@kernel("Sum", since=1)
def sum_(*inputs: np.ndarray, consumed_inputs: Any = None) -> tuple[np.ndarray]:
    return (_variadic(np.add, inputs),)


@kernel("Mean", since=1)
def mean(*inputs: np.ndarray, consumed_inputs: Any = None) -> tuple[np.ndarray]:
    dtype = inputs[0].dtype
    total = _variadic(np.add, inputs)
    if dtype in ML_FLOAT_DTYPES:
        return ((total.astype(np.float32) / len(inputs)).astype(dtype),)
    return (np.asarray(total / len(inputs)).astype(dtype, copy=False),)


@kernel("Clip", since=6)
def clip_6(
    x: np.ndarray, *, min: float = -3.4028234663852886e38, max: float = 3.4028234663852886e38
) -> tuple[np.ndarray]:  # noqa: A002
    return (np.clip(x, min, max).astype(x.dtype, copy=False),)


@kernel("Clip", since=11)
def clip(
    x: np.ndarray, low: np.ndarray | None = None, high: np.ndarray | None = None
) -> tuple[np.ndarray]:
    if low is None and high is None:
        return (x,)
    if x.dtype in ML_FLOAT_DTYPES:
        lo = None if low is None else low.astype(np.float32)
        hi = None if high is None else high.astype(np.float32)
        return (np.clip(x.astype(np.float32), lo, hi).astype(x.dtype),)
    return (np.clip(x, low, high).astype(x.dtype, copy=False),)
