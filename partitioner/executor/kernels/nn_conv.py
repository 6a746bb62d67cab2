"""Convolution kernels: Conv, ConvTranspose, ConvInteger, QLinearConv (1-D/2-D/3-D, groups).

Conv is im2col + one batched matmul: the padded input's windows (a strided view) are copied
once into a (N, group, C/group * prod(kernel), prod(out)) matrix and multiplied by the
(group, M/group, C/group * prod(kernel)) weights, which lands directly in (N, M, *out).
ConvTranspose is the adjoint: one batched matmul to columns, then col2im by a loop over
the kernel taps (at most prod(kernel_shape) strided adds, never a loop over pixels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from partitioner.executor.kernels.nn_common import (
    as_str,
    pool_output_shape,
    spatial_pads,
    to_compute,
    windows,
)
from partitioner.executor.registry import kernel

__all__ = [
    "conv",
    "conv_transpose",
    "conv_integer",
    "qlinear_conv",
    "conv_nd",
    "conv_transpose_nd",
    "col2im",
]


def _spatial_attrs(
    rank: int, strides: Sequence[int] | None, dilations: Sequence[int] | None
) -> tuple[list[int], list[int]]:
    """Strides and dilations with their all-ones defaults filled in."""
    return (list(strides) if strides else [1] * rank, list(dilations) if dilations else [1] * rank)


def conv_nd(
    x: np.ndarray,
    w: np.ndarray,
    *,
    group: int,
    strides: Sequence[int],
    dilations: Sequence[int],
    begin: Sequence[int],
    end: Sequence[int],
) -> np.ndarray:
    """Cross-correlation of x (N, C, *S) with w (M, C/group, *K), already padded-resolved.

    Computes in the dtype of ``x`` (callers upcast first) and returns (N, M, *out).
    """
    n, c = x.shape[:2]
    m = w.shape[0]
    kernel_shape = w.shape[2:]
    rank = len(kernel_shape)
    out_shape = pool_output_shape(x.shape[2:], kernel_shape, strides, dilations, begin, end)
    c_g, m_g = c // group, m // group
    k_size = int(np.prod(kernel_shape, dtype=np.int64))
    o_size = int(np.prod(out_shape, dtype=np.int64))
    w_mat = w.reshape(group, m_g, c_g * k_size)
    pointwise = k_size == 1 and not any(begin) and not any(end) and all(s == 1 for s in strides)
    if pointwise:
        cols = x.reshape(n, group, c_g, o_size)
    else:
        win = windows(x, kernel_shape, strides, dilations, begin, end, out_shape, 0)
        # (N, C, *O, *K) -> (N, g, C/g, *K, *O): the one im2col copy happens in the reshape
        win = win.reshape((n, group, c_g) + win.shape[2:])
        order = (0, 1, 2) + tuple(range(3 + rank, 3 + 2 * rank)) + tuple(range(3, 3 + rank))
        cols = win.transpose(order).reshape(n, group, c_g * k_size, o_size)
    out = np.matmul(w_mat, cols)  # (N, g, M/g, O)
    return out.reshape((n, m, *out_shape))


@kernel("Conv", since=1)
def conv(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: Sequence[int] | None = None,
    group: int = 1,
    kernel_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> tuple[np.ndarray]:
    """ONNX Conv: y = x (*) w + b, NCHW, any spatial rank, groups, dilations, auto_pad."""
    rank = x.ndim - 2
    k_dims = list(kernel_shape) if kernel_shape else list(w.shape[2:])
    strides, dilations = _spatial_attrs(rank, strides, dilations)
    begin, end = spatial_pads(x.shape[2:], k_dims, strides, dilations, pads, auto_pad)
    xc, wc = to_compute(x), to_compute(w)
    y = conv_nd(xc, wc, group=group, strides=strides, dilations=dilations, begin=begin, end=end)
    if b is not None:
        y += to_compute(b).reshape((-1,) + (1,) * rank)
    return (y.astype(x.dtype, copy=False),)


def _transpose_pads(
    in_shape: Sequence[int],
    kernel_shape: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    output_padding: Sequence[int],
    pads: Sequence[int] | None,
    auto_pad: str,
    output_shape: Sequence[int] | None,
) -> tuple[list[int], list[int], list[int]]:
    """Begin pads, end pads and the output spatial shape of a ConvTranspose (ONNX spec rules)."""
    rank = len(in_shape)
    full = [
        s * (i - 1) + op + (k - 1) * d + 1
        for i, k, s, d, op in zip(
            in_shape, kernel_shape, strides, dilations, output_padding, strict=True
        )
    ]
    if output_shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        output_shape = [i * s for i, s in zip(in_shape, strides, strict=True)]
    if output_shape is not None:
        out = [int(o) for o in list(output_shape)[-rank:]]
        total = [f - o for f, o in zip(full, out, strict=True)]
        # the odd pad goes to the end for SAME_UPPER, to the beginning otherwise (ONNX spec)
        begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        end = [t - b for t, b in zip(total, begin, strict=True)]
        return begin, end, out
    begin, end = spatial_pads(in_shape, kernel_shape, strides, dilations, pads, "NOTSET")
    out = [f - b - e for f, b, e in zip(full, begin, end, strict=True)]
    return begin, end, out


def conv_transpose_nd(
    x: np.ndarray,
    w: np.ndarray,
    *,
    group: int,
    strides: Sequence[int],
    dilations: Sequence[int],
    begin: Sequence[int],
    out_shape: Sequence[int],
) -> np.ndarray:
    """Transposed convolution of x (N, C, *S) with w (C, M/group, *K) -> (N, M, *out_shape)."""
    n, c = x.shape[:2]
    in_shape = x.shape[2:]
    kernel_shape = w.shape[2:]
    c_g, m_g = c // group, w.shape[1]
    k_size = int(np.prod(kernel_shape, dtype=np.int64))
    s_size = int(np.prod(in_shape, dtype=np.int64))
    w_t = w.reshape(group, c_g, m_g * k_size).transpose(0, 2, 1)  # (g, M/g*K, C/g)
    cols = np.matmul(w_t, x.reshape(n, group, c_g, s_size))  # (N, g, M/g*K, S)
    cols = cols.reshape((n, group * m_g, *kernel_shape, *in_shape))
    return col2im(cols, strides=strides, dilations=dilations, begin=begin, out_shape=out_shape)


def col2im(
    cols: np.ndarray,
    *,
    strides: Sequence[int],
    dilations: Sequence[int],
    begin: Sequence[int],
    out_shape: Sequence[int],
) -> np.ndarray:
    """Sum column blocks (N, C, *K, *L) into an image (N, C, *out_shape).

    Block position l and kernel tap t land at ``l * stride + t * dilation - begin``; positions
    outside [0, out_shape) are dropped. One strided add per kernel tap.
    """
    rank = len(out_shape)
    n, c = cols.shape[:2]
    kernel_shape, grid = cols.shape[2 : 2 + rank], cols.shape[2 + rank :]
    # the canvas covers both every block's reach and the requested output window
    lo = [min(0, b) for b in begin]
    hi = [
        max((g - 1) * s + (k - 1) * d + 1, b + o)
        for g, k, s, d, b, o in zip(
            grid, kernel_shape, strides, dilations, begin, out_shape, strict=True
        )
    ]
    canvas = np.zeros((n, c, *[h - low for h, low in zip(hi, lo, strict=True)]), dtype=cols.dtype)
    for tap in np.ndindex(*kernel_shape):
        target = tuple(
            slice(t * d - low, t * d - low + (g - 1) * s + 1, s)
            for t, d, low, g, s in zip(tap, dilations, lo, grid, strides, strict=True)
        )
        canvas[(slice(None), slice(None)) + target] += cols[(slice(None), slice(None)) + tap]
    crop = tuple(
        slice(b - low, b - low + o) for b, low, o in zip(begin, lo, out_shape, strict=True)
    )
    return canvas[(slice(None), slice(None)) + crop]


@kernel("ConvTranspose", since=1)
def conv_transpose(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: Sequence[int] | None = None,
    group: int = 1,
    kernel_shape: Sequence[int] | None = None,
    output_padding: Sequence[int] | None = None,
    output_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> tuple[np.ndarray]:
    """ONNX ConvTranspose with groups, dilations, output_padding, output_shape and auto_pad."""
    rank = x.ndim - 2
    k_dims = list(kernel_shape) if kernel_shape else list(w.shape[2:])
    strides, dilations = _spatial_attrs(rank, strides, dilations)
    out_pad = list(output_padding) if output_padding else [0] * rank
    begin, _, out_shape = _transpose_pads(
        x.shape[2:],
        k_dims,
        strides,
        dilations,
        out_pad,
        pads,
        as_str(auto_pad) or "NOTSET",
        list(output_shape) if output_shape else None,
    )
    xc, wc = to_compute(x), to_compute(w)
    y = conv_transpose_nd(
        xc, wc, group=group, strides=strides, dilations=dilations, begin=begin, out_shape=out_shape
    )
    if b is not None:
        y = y + to_compute(b).reshape((-1,) + (1,) * rank)
    return (np.ascontiguousarray(y).astype(x.dtype, copy=False),)


def _integer_conv(
    x: np.ndarray,
    w: np.ndarray,
    x_zero: np.ndarray | None,
    w_zero: np.ndarray | None,
    auto_pad: str,
    dilations: Sequence[int] | None,
    group: int,
    kernel_shape: Sequence[int] | None,
    pads: Sequence[int] | None,
    strides: Sequence[int] | None,
) -> np.ndarray:
    """Exact integer convolution accumulated in float64 (exact below 2**53) -> float64 array."""
    rank = x.ndim - 2
    xf = x.astype(np.float64) - (0.0 if x_zero is None else np.asarray(x_zero, np.float64))
    wf = w.astype(np.float64)
    if w_zero is not None:
        wz = np.asarray(w_zero, np.float64)
        wf = wf - (wz.reshape((-1,) + (1,) * (w.ndim - 1)) if wz.ndim == 1 else wz)
    k_dims = list(kernel_shape) if kernel_shape else list(w.shape[2:])
    strides, dilations = _spatial_attrs(rank, strides, dilations)
    begin, end = spatial_pads(x.shape[2:], k_dims, strides, dilations, pads, auto_pad)
    # padding must contribute zero after the zero-point shift, so pad the shifted input
    return conv_nd(xf, wf, group=group, strides=strides, dilations=dilations, begin=begin, end=end)


@kernel("ConvInteger", since=10)
def conv_integer(
    x: np.ndarray,
    w: np.ndarray,
    x_zero_point: np.ndarray | None = None,
    w_zero_point: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: Sequence[int] | None = None,
    group: int = 1,
    kernel_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> tuple[np.ndarray]:
    """(x - x_zero_point) (*) (w - w_zero_point) in int32."""
    acc = _integer_conv(
        x,
        w,
        x_zero_point,
        w_zero_point,
        as_str(auto_pad),
        dilations,
        group,
        kernel_shape,
        pads,
        strides,
    )
    return (acc.astype(np.int32),)


@kernel("QLinearConv", since=10)
def qlinear_conv(
    x: np.ndarray,
    x_scale: np.ndarray,
    x_zero_point: np.ndarray,
    w: np.ndarray,
    w_scale: np.ndarray,
    w_zero_point: np.ndarray,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray,
    b: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: Sequence[int] | None = None,
    group: int = 1,
    kernel_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> tuple[np.ndarray]:
    """Integer conv requantised: rint(acc * x_scale * w_scale / y_scale) + y_zero_point."""
    rank = x.ndim - 2
    acc = _integer_conv(
        x,
        w,
        x_zero_point,
        w_zero_point,
        as_str(auto_pad),
        dilations,
        group,
        kernel_shape,
        pads,
        strides,
    )
    if b is not None:
        acc = acc + np.asarray(b, np.float64).reshape((-1,) + (1,) * rank)
    w_sc = np.asarray(w_scale, np.float64)
    if w_sc.ndim == 1:
        w_sc = w_sc.reshape((-1,) + (1,) * rank)
    multiplier = (
        np.float64(np.asarray(x_scale, np.float32))
        * w_sc
        / np.float64(np.asarray(y_scale, np.float32))
    )
    y = np.rint(acc * multiplier) + np.asarray(y_zero_point, np.float64)
    info = np.iinfo(np.asarray(y_zero_point).dtype)
    return (np.clip(y, info.min, info.max).astype(np.asarray(y_zero_point).dtype),)
