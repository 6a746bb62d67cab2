"""Activation kernels: Relu family, Gelu, Softplus/Softsign, Mish, Swish, SwiGLU, Hard*.

Each computes in float32 for float16/bfloat16 (see `nn_common.compute_dtype`) and returns
the input dtype. Sigmoid, Tanh and Erf are elementwise-math kernels and live elsewhere.
Branches are written as arithmetic on clipped halves (``np.clip`` with two finite-or-inf
bounds is several times faster than ``np.maximum`` or ``np.where`` in numpy 2).
"""

from __future__ import annotations

import numpy as np

from partitioner.executor.kernels.nn_common import as_str, erf, to_compute
from partitioner.executor.registry import kernel

__all__ = [
    "relu",
    "leaky_relu",
    "prelu",
    "elu",
    "selu",
    "celu",
    "gelu",
    "hard_sigmoid",
    "hard_swish",
    "softplus",
    "softsign",
    "thresholded_relu",
    "mish",
    "swish",
    "swiglu",
]

_SELU_ALPHA = 1.67326319217681884765625
_SELU_GAMMA = 1.05070102214813232421875


def _softplus(x: np.ndarray) -> np.ndarray:
    # log(1 + exp(x)) without overflow for large x
    return np.logaddexp(0, x)


def _positive(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, np.inf)


def _negative(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -np.inf, 0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow: e = exp(-|x|), numerator 1 (x >= 0) or e (x < 0)."""
    e = np.exp(-np.abs(x))
    non_negative = x >= 0
    return (e + non_negative * (1 - e)) / (1 + e)


@kernel("Relu", since=6)
def relu(x: np.ndarray) -> tuple[np.ndarray]:
    """max(x, 0); integer types (opset 14) stay integer."""
    if x.dtype.kind in "iu":
        return (np.maximum(x, np.zeros((), dtype=x.dtype)),)
    return (_positive(to_compute(x)).astype(x.dtype, copy=False),)


@kernel("LeakyRelu", since=6)
def leaky_relu(x: np.ndarray, *, alpha: float = 0.01) -> tuple[np.ndarray]:
    xc = to_compute(x)
    return ((_positive(xc) + alpha * _negative(xc)).astype(x.dtype, copy=False),)


@kernel("PRelu", since=6)
def prelu(x: np.ndarray, slope: np.ndarray) -> tuple[np.ndarray]:
    """x if x >= 0 else slope * x, ``slope`` broadcast unidirectionally to ``x``."""
    xc = to_compute(x)
    return ((_positive(xc) + to_compute(slope) * _negative(xc)).astype(x.dtype, copy=False),)


@kernel("Elu", since=6)
def elu(x: np.ndarray, *, alpha: float = 1.0) -> tuple[np.ndarray]:
    xc = to_compute(x)
    return ((_positive(xc) + alpha * np.expm1(_negative(xc))).astype(x.dtype, copy=False),)


@kernel("Selu", since=6)
def selu(
    x: np.ndarray, *, alpha: float = _SELU_ALPHA, gamma: float = _SELU_GAMMA
) -> tuple[np.ndarray]:
    xc = to_compute(x)
    y = gamma * (_positive(xc) + alpha * np.expm1(_negative(xc)))
    return (y.astype(x.dtype, copy=False),)


@kernel("Celu", since=12)
def celu(x: np.ndarray, *, alpha: float = 1.0) -> tuple[np.ndarray]:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    xc = to_compute(x)
    y = _positive(xc) + _negative(alpha * np.expm1(_negative(xc) / alpha))
    return (y.astype(x.dtype, copy=False),)


@kernel("Gelu", since=20)
def gelu(x: np.ndarray, *, approximate: str = "none") -> tuple[np.ndarray]:
    """x * Phi(x); ``approximate='tanh'`` uses 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))."""
    xc = to_compute(x)
    if as_str(approximate) == "tanh":
        # sqrt(2/pi) * (x + 0.044715 x^3), built in place (x**3 via np.power is ~100x slower)
        root = float(np.sqrt(2 / np.pi))
        y = xc * xc
        y *= 0.044715 * root
        y += root
        y *= xc
        np.tanh(y, out=y)
    else:
        y = erf(xc * float(1 / np.sqrt(2)))
    y += 1
    y *= xc
    y *= 0.5
    return (y.astype(x.dtype, copy=False),)


@kernel("HardSigmoid", since=6)
def hard_sigmoid(x: np.ndarray, *, alpha: float = 0.2, beta: float = 0.5) -> tuple[np.ndarray]:
    xc = to_compute(x)
    return (np.clip(alpha * xc + beta, 0, 1).astype(x.dtype, copy=False),)


@kernel("HardSwish", since=14)
def hard_swish(x: np.ndarray) -> tuple[np.ndarray]:
    """x * HardSigmoid(x) with alpha = 1/6, beta = 0.5."""
    xc = to_compute(x)
    return ((xc * np.clip(xc / 6 + 0.5, 0, 1)).astype(x.dtype, copy=False),)


@kernel("Softplus", since=1)
def softplus(x: np.ndarray) -> tuple[np.ndarray]:
    return (_softplus(to_compute(x)).astype(x.dtype, copy=False),)


@kernel("Softsign", since=1)
def softsign(x: np.ndarray) -> tuple[np.ndarray]:
    xc = to_compute(x)
    return ((xc / (1 + np.abs(xc))).astype(x.dtype, copy=False),)


@kernel("ThresholdedRelu", since=10)
def thresholded_relu(x: np.ndarray, *, alpha: float = 1.0) -> tuple[np.ndarray]:
    xc = to_compute(x)
    return (np.where(xc > alpha, xc, 0).astype(x.dtype, copy=False),)


@kernel("Mish", since=18)
def mish(x: np.ndarray) -> tuple[np.ndarray]:
    """x * tanh(softplus(x))."""
    xc = to_compute(x)
    return ((xc * np.tanh(_softplus(xc))).astype(x.dtype, copy=False),)


@kernel("Swish", since=24)
def swish(x: np.ndarray, *, alpha: float = 1.0) -> tuple[np.ndarray]:
    """x * sigmoid(alpha * x)."""
    xc = to_compute(x)
    return ((xc * _sigmoid(alpha * xc)).astype(x.dtype, copy=False),)


@kernel("SwiGLU", since=28)
def swiglu(a: np.ndarray, b: np.ndarray, *, alpha: float = 1.0) -> tuple[np.ndarray]:
    """Swish_alpha(a) * b, a and b of the same shape."""
    ac = to_compute(a)
    return ((ac * _sigmoid(alpha * ac) * to_compute(b)).astype(a.dtype, copy=False),)
