"""Spatial kernels: Col2Im, AffineGrid and GridSample (N-d, every mode).

GridSample gathers, for every output point, the 1/2/4 taps per spatial axis that its mode
needs (nearest/linear/cubic) and sums tap values times weights; the loop runs over tap
combinations (at most 4^rank), each step vectorised over all points and channels.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from partitioner.executor.kernels.nn_common import as_str, to_compute
from partitioner.executor.kernels.nn_conv import col2im
from partitioner.executor.registry import kernel

__all__ = ["col2im_kernel", "affine_grid", "grid_sample", "grid_sample_v16"]


@kernel("Col2Im", since=18)
def col2im_kernel(
    x: np.ndarray,
    image_shape: np.ndarray,
    block_shape: np.ndarray,
    *,
    dilations: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> tuple[np.ndarray]:
    """Rearrange (N, C * prod(block), L) column blocks into an (N, C, *image_shape) image."""
    image = [int(v) for v in np.asarray(image_shape)]
    block = [int(v) for v in np.asarray(block_shape)]
    rank = len(image)
    strides = list(strides) if strides else [1] * rank
    dilations = list(dilations) if dilations else [1] * rank
    pads = list(pads) if pads else [0] * (2 * rank)
    grid = [
        (i + pads[a] + pads[a + rank] - d * (k - 1) - 1) // s + 1
        for a, (i, k, s, d) in enumerate(zip(image, block, strides, dilations, strict=True))
    ]
    n = x.shape[0]
    cols = to_compute(x).reshape(n, -1, *block, *grid)
    y = col2im(cols, strides=strides, dilations=dilations, begin=pads[:rank], out_shape=image)
    return (np.ascontiguousarray(y).astype(x.dtype, copy=False),)


def _base_coords(size: int, align_corners: int) -> np.ndarray:
    """Normalised [-1, 1] positions of ``size`` pixel centres (corners or edges at +-1)."""
    if align_corners:
        return np.linspace(-1.0, 1.0, size) if size > 1 else np.zeros(1)
    return (np.arange(size) * 2.0 + 1.0) / size - 1.0


@kernel("AffineGrid", since=20)
def affine_grid(
    theta: np.ndarray, size: np.ndarray, *, align_corners: int = 0
) -> tuple[np.ndarray]:
    """Sampling grid theta @ [x, y, (z,) 1] over the normalised output positions.

    Returns (N, H, W, 2) or (N, D, H, W, 3) with x (the last spatial axis) first.
    """
    spatial = [int(v) for v in np.asarray(size)[2:]]
    axes = [_base_coords(s, align_corners) for s in spatial]
    mesh = np.meshgrid(*axes, indexing="ij")  # one array per spatial axis, (D,) H, W
    homogeneous = np.stack([*mesh[::-1], np.ones(spatial)], axis=-1)  # (..., x, y, (z,) 1)
    th = to_compute(theta)
    grid = np.einsum("...k,njk->n...j", homogeneous, th)
    return (grid.astype(theta.dtype, copy=False),)


def _unnormalize(coord: np.ndarray, size: int, align_corners: int) -> np.ndarray:
    if align_corners:
        return (coord + 1) / 2 * (size - 1)
    return ((coord + 1) * size - 1) / 2


def _reflect(coord: np.ndarray, size: int, align_corners: int) -> np.ndarray:
    """Reflect coordinates into [0, size-1] (align_corners) or [-0.5, size-0.5]."""
    low, high = (0.0, size - 1.0) if align_corners else (-0.5, size - 0.5)
    span = high - low
    if span <= 0:
        return np.zeros_like(coord)
    dist = np.abs(coord - low)
    flips = np.floor(dist / span)
    extra = dist - flips * span
    reflected = np.where(flips % 2 == 0, low + extra, high - extra)
    return np.clip(reflected, 0, size - 1)


def _pad_coord(coord: np.ndarray, size: int, padding_mode: str, align_corners: int) -> np.ndarray:
    if padding_mode == "border":
        return np.clip(coord, 0, size - 1)
    if padding_mode == "reflection":
        return _reflect(coord, size, align_corners)
    return coord


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> list[np.ndarray]:
    """Keys cubic weights of the taps at offsets -1, 0, 1, 2 from floor, t in [0, 1)."""

    def near(d: np.ndarray) -> np.ndarray:
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d: np.ndarray) -> np.ndarray:
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _axis_taps(
    coord: np.ndarray, size: int, mode: str, padding_mode: str, align_corners: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per spatial axis: list of (index, weight, in_bounds) for the taps of every point."""
    if mode == "cubic":  # taps are padded one by one, the coordinate itself is not
        base = np.floor(coord)
        weights = _cubic_weights(coord - base)
        taps = []
        for offset, w in zip((-1, 0, 1, 2), weights, strict=True):
            pos = _pad_coord(base + offset, size, padding_mode, align_corners)
            taps.append((pos, w))
    else:
        coord = _pad_coord(coord, size, padding_mode, align_corners)
        if mode == "nearest":
            taps = [(np.rint(coord), np.ones_like(coord))]
        else:
            base = np.floor(coord)
            frac = coord - base
            taps = [(base, 1 - frac), (base + 1, frac)]
    out = []
    for pos, w in taps:
        inside = (pos >= 0) & (pos <= size - 1)
        out.append((np.clip(pos, 0, size - 1).astype(np.int64), w, inside))
    return out


