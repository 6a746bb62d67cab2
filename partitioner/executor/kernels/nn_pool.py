"""Pooling kernels: MaxPool (with Indices), AveragePool, LpPool, their Global forms, MaxUnpool.

Window reductions are separable for max and sum over a box, so each spatial axis is reduced
in turn by a loop over that axis's kernel taps (k strided ufunc calls on whole tensors);
numpy's own reduction over the small trailing axes of a window view is ~20x slower.
Average divisors are separable too: a product of one 1-D count per axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from partitioner.executor.kernels.nn_common import (
    pad_for_windows,
    pool_output_shape,
    spatial_pads,
    tap_slices,
    to_compute,
)
from partitioner.executor.registry import KernelContext, kernel

__all__ = [
    "max_pool",
    "average_pool",
    "lp_pool",
    "global_average_pool",
    "global_max_pool",
    "global_lp_pool",
    "max_unpool",
]


def _separable_reduce(
    xp: np.ndarray,
    kernel_shape: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    out_shape: Sequence[int],
    ufunc: np.ufunc,
) -> np.ndarray:
    """Reduce the windows of a padded (N, C, *S) array with ``ufunc`` one spatial axis at a time."""
    for i, (k, s, d, o) in enumerate(zip(kernel_shape, strides, dilations, out_shape, strict=True)):
        index = [slice(None)] * xp.ndim
        acc = None
        for t in range(k):
            index[2 + i] = slice(t * d, t * d + (o - 1) * s + 1, s)
            tap = xp[tuple(index)]
            if acc is None:
                acc = np.array(tap, copy=True)
            else:
                ufunc(acc, tap, out=acc)
        xp = acc
    return xp


def _window_counts(
    lo: Sequence[int],
    hi: Sequence[int],
    kernel_shape: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    out_shape: Sequence[int],
) -> np.ndarray:
    """How many taps of each window fall in the box [lo, hi) of padded coordinates, (*out)."""
    counts = np.ones((), dtype=np.int64)
    for low, high, k, s, d, o in zip(
        lo, hi, kernel_shape, strides, dilations, out_shape, strict=True
    ):
        pos = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d
        per_axis = ((pos >= low) & (pos < high)).sum(axis=1)
        counts = np.multiply.outer(counts, per_axis)
    return counts


def _pool_geometry(
    x: np.ndarray,
    kernel_shape: Sequence[int],
    strides: Sequence[int] | None,
    dilations: Sequence[int] | None,
    pads: Sequence[int] | None,
    auto_pad: str,
    ceil_mode: int,
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """Strides, dilations, begin pads, end pads and output shape of a pooling op."""
    rank = x.ndim - 2
    strides = list(strides) if strides else [1] * rank
    dilations = list(dilations) if dilations else [1] * rank
    begin, end = spatial_pads(x.shape[2:], kernel_shape, strides, dilations, pads, auto_pad)
    out_shape = pool_output_shape(
        x.shape[2:], kernel_shape, strides, dilations, begin, end, ceil_mode
    )
    return strides, dilations, begin, end, out_shape


def _lowest(dtype: np.dtype) -> float | int:
    dtype = np.dtype(dtype)
    return np.iinfo(dtype).min if dtype.kind in "iu" else -np.inf


def _argmax_indices(
    xp: np.ndarray,
    y: np.ndarray,
    in_shape: Sequence[int],
    kernel_shape: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    begin: Sequence[int],
    storage_order: int,
) -> np.ndarray:
    """Flat input index of the first maximum of every window (MaxPool's ``Indices``).

    index = flat index of the window's origin + flat offset of the winning tap. The winning
    tap is found by comparing each tap with the max ``y`` (last tap first, so the first tap
    wins ties) in plain int arithmetic: numpy's masked copies are ~10x slower.
    """
    n, c, *spatial = in_shape
    out_shape = y.shape[2:]
    # element strides of the spatial axes in the flattened input (column-major if asked)
    if storage_order:
        elem_strides = [int(np.prod(spatial[:i], dtype=np.int64)) for i in range(len(spatial))]
    else:
        elem_strides = [int(np.prod(spatial[i + 1 :], dtype=np.int64)) for i in range(len(spatial))]
    taps = list(np.ndindex(*kernel_shape))
    offsets = np.array(
        [
            sum(t * d * e for t, d, e in zip(tap, dilations, elem_strides, strict=True))
            for tap in taps
        ],
        dtype=np.int64,
    )
    # the winning tap's number, in the narrowest int that holds it (less memory traffic)
    tap_dtype = np.int8 if len(taps) < 128 else np.int32
    tap_id = np.zeros(y.shape, dtype=tap_dtype)
    for number in range(len(taps) - 1, -1, -1):
        hit = xp[tap_slices(taps[number], strides, dilations, out_shape)] == y
        tap_id += hit * (tap_dtype(number) - tap_id)
    tap_offset = offsets[tap_id]
    origin = np.arange(n * c, dtype=np.int64).reshape(n, c, *([1] * len(spatial)))
    origin = origin * int(np.prod(spatial, dtype=np.int64))
    for i, (o, s, b, e) in enumerate(zip(out_shape, strides, begin, elem_strides, strict=True)):
        view = [1] * len(spatial)
        view[i] = o
        origin = origin + ((np.arange(o, dtype=np.int64) * s - b) * e).reshape(view)
    return origin + tap_offset


@kernel("MaxPool", since=1, needs_context=True)
def max_pool(
    x: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    dilations: Sequence[int] | None = None,
    kernel_shape: Sequence[int] = (),
    pads: Sequence[int] | None = None,
    storage_order: int = 0,
    strides: Sequence[int] | None = None,
    ctx: KernelContext | None = None,
) -> tuple[np.ndarray, ...]:
    """Max over windows (padding never wins) and the flat input index of each maximum.

    ``Indices`` costs ~4x the max itself, so it is computed only when the node asks for it
    (``ctx.num_outputs`` > 1) or when called without a context.
    """
    strides, dilations, begin, end, out_shape = _pool_geometry(
        x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode
    )
    xp = pad_for_windows(
        x, kernel_shape, strides, dilations, begin, end, out_shape, _lowest(x.dtype)
    )
    y = _separable_reduce(xp, kernel_shape, strides, dilations, out_shape, np.maximum)
    if ctx is not None and getattr(ctx, "num_outputs", 2) < 2:
        return (y,)
    indices = _argmax_indices(
        xp, y, x.shape, kernel_shape, strides, dilations, begin, storage_order
    )
    return y, indices


@kernel("AveragePool", since=1)
def average_pool(
    x: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    count_include_pad: int = 0,
    dilations: Sequence[int] | None = None,
    kernel_shape: Sequence[int] = (),
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> tuple[np.ndarray]:
    """Window mean; the divisor counts explicit pads only with ``count_include_pad`` and never
    counts the extra end region a ``ceil_mode`` window hangs over."""
    strides, dilations, begin, end, out_shape = _pool_geometry(
        x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode
    )
    xc = to_compute(x)
    xp = pad_for_windows(xc, kernel_shape, strides, dilations, begin, end, out_shape, 0)
    total = _separable_reduce(xp, kernel_shape, strides, dilations, out_shape, np.add)
    size = x.shape[2:]
    if count_include_pad:
        lo, hi = [0] * len(size), [b + n + e for b, n, e in zip(begin, size, end, strict=True)]
    else:
        lo, hi = list(begin), [b + n for b, n in zip(begin, size, strict=True)]
    counts = _window_counts(lo, hi, kernel_shape, strides, dilations, out_shape)
    return ((total / np.maximum(counts, 1)).astype(x.dtype, copy=False),)


def _lp(x: np.ndarray, p: float) -> np.ndarray:
    return np.abs(x) if p == 1 else (x * x if p == 2 else np.abs(x) ** p)


@kernel("LpPool", since=1)
def lp_pool(
    x: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    dilations: Sequence[int] | None = None,
    kernel_shape: Sequence[int] = (),
    p: float = 2,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> tuple[np.ndarray]:
    """(sum over window |x|^p)^(1/p), zero padding."""
    strides, dilations, begin, end, out_shape = _pool_geometry(
        x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode
    )
    xp = pad_for_windows(
        _lp(to_compute(x), p), kernel_shape, strides, dilations, begin, end, out_shape, 0
    )
    total = _separable_reduce(xp, kernel_shape, strides, dilations, out_shape, np.add)
    return ((total ** (1.0 / p)).astype(x.dtype, copy=False),)


def _spatial_axes(x: np.ndarray) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


@kernel("GlobalAveragePool", since=1)
def global_average_pool(x: np.ndarray) -> tuple[np.ndarray]:
    y = np.mean(to_compute(x), axis=_spatial_axes(x), keepdims=True)
    return (y.astype(x.dtype, copy=False),)


@kernel("GlobalMaxPool", since=1)
def global_max_pool(x: np.ndarray) -> tuple[np.ndarray]:
    return (np.max(x, axis=_spatial_axes(x), keepdims=True),)


@kernel("GlobalLpPool", since=1)
def global_lp_pool(x: np.ndarray, *, p: float = 2) -> tuple[np.ndarray]:
    y = np.sum(_lp(to_compute(x), p), axis=_spatial_axes(x), keepdims=True) ** (1.0 / p)
    return (y.astype(x.dtype, copy=False),)


@kernel("MaxUnpool", since=9)
def max_unpool(
    x: np.ndarray,
    indices: np.ndarray,
    output_shape: np.ndarray | None = None,
    *,
    kernel_shape: Sequence[int] = (),
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> tuple[np.ndarray]:
    """Scatter ``x`` to the flat positions ``indices`` of a zero tensor (MaxPool's inverse)."""
    rank = x.ndim - 2
    strides = list(strides) if strides else [1] * rank
    pads = list(pads) if pads else [0] * (2 * rank)
    spatial = [
        (size - 1) * s + k - pads[i] - pads[i + rank]
        for i, (size, s, k) in enumerate(zip(x.shape[2:], strides, kernel_shape, strict=True))
    ]
    inferred = [*x.shape[:2], *spatial]
    out = np.zeros(int(np.prod(inferred, dtype=np.int64)), dtype=x.dtype)
    out[np.asarray(indices).reshape(-1)] = np.asarray(x).reshape(-1)
    out = out.reshape(inferred)
    if output_shape is None:
        return (out,)
    # indices address the inferred shape; a larger output_shape pads zeros at the end (ONNX tests)
    shape = [int(v) for v in np.asarray(output_shape)]
    result = np.zeros(shape, dtype=x.dtype)
    result[tuple(slice(0, n) for n in inferred)] = out
    return (result,)
