"""Small helpers shared by the NN kernels: dtypes, attribute decoding, padding, windows, erf.

Nothing here is a kernel; the ``nn_*`` kernel modules import these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import ml_dtypes
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "as_str",
    "compute_dtype",
    "to_compute",
    "spatial_pads",
    "pool_output_shape",
    "pad_for_windows",
    "tap_slices",
    "windows",
    "erf",
    "channel_shape",
]

_LOW_PRECISION = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


def as_str(value: str | bytes | None) -> str:
    """An ONNX string attribute as ``str`` (runners may hand over ``bytes``)."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a kernel computes in: float32 for float16/bfloat16, else ``dtype`` itself.

    numpy has no BLAS for float16 and no ufuncs for bfloat16, and float32 accumulation is
    what onnxruntime does for these types anyway.
    """
    dtype = np.dtype(dtype)
    if dtype in _LOW_PRECISION:
        return np.dtype(np.float32)
    if dtype.kind in "iub":
        return np.dtype(np.float64)
    return dtype


def to_compute(x: np.ndarray) -> np.ndarray:
    """``x`` in its compute dtype (no copy when it already is)."""
    return np.asarray(x).astype(compute_dtype(np.asarray(x).dtype), copy=False)


def channel_shape(param: np.ndarray, rank: int) -> np.ndarray:
    """A per-channel vector (C,) reshaped to broadcast over an (N, C, D1, ...) tensor."""
    param = np.asarray(param)
    if param.ndim == 1:
        return param.reshape((-1,) + (1,) * (rank - 2))
    return param  # already (C, D1, ...) e.g. BatchNormalization with spatial=0


def spatial_pads(
    in_shape: Sequence[int],
    kernel_shape: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pads: Sequence[int] | None,
    auto_pad: str | bytes | None,
) -> tuple[list[int], list[int]]:
    """Begin and end pads per spatial axis, resolving ``auto_pad`` the way Conv/Pool do.

    SAME_*: the output is ceil(in / stride) and the total pad
    ``max(0, (out - 1) * stride + (k - 1) * dilation + 1 - in)`` is split with the odd
    element at the end (SAME_UPPER) or the beginning (SAME_LOWER). VALID: no padding.
    """
    rank = len(in_shape)
    mode = as_str(auto_pad) or "NOTSET"
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(in_shape, kernel_shape, strides, dilations, strict=True):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, large = total // 2, total - total // 2
            begin.append(small if mode == "SAME_UPPER" else large)
            end.append(large if mode == "SAME_UPPER" else small)
        return begin, end
    if mode == "VALID" or pads is None or len(pads) == 0:
        return [0] * rank, [0] * rank
    return [int(p) for p in pads[:rank]], [int(p) for p in pads[rank:]]


def pool_output_shape(
    in_shape: Sequence[int],
    kernel_shape: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    begin: Sequence[int],
    end: Sequence[int],
    ceil_mode: int = 0,
) -> list[int]:
    """Output spatial shape; ``ceil_mode`` drops a last window that would start in the end pad."""
    out_shape = []
    for size, k, s, d, b, e in zip(
        in_shape, kernel_shape, strides, dilations, begin, end, strict=True
    ):
        span = size + b + e - (k - 1) * d - 1
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= size + b:
            out -= 1
        out_shape.append(max(out, 0))
    return out_shape


def pad_for_windows(
    x: np.ndarray,
    kernel_shape: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    begin: Sequence[int],
    end: Sequence[int],
    out_shape: Sequence[int],
    fill: float | int,
) -> np.ndarray:
    """``x`` (N, C, *S) padded with ``fill`` by ``begin``/``end`` plus what ``out_shape`` needs
    beyond (ceil_mode windows hanging over the end); ``x`` itself when nothing is needed."""
    extra_end = []
    for size, k, s, d, b, e, out in zip(
        x.shape[2:], kernel_shape, strides, dilations, begin, end, out_shape, strict=True
    ):
        needed = (out - 1) * s + (k - 1) * d + 1 if out > 0 else 0
        extra_end.append(max(needed - (size + b + e), 0))
    pad_width = [(0, 0), (0, 0)] + [
        (b, e + extra) for b, e, extra in zip(begin, end, extra_end, strict=True)
    ]
    if all(p == (0, 0) for p in pad_width):
        return x
    return np.pad(x, pad_width, constant_values=fill)


def tap_slices(
    tap: Sequence[int], strides: Sequence[int], dilations: Sequence[int], out_shape: Sequence[int]
) -> tuple[slice, ...]:
    """Index of a padded (N, C, *S) array: for kernel offset ``tap``, every window's element."""
    return (slice(None), slice(None)) + tuple(
        slice(t * d, t * d + (o - 1) * s + 1, s)
        for t, s, d, o in zip(tap, strides, dilations, out_shape, strict=True)
    )


