"""Shape manipulation: Identity, Shape, Size, Reshape, Flatten, (Un)Squeeze, Transpose,
Expand, Concat, Split, Slice, Tile, Pad, DepthToSpace, SpaceToDepth.

Kernels return views where NumPy gives them (Transpose, Expand, Slice); no
kernel writes into its inputs, so sharing memory is safe.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from partitioner.executor.kernels._common import int_list, normalize_axes, normalize_axis
from partitioner.executor.registry import KernelContext, kernel

__all__: list[str] = []


@kernel("Identity", since=1)
def identity(x: Any) -> tuple[Any]:
    return (x,)


@kernel("Shape", since=1)
def shape(x: np.ndarray, *, start: int = 0, end: int | None = None) -> tuple[np.ndarray]:
    rank = x.ndim
    first = min(max(start + rank if start < 0 else start, 0), rank)
    last = rank if end is None else min(max(end + rank if end < 0 else end, 0), rank)
    return (np.array(x.shape[first:last], dtype=np.int64),)


@kernel("Size", since=1)
def size(x: np.ndarray) -> tuple[np.ndarray]:
    return (np.array(x.size, dtype=np.int64),)


def _reshape_target(x: np.ndarray, shape_values: list[int], allowzero: int) -> list[int]:
    if allowzero:
        return shape_values
    # 0 copies the input's dimension at that position.
    return [x.shape[i] if d == 0 else d for i, d in enumerate(shape_values)]


@kernel("Reshape", since=5)
def reshape(x: np.ndarray, new_shape: np.ndarray, *, allowzero: int = 0) -> tuple[np.ndarray]:
    return (x.reshape(_reshape_target(x, int_list(new_shape), allowzero)),)


@kernel("Flatten", since=1)
def flatten(x: np.ndarray, *, axis: int = 1) -> tuple[np.ndarray]:
    axis = axis + x.ndim if axis < 0 else axis
    outer = math.prod(x.shape[:axis])
    return (x.reshape(outer, math.prod(x.shape[axis:])),)


@kernel("Squeeze", since=1)
def squeeze(
    x: np.ndarray, axes_input: np.ndarray | None = None, *, axes: tuple[int, ...] | None = None
) -> tuple[np.ndarray]:
    chosen = axes_input if axes_input is not None else axes
    if chosen is None or len(int_list(chosen)) == 0:
        return (np.squeeze(x),)
    return (np.squeeze(x, axis=normalize_axes(int_list(chosen), x.ndim)),)


@kernel("Unsqueeze", since=1)
def unsqueeze(
    x: np.ndarray, axes_input: np.ndarray | None = None, *, axes: tuple[int, ...] | None = None
) -> tuple[np.ndarray]:
    chosen = int_list(axes_input if axes_input is not None else axes)
    out_rank = x.ndim + len(chosen)
    return (np.expand_dims(x, normalize_axes(chosen, out_rank)),)


@kernel("Transpose", since=1)
def transpose(x: np.ndarray, *, perm: tuple[int, ...] | None = None) -> tuple[np.ndarray]:
    return (np.transpose(x, perm),)


@kernel("Expand", since=8)
def expand(x: np.ndarray, new_shape: np.ndarray) -> tuple[np.ndarray]:
    # Bidirectional broadcast: a 1 in `new_shape` keeps the input's dimension.
    target = np.broadcast_shapes(x.shape, tuple(int_list(new_shape)))
    return (np.broadcast_to(x, target),)


@kernel("Concat", since=4)
def concat(*inputs: np.ndarray, axis: int) -> tuple[np.ndarray]:
    return (np.concatenate(inputs, axis=normalize_axis(axis, inputs[0].ndim)),)


def split_sizes(dim: int, split: list[int] | None, num_outputs: int, count: int) -> list[int]:
    """Chunk lengths for Split: explicit ``split``, ``num_outputs`` (last chunk
    smaller), or ``count`` equal chunks."""
    if split:
        return split
    if num_outputs:
        chunk = -(-dim // num_outputs)
        return [min(chunk, max(dim - i * chunk, 0)) for i in range(num_outputs)]
    if dim % count:
        raise ValueError(f"dimension {dim} does not split into {count} equal parts")
    return [dim // count] * count


@kernel("Split", since=2, needs_context=True)
def split(
    x: np.ndarray,
    split_input: np.ndarray | None = None,
    *,
    ctx: KernelContext,
    axis: int = 0,
    split: tuple[int, ...] | None = None,
    num_outputs: int | None = None,
) -> tuple[np.ndarray, ...]:
    axis = normalize_axis(axis, x.ndim)
    explicit = int_list(split_input) if split_input is not None else list(split or ())
    sizes = split_sizes(x.shape[axis], explicit, num_outputs or 0, ctx.num_outputs)
    bounds = np.cumsum(sizes)[:-1]
    return tuple(np.split(x, bounds, axis=axis))


def slice_array(
    x: np.ndarray,
    starts: list[int],
    ends: list[int],
    axes: list[int] | None,
    steps: list[int] | None,
) -> np.ndarray:
    """ONNX Slice: clamped starts/ends per axis, any non-zero step."""
    axes = list(range(len(starts))) if not axes else list(normalize_axes(axes, x.ndim))
    steps = steps or [1] * len(starts)
    index: list[slice] = [slice(None)] * x.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
        dim = x.shape[axis]
        start = start + dim if start < 0 else start
        end = end + dim if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), dim), min(max(end, 0), dim)
            index[axis] = slice(start, end, step)
        else:
            # With a negative step, -1 means "before the first element",
            # which a Python slice spells as None.
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
            index[axis] = slice(start, None if end < 0 else end, step)
    return x[tuple(index)]


@kernel("Slice", since=1)
def slice_1(
    x: np.ndarray,
    *,
    starts: tuple[int, ...],
    ends: tuple[int, ...],
    axes: tuple[int, ...] | None = None,
) -> tuple[np.ndarray]:
    return (slice_array(x, list(starts), list(ends), list(axes or ()), None),)


@kernel("Slice", since=10)
def slice_10(
    x: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    axes: np.ndarray | None = None,
    steps: np.ndarray | None = None,
) -> tuple[np.ndarray]:
    return (
        slice_array(
            x, int_list(starts), int_list(ends), int_list(axes) or None, int_list(steps) or None
        ),
    )


@kernel("Tile", since=6)
def tile(x: np.ndarray, repeats: np.ndarray) -> tuple[np.ndarray]:
    return (np.tile(x, int_list(repeats)),)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def pad_array(
    x: np.ndarray, pads: list[int], axes: list[int] | None, mode: str, value: Any
) -> np.ndarray:
    """ONNX Pad; negative pads crop. ``pads`` = all begins then all ends over ``axes``."""
    axes = list(range(x.ndim)) if not axes else list(normalize_axes(axes, x.ndim))
    count = len(axes)
    widths = [[0, 0] for _ in range(x.ndim)]
    for i, axis in enumerate(axes):
        widths[axis] = [pads[i], pads[i + count]]
    crop = tuple(
        slice(max(-begin, 0), dim - max(-end, 0))
        for (begin, end), dim in zip(widths, x.shape, strict=True)
    )
    x = x[crop]
    positive = [(max(begin, 0), max(end, 0)) for begin, end in widths]
    if mode not in _PAD_MODES:
        raise ValueError(f"unknown Pad mode {mode!r}")
    if mode == "constant":
        return np.pad(x, positive, mode="constant", constant_values=value)
    return np.pad(x, positive, mode=_PAD_MODES[mode])


@kernel("Pad", since=2)
def pad(
    x: np.ndarray,
    pads_input: np.ndarray | None = None,
    constant_value: np.ndarray | None = None,
    axes_input: np.ndarray | None = None,
    *,
    mode: str = "constant",
    pads: tuple[int, ...] | None = None,
    value: float = 0.0,
) -> tuple[np.ndarray]:
    pad_values = int_list(pads_input) if pads_input is not None else list(pads or ())
    fill = value
    if constant_value is not None and constant_value.size:
        fill = constant_value.reshape(-1)[0]
    result = pad_array(x, pad_values, int_list(axes_input) or None, mode, fill)
    return (result.astype(x.dtype, copy=False),)


@kernel("DepthToSpace", since=1)
def depth_to_space(x: np.ndarray, *, blocksize: int, mode: str = "DCR") -> tuple[np.ndarray]:
    b, c, h, w = x.shape
    bs = blocksize
    if mode == "DCR":
        y = x.reshape(b, bs, bs, c // (bs * bs), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:  # CRD
        y = x.reshape(b, c // (bs * bs), bs, bs, h, w).transpose(0, 1, 4, 2, 5, 3)
    return (y.reshape(b, c // (bs * bs), h * bs, w * bs),)


@kernel("SpaceToDepth", since=1)
def space_to_depth(x: np.ndarray, *, blocksize: int, mode: str = "DCR") -> tuple[np.ndarray]:
    b, c, h, w = x.shape
    bs = blocksize
    y = x.reshape(b, c, h // bs, bs, w // bs, bs)
    # DCR puts the block offsets before the channel, CRD after it (inverse of DepthToSpace).
    y = y.transpose(0, 3, 5, 1, 2, 4) if mode == "DCR" else y.transpose(0, 1, 3, 5, 2, 4)
    return (y.reshape(b, c * bs * bs, h // bs, w // bs),)


@kernel("CenterCropPad", since=18)
def center_crop_pad(
    x: np.ndarray, target_shape: np.ndarray, *, axes: tuple[int, ...] | None = None
) -> tuple[np.ndarray]:
    chosen = list(range(x.ndim)) if axes is None else list(normalize_axes(axes, x.ndim))
    crop: list[slice] = [slice(None)] * x.ndim
    widths = [(0, 0)] * x.ndim
    for axis, size in zip(chosen, int_list(target_shape), strict=True):
        excess = x.shape[axis] - size
        if excess >= 0:  # crop; an odd excess leaves the extra element on the right
            crop[axis] = slice(excess // 2, excess // 2 + size)
        else:  # pad; an odd shortfall puts the extra zero on the right
            widths[axis] = (-excess // 2, -excess - (-excess // 2))
    return (np.pad(x[tuple(crop)], widths),)
