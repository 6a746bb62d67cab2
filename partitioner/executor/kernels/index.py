"""Gather/Scatter family, NonZero, Compress, Unique, ReverseSequence, TensorScatter.

Scatter reductions use ``ufunc.at`` so repeated indices accumulate (one C loop,
no Python loop over elements). Negative indices count from the end of the axis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from partitioner.executor.kernels._common import ML_FLOAT_DTYPES, normalize_axis
from partitioner.executor.registry import kernel

__all__: list[str] = []

_REDUCTIONS: dict[str, Callable[..., Any]] = {
    "add": np.add,
    "mul": np.multiply,
    "max": np.maximum,
    "min": np.minimum,
}


@kernel("Gather", since=1)
def gather(data: np.ndarray, indices: np.ndarray, *, axis: int = 0) -> tuple[np.ndarray]:
    return (np.take(data, indices, axis=normalize_axis(axis, data.ndim)),)


def _along_axis_index(indices: np.ndarray, axis: int, dim: int) -> tuple[np.ndarray, ...]:
    """Open-grid index tuple addressing ``indices``' positions, with ``indices`` on ``axis``."""
    index: list[np.ndarray] = []
    for i, size in enumerate(indices.shape):
        if i == axis:
            index.append(np.where(indices < 0, indices + dim, indices))
        else:
            shape = [1] * indices.ndim
            shape[i] = size
            index.append(np.arange(size).reshape(shape))
    return tuple(index)


@kernel("GatherElements", since=11)
def gather_elements(data: np.ndarray, indices: np.ndarray, *, axis: int = 0) -> tuple[np.ndarray]:
    # `indices` may be smaller than `data` on the other axes (BERT gathers
    # [1, seq] position ids out of a [1, 512] buffer); index only that corner.
    axis = normalize_axis(axis, data.ndim)
    return (data[_along_axis_index(indices, axis, data.shape[axis])],)


@kernel("GatherND", since=11)
def gather_nd(data: np.ndarray, indices: np.ndarray, *, batch_dims: int = 0) -> tuple[np.ndarray]:
    batch_shape = data.shape[:batch_dims]
    batch_count = int(np.prod(batch_shape, dtype=np.int64))
    depth = indices.shape[-1]
    flat_data = data.reshape((batch_count, *data.shape[batch_dims:]))
    flat_idx = indices.reshape((batch_count, *indices.shape[batch_dims:]))
    batch_index = np.arange(batch_count).reshape((batch_count,) + (1,) * (flat_idx.ndim - 2))
    coords = tuple(flat_idx[..., j] for j in range(depth))
    gathered = flat_data[(batch_index, *coords)]
    out_shape = (*batch_shape, *indices.shape[batch_dims:-1], *data.shape[batch_dims + depth :])
    return (gathered.reshape(out_shape),)


def _scatter(
    data: np.ndarray, index: tuple[np.ndarray, ...], updates: np.ndarray, reduction: str
) -> np.ndarray:
    work = data.astype(np.float32) if data.dtype in ML_FLOAT_DTYPES else data.copy()
    values = updates.astype(work.dtype, copy=False)
    if reduction == "none":
        work[index] = values
    elif reduction in _REDUCTIONS:
        _REDUCTIONS[reduction].at(work, index, values)
    else:
        raise ValueError(f"unknown scatter reduction {reduction!r}")
    return work.astype(data.dtype, copy=False)


@kernel("ScatterND", since=11)
def scatter_nd(
    data: np.ndarray, indices: np.ndarray, updates: np.ndarray, *, reduction: str = "none"
) -> tuple[np.ndarray]:
    index = tuple(indices[..., j] for j in range(indices.shape[-1]))
    return (_scatter(data, index, updates, reduction),)


@kernel("ScatterElements", since=11)
def scatter_elements(
    data: np.ndarray,
    indices: np.ndarray,
    updates: np.ndarray,
    *,
    axis: int = 0,
    reduction: str = "none",
) -> tuple[np.ndarray]:
    axis = normalize_axis(axis, data.ndim)
    index = _along_axis_index(indices, axis, data.shape[axis])
    return (_scatter(data, index, updates, reduction),)


@kernel("Scatter", since=9)
def scatter(
    data: np.ndarray, indices: np.ndarray, updates: np.ndarray, *, axis: int = 0
) -> tuple[np.ndarray]:
    return scatter_elements(data, indices, updates, axis=axis)


@kernel("NonZero", since=9)
def non_zero(x: np.ndarray) -> tuple[np.ndarray]:
    if x.ndim == 0:
        return (np.zeros((0, int(bool(x))), dtype=np.int64),)
    return (np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1),)


@kernel("Compress", since=9)
def compress(x: np.ndarray, condition: np.ndarray, *, axis: int | None = None) -> tuple[np.ndarray]:
    chosen = condition.astype(bool).reshape(-1)
    if axis is None:
        return (np.compress(chosen, x.reshape(-1)),)
    return (np.compress(chosen, x, axis=normalize_axis(axis, x.ndim)),)


@kernel("Unique", since=11)
def unique(
    x: np.ndarray,
    *,
    axis: int | None = None,
    sorted: int = 1,  # noqa: A002
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    source = x.reshape(-1) if axis is None else x
    ax = 0 if axis is None else normalize_axis(axis, x.ndim)
    values, first, inverse, counts = np.unique(
        source, return_index=True, return_inverse=True, return_counts=True, axis=ax
    )
    inverse = inverse.reshape(-1)
    if not sorted:
        # Order of first occurrence instead of sorted order.
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        values, first, counts, inverse = (
            np.take(values, order, axis=ax),
            first[order],
            counts[order],
            rank[inverse],
        )
    return (
        values,
        first.astype(np.int64),
        inverse.astype(np.int64),
        counts.astype(np.int64),
    )


@kernel("ReverseSequence", since=10)
def reverse_sequence(
    x: np.ndarray, sequence_lens: np.ndarray, *, batch_axis: int = 1, time_axis: int = 0
) -> tuple[np.ndarray]:
    shape = [1] * x.ndim
    time_shape = list(shape)
    time_shape[time_axis] = x.shape[time_axis]
    batch_shape = list(shape)
    batch_shape[batch_axis] = x.shape[batch_axis]
    t = np.arange(x.shape[time_axis]).reshape(time_shape)
    lengths = sequence_lens.astype(np.int64).reshape(batch_shape)
    # Position t of a sequence of length L reads from L-1-t; padding stays put.
    source = np.where(t < lengths, lengths - 1 - t, t)
    return (np.take_along_axis(x, np.broadcast_to(source, x.shape), axis=time_axis),)


@kernel("TensorScatter", since=24)
def tensor_scatter(
    past_cache: np.ndarray,
    update: np.ndarray,
    write_indices: np.ndarray | None = None,
    *,
    axis: int = -2,
    mode: str = "linear",
) -> tuple[np.ndarray]:
    axis = normalize_axis(axis, past_cache.ndim)
    batch = past_cache.shape[0]
    starts = np.zeros(batch, np.int64) if write_indices is None else write_indices.astype(np.int64)
    shape = [1] * update.ndim
    shape[0] = batch
    seq_shape = [1] * update.ndim
    seq_shape[axis] = update.shape[axis]
    position = starts.reshape(shape) + np.arange(update.shape[axis]).reshape(seq_shape)
    if mode == "circular":
        position = position % past_cache.shape[axis]
    present = past_cache.copy()
    np.put_along_axis(present, np.broadcast_to(position, update.shape), update, axis=axis)
    return (present,)
