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


# erf without scipy: Maclaurin series for |x| < 2.5 (all terms needed for 1e-16 fit in 40),
# Lentz-free continued fraction for erfc beyond (evaluated bottom-up at a fixed depth).
_ERF_TERMS = 42
_ERF_COEFFS = np.array(
    [(-1.0) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(_ERF_TERMS)]
) * (2.0 / math.sqrt(math.pi))
_ERFC_DEPTH = 60
_ERF_SPLIT = 2.5


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise, to about 1e-15 absolute in float64 (result dtype = x's)."""
    x = np.asarray(x)
    xd = x.astype(np.float64)
    out = np.empty_like(xd)
    small = np.abs(xd) < _ERF_SPLIT
    xs = xd[small]
    x2 = xs * xs
    acc = np.full_like(xs, _ERF_COEFFS[-1])
    for c in _ERF_COEFFS[-2::-1]:
        acc = acc * x2 + c
    out[small] = acc * xs
    large = ~small
    if large.any():
        xl = np.abs(xd[large])
        # erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
        frac = xl.copy()
        for k in range(_ERFC_DEPTH, 0, -1):
            frac = xl + (k / 2.0) / frac
        erfc = np.exp(-xl * xl) / math.sqrt(math.pi) / frac
        out[large] = np.copysign(1.0 - erfc, xd[large])
    return out.astype(x.dtype) if x.dtype.kind == "f" or x.dtype in _LOW_PRECISION else out
