"""DeformConv (opsets 19, 22): convolution whose kernel taps sample the input at learned
fractional offsets (bilinear, zero outside the input), optionally modulated by a mask.

Per kernel tap (a loop over the few taps), every output position's sample is gathered for
all channels at once; the sampled columns then meet the weights in one batched matmul,
exactly like `nn_conv.conv_nd`'s im2col.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from partitioner.executor.kernels.nn_common import pool_output_shape, to_compute
from partitioner.executor.registry import kernel

__all__ = ["deform_conv"]


def _bilinear_gather(x_groups: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Sample x_groups (N, G, C/G, *S) at coords (N, G, P, rank): (N, G, C/G, P), zero outside."""
    spatial = x_groups.shape[3:]
    n, g, cg = x_groups.shape[:3]
    flat = x_groups.reshape(n, g, cg, -1)
    base = np.floor(coords)
    frac = coords - base
    strides = [int(np.prod(spatial[a + 1 :], dtype=np.int64)) for a in range(len(spatial))]
    out = np.zeros((n, g, cg, coords.shape[2]), dtype=x_groups.dtype)
    for corner in itertools.product((0, 1), repeat=len(spatial)):
        pos = base + np.asarray(corner)
        weight = np.prod(np.where(np.asarray(corner) == 1, frac, 1 - frac), axis=-1)
        inside = np.all((pos >= 0) & (pos <= np.asarray(spatial) - 1), axis=-1)
        index = np.zeros(pos.shape[:-1], dtype=np.int64)
        for a, size in enumerate(spatial):
            index += np.clip(pos[..., a], 0, size - 1).astype(np.int64) * strides[a]
        values = np.take_along_axis(flat, index[:, :, None, :], axis=3)
        out += values * (weight * inside)[:, :, None, :].astype(x_groups.dtype)
    return out


@kernel("DeformConv", since=19)
def deform_conv(
    x: np.ndarray,
    w: np.ndarray,
    offset: np.ndarray,
    b: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    *,
    dilations: Sequence[int] | None = None,
    group: int = 1,
    kernel_shape: Sequence[int] | None = None,
    offset_group: int = 1,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> tuple[np.ndarray]:
    """Deformable conv: tap k of output o samples x at o*stride - pad + k*dilation + offset."""
    xc, wc, off = to_compute(x), to_compute(w), to_compute(offset)
    n, c, *in_shape = x.shape
    rank = len(in_shape)
    kernel_dims = list(kernel_shape) if kernel_shape else list(w.shape[2:])
    strides = list(strides) if strides else [1] * rank
    dilations = list(dilations) if dilations else [1] * rank
    pads = list(pads) if pads else [0] * (2 * rank)
    out_shape = pool_output_shape(
        in_shape, kernel_dims, strides, dilations, pads[:rank], pads[rank:]
    )
    taps = list(np.ndindex(*kernel_dims))
    o_size = int(np.prod(out_shape, dtype=np.int64))
    # (N, offset_group, taps, rank, O) and (N, offset_group, taps, O)
    off = off.reshape(n, offset_group, len(taps), rank, o_size)
    modulation = (
        None if mask is None else to_compute(mask).reshape(n, offset_group, len(taps), o_size)
    )
    grid = np.stack(
        [g.reshape(-1) for g in np.meshgrid(*[np.arange(o) for o in out_shape], indexing="ij")],
        axis=-1,
    )  # (O, rank) output positions
    origin = grid * np.asarray(strides) - np.asarray(pads[:rank])
    x_groups = xc.reshape(n, offset_group, c // offset_group, *in_shape)
    cols = np.empty((n, c, len(taps), o_size), dtype=xc.dtype)
    for t, tap in enumerate(taps):
        coords = origin + np.asarray(tap) * np.asarray(dilations)  # (O, rank)
        coords = coords[None, None] + off[:, :, t].transpose(0, 1, 3, 2)  # (N, G, O, rank)
        sampled = _bilinear_gather(x_groups, coords)
        if modulation is not None:
            sampled = sampled * modulation[:, :, t][:, :, None, :]
        cols[:, :, t] = sampled.reshape(n, c, o_size)
    c_g, m = c // group, w.shape[0]
    y = np.matmul(
        wc.reshape(group, m // group, -1), cols.reshape(n, group, c_g * len(taps), o_size)
    )
    y = y.reshape(n, m, *out_shape)
    if b is not None:
        y = y + to_compute(b).reshape((-1,) + (1,) * rank)
    return (y.astype(x.dtype, copy=False),)