def windows(
    x: np.ndarray,
    kernel_shape: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    begin: Sequence[int],
    end: Sequence[int],
    out_shape: Sequence[int],
    fill: float | int,
) -> np.ndarray:
    """A strided view of the windows of ``x`` (N, C, *S): shape (N, C, *out_shape, *kernel_shape).

    The view is of a padded copy (see `pad_for_windows`). Reducing over its trailing kernel
    axes is slow in numpy; use it to feed a copy (im2col) or prefer `tap_slices` loops.
    """
    rank = len(kernel_shape)
    x = pad_for_windows(x, kernel_shape, strides, dilations, begin, end, out_shape, fill)
    spans = [(k - 1) * d + 1 for k, d in zip(kernel_shape, dilations, strict=True)]
    view = sliding_window_view(x, spans, axis=tuple(range(2, 2 + rank)))
    index = (slice(None), slice(None))
    index += tuple(
        slice(0, (out - 1) * s + 1 if out > 0 else 0, s)
        for out, s in zip(out_shape, strides, strict=True)
    )
    index += tuple(slice(None, None, d) for d in dilations)
    return view[index]


# erf without scipy. |x| < 0.5: Maclaurin series. Beyond: erfc(z) = t exp(-z^2 + P(t)) with
# t = 1 / (1 + z/2) and P a Chebyshev fit made here at import from math.erfc (smooth on
# z in [0.5, 6.5]; past 6.5 erfc < 4e-20 so erf = +-1). Two precisions: float64 inputs get
# 12 series terms and degree 16 (relative error ~1e-14); narrower floats compute in float32
# with 7 terms and degree 9 (~1e-8), which is ~4x faster.
_ERF_SPLIT = 0.5
_ERFC_MAX_Z = 6.5


def _erf_series(terms: int) -> np.ndarray:
    coeffs = [(-1.0) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(terms)]
    return np.array(coeffs) * (2.0 / math.sqrt(math.pi))


def _erfc_exponent_fit(degree: int) -> tuple[np.ndarray, float, float]:
    """Chebyshev coefficients of P(t) = log(erfc(z) / t) + z^2 on t's range, and that range."""
    t_low, t_high = 1 / (1 + _ERFC_MAX_Z / 2), 1 / (1 + _ERF_SPLIT / 2)
    k = np.arange(4 * degree + 8)
    nodes = np.cos(np.pi * (k + 0.5) / len(k)) * (t_high - t_low) / 2 + (t_high + t_low) / 2
    z = 2 * (1 / nodes - 1)
    target = [math.log(math.erfc(zi) / ti) + zi * zi for zi, ti in zip(z, nodes, strict=True)]
    fit = np.polynomial.chebyshev.Chebyshev.fit(nodes, target, degree, domain=[t_low, t_high])
    return fit.coef, t_low, t_high


_ERF_PRECISE = (_erf_series(12), *_erfc_exponent_fit(16))
_ERF_SINGLE = (_erf_series(7), *_erfc_exponent_fit(9))


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise; float64 in float64, other floats via float32.

    Both branches run on every element (clipped into their ranges) and an arithmetic blend
    picks one: boolean-mask gathers/scatters and ``np.where`` cost more than the arithmetic.
    """
    x = np.asarray(x)
    precise = x.dtype == np.float64
    work = x.astype(np.float64 if precise else np.float32, copy=False)
    series, cheb, t_low, t_high = _ERF_PRECISE if precise else _ERF_SINGLE
    ftype = work.dtype.type
    xs = np.clip(work, ftype(-_ERF_SPLIT), ftype(_ERF_SPLIT))
    x2 = xs * xs
    near = np.full_like(xs, series[-1])
    for c in series[-2::-1]:
        near *= x2
        near += ftype(c)
    near *= xs
    z = np.clip(np.abs(work), ftype(_ERF_SPLIT), ftype(_ERFC_MAX_Z))  # NaN stays NaN
    t = 1 / (1 + z / 2)
    u = (2 * t - ftype(t_low + t_high)) / ftype(t_high - t_low)
    two_u = 2 * u
    b1 = np.full_like(z, cheb[-1])
    b2 = np.zeros_like(z)
    for c in cheb[-2:0:-1]:  # Clenshaw recurrence for sum c_k T_k(u)
        b1, b2 = two_u * b1 - b2 + ftype(c), b1
    exponent = u * b1 - b2 + ftype(cheb[0]) - z * z
    far = (1 - t * np.exp(exponent)) * np.sign(work)
    use_near = (np.abs(work) < ftype(_ERF_SPLIT)).astype(work.dtype)
    # exact selection: both branches are finite (far is NaN only for a NaN input)
    out = near * use_near + far * (1 - use_near)
    return (
        out.astype(x.dtype, copy=False) if x.dtype.kind == "f" or x.dtype in _LOW_PRECISION else out
    )