def _grid_sample(
    x: np.ndarray, grid: np.ndarray, mode: str, padding_mode: str, align_corners: int
) -> np.ndarray:
    n, c, *in_shape = x.shape
    rank = len(in_shape)
    out_shape = grid.shape[1:-1]
    points = grid.reshape(n, -1, rank).astype(np.float64)
    per_axis = []
    for axis in range(rank):  # grid[..., 0] is the last spatial axis (x)
        coord = _unnormalize(points[:, :, rank - 1 - axis], in_shape[axis], align_corners)
        per_axis.append(_axis_taps(coord, in_shape[axis], mode, padding_mode, align_corners))
    flat = to_compute(x).reshape(n, c, -1)
    strides = [int(np.prod(in_shape[a + 1 :], dtype=np.int64)) for a in range(rank)]
    y = np.zeros((n, c, points.shape[1]), dtype=flat.dtype)
    for combo in itertools.product(*per_axis):  # every combination of one tap per axis
        index = sum(idx * st for (idx, _, _), st in zip(combo, strides, strict=True))
        weight = np.prod([w for _, w, _ in combo], axis=0)
        if padding_mode == "zeros":
            weight = weight * np.logical_and.reduce([ok for _, _, ok in combo])
        values = np.take_along_axis(flat, index[:, None, :], axis=2)
        y += values * weight[:, None, :].astype(flat.dtype)
    return y.reshape(n, c, *out_shape)


@kernel("GridSample", since=20)
def grid_sample(
    x: np.ndarray,
    grid: np.ndarray,
    *,
    align_corners: int = 0,
    mode: str = "linear",
    padding_mode: str = "zeros",
) -> tuple[np.ndarray]:
    """Sample x (N, C, *in) at the normalised positions grid (N, *out, rank)."""
    y = _grid_sample(x, grid, as_str(mode), as_str(padding_mode), align_corners)
    return (y.astype(x.dtype, copy=False),)


@kernel("GridSample", since=16)
def grid_sample_v16(
    x: np.ndarray,
    grid: np.ndarray,
    *,
    align_corners: int = 0,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
) -> tuple[np.ndarray]:
    """Opset 16: 2-D only, modes spelled bilinear/nearest/bicubic."""
    renamed = {"bilinear": "linear", "bicubic": "cubic"}.get(as_str(mode), as_str(mode))
    return grid_sample(
        x, grid, align_corners=align_corners, mode=renamed, padding_mode=padding_mode
    )
