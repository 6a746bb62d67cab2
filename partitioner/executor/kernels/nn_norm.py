"""Normalization kernels: Batch/Layer/Group/Instance/RMS normalization, LRN, LpNormalization,
MeanVarianceNormalization.

All compute in float32 for float16/bfloat16 inputs (float64 for double) and return the input
dtype; statistics outputs (LayerNormalization's Mean/InvStdDev) use the stash type.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from partitioner.executor.kernels.nn_common import channel_shape, to_compute
from partitioner.executor.registry import kernel

__all__ = [
    "batch_normalization",
    "layer_normalization",
    "group_normalization",
    "group_normalization_v18",
    "instance_normalization",
    "rms_normalization",
    "lrn",
    "lp_normalization",
    "mean_variance_normalization",
]

# TensorProto dtype codes of the stash/softmax precision attributes
_ONNX_FLOAT_CODES = {1: np.float32, 11: np.float64}


def _stash_dtype(x: np.ndarray, stash_type: int) -> np.dtype:
    if x.dtype == np.float64:
        return np.dtype(np.float64)
    return np.dtype(_ONNX_FLOAT_CODES.get(int(stash_type), np.float32))


@kernel("BatchNormalization", since=1)
def batch_normalization(
    x: np.ndarray,
    scale: np.ndarray,
    b: np.ndarray,
    input_mean: np.ndarray,
    input_var: np.ndarray,
    *,
    epsilon: float = 1e-5,
    momentum: float = 0.9,
    training_mode: int = 0,
    spatial: int = 1,
    is_test: int = 0,
    consumed_inputs: Sequence[int] | None = None,
) -> tuple[np.ndarray, ...]:
    """Inference: (x - mean) / sqrt(var + eps) * scale + b, folded to one multiply-add.

    With ``training_mode`` (opset 14+) the batch statistics normalise ``x`` and the running
    statistics are updated: running = input * momentum + current * (1 - momentum).
    """
    del spatial, is_test, consumed_inputs  # legacy attributes: the shapes already say it
    rank = x.ndim
    xc = to_compute(x)
    params = [to_compute(p) for p in (scale, b, input_mean, input_var)]
    scale_c, b_c, mean_c, var_c = (channel_shape(p, rank) for p in params)
    if training_mode:
        axes = (0, *range(2, rank))
        batch_mean = xc.mean(axis=axes, keepdims=True)
        batch_var = xc.var(axis=axes, keepdims=True)
        y = (xc - batch_mean) / np.sqrt(batch_var + epsilon) * scale_c + b_c
        running_mean = params[2] * momentum + batch_mean.reshape(-1) * (1 - momentum)
        running_var = params[3] * momentum + batch_var.reshape(-1) * (1 - momentum)
        return (
            y.astype(x.dtype, copy=False),
            running_mean.astype(input_mean.dtype, copy=False),
            running_var.astype(input_var.dtype, copy=False),
        )
    factor = scale_c / np.sqrt(var_c + epsilon)
    shift = b_c - mean_c * factor
    y = xc * factor.astype(xc.dtype, copy=False)
    y += shift.astype(xc.dtype, copy=False)
    return (y.astype(x.dtype, copy=False),)


def _normalize(
    xs: np.ndarray, first_axis: int, epsilon: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x - mean) * inv_std over the trailing axes from ``first_axis``; also mean and inv_std
    (keepdims). Rows are reduced with einsum, ~3x faster than np.mean on the last axis."""
    lead = xs.shape[:first_axis]
    rows = xs.reshape(int(np.prod(lead, dtype=np.int64)), -1)
    n = rows.shape[1]
    mean = np.einsum("ij->i", rows) / n
    centered = rows - mean[:, None]
    var = np.einsum("ij,ij->i", centered, centered) / n
    inv_std = 1.0 / np.sqrt(var + epsilon)
    centered *= inv_std[:, None]
    keep = lead + (1,) * (xs.ndim - first_axis)
    return centered.reshape(xs.shape), mean.reshape(keep), inv_std.reshape(keep)


@kernel("LayerNormalization", since=17)
def layer_normalization(
    x: np.ndarray,
    scale: np.ndarray,
    b: np.ndarray | None = None,
    *,
    axis: int = -1,
    epsilon: float = 1e-5,
    stash_type: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalise over dims ``axis..``; returns Y, Mean and InvStdDev (the last two keepdims)."""
    axis = axis + x.ndim if axis < 0 else axis
    stash = _stash_dtype(x, stash_type)
    normalized, mean, inv_std = _normalize(x.astype(stash, copy=False), axis, epsilon)
    normalized *= scale.astype(stash, copy=False)
    if b is not None:
        normalized += b.astype(stash, copy=False)
    return normalized.astype(x.dtype, copy=False), mean, inv_std


def _group_norm(x: np.ndarray, num_groups: int, epsilon: float, stash: np.dtype) -> np.ndarray:
    n, c = x.shape[:2]
    grouped = x.astype(stash).reshape(n, num_groups, -1)
    normalized, _, _ = _normalize(grouped, 2, epsilon)
    return normalized.reshape(x.shape)


@kernel("GroupNormalization", since=21)
def group_normalization(
    x: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    *,
    epsilon: float = 1e-5,
    num_groups: int = 1,
    stash_type: int = 1,
) -> tuple[np.ndarray]:
    """Normalise each of ``num_groups`` channel groups; ``scale``/``bias`` are per channel (C,)."""
    stash = _stash_dtype(x, stash_type)
    y = _group_norm(x, num_groups, epsilon, stash)
    y = y * channel_shape(scale.astype(stash), x.ndim) + channel_shape(bias.astype(stash), x.ndim)
    return (y.astype(x.dtype, copy=False),)


@kernel("GroupNormalization", since=18)
def group_normalization_v18(
    x: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    *,
    epsilon: float = 1e-5,
    num_groups: int = 1,
) -> tuple[np.ndarray]:
    """Opset 18: ``scale``/``bias`` are per group (num_groups,) and shared by a group's channels."""
    c = x.shape[1]
    per_channel = c // num_groups
    return group_normalization(
        x,
        np.repeat(np.asarray(scale), per_channel),
        np.repeat(np.asarray(bias), per_channel),
        epsilon=epsilon,
        num_groups=num_groups,
    )


@kernel("InstanceNormalization", since=6)
def instance_normalization(
    x: np.ndarray, scale: np.ndarray, b: np.ndarray, *, epsilon: float = 1e-5
) -> tuple[np.ndarray]:
    """Normalise each (n, c) plane over its spatial dims, then per-channel scale and shift."""
    xc = to_compute(x)
    normalized, _, _ = _normalize(xc, 2, epsilon)
    y = normalized * channel_shape(to_compute(scale), x.ndim) + channel_shape(to_compute(b), x.ndim)
    return (y.astype(x.dtype, copy=False),)


@kernel("RMSNormalization", since=23)
def rms_normalization(
    x: np.ndarray,
    scale: np.ndarray,
    *,
    axis: int = -1,
    epsilon: float = 1e-5,
    stash_type: int = 1,
) -> tuple[np.ndarray]:
    """x / sqrt(mean(x^2 over dims axis..) + eps) * scale."""
    axis = axis + x.ndim if axis < 0 else axis
    stash = _stash_dtype(x, stash_type)
    xs = x.astype(stash, copy=False)
    rows = xs.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
    mean_square = np.einsum("ij,ij->i", rows, rows) / rows.shape[1]
    y = rows * (1.0 / np.sqrt(mean_square + epsilon))[:, None]
    y = y.reshape(x.shape)
    y *= scale.astype(stash, copy=False)
    return (y.astype(x.dtype, copy=False),)


@kernel("LRN", since=1)
def lrn(
    x: np.ndarray,
    *,
    size: int,
    alpha: float = 1e-4,
    beta: float = 0.75,
    bias: float = 1.0,
) -> tuple[np.ndarray]:
    """x / (bias + alpha / size * square_sum)^beta, local response normalisation.

    square_sum sums x^2 over channels [c - (size-1)//2, c + ceil((size-1)/2)].
    """
    xc = to_compute(x)
    squares = xc * xc
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    pad = [(0, 0)] * x.ndim
    pad[1] = (lo, hi)
    padded = np.pad(squares, pad)
    c = x.shape[1]
    window_sum = np.zeros_like(squares)
    for offset in range(size):  # loop over the (small) channel window, vectorised over all else
        window_sum += padded[:, offset : offset + c]
    y = xc / (bias + alpha / size * window_sum) ** beta
    return (y.astype(x.dtype, copy=False),)


@kernel("LpNormalization", since=1)
def lp_normalization(x: np.ndarray, *, axis: int = -1, p: int = 2) -> tuple[np.ndarray]:
    """x / ||x||_p along ``axis``; a zero norm gives zeros."""
    xc = to_compute(x)
    if p == 1:
        norm = np.sum(np.abs(xc), axis=axis, keepdims=True)
    else:
        norm = np.sqrt(np.sum(xc * xc, axis=axis, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(norm == 0, 0, xc / norm)
    return (y.astype(x.dtype, copy=False),)


@kernel("MeanVarianceNormalization", since=9)
def mean_variance_normalization(
    x: np.ndarray, *, axes: Sequence[int] = (0, 2, 3)
) -> tuple[np.ndarray]:
    """(x - mean) / (sqrt(E[x^2] - E[x]^2) + 1e-9) over ``axes`` (the ONNX function body)."""
    xc = to_compute(x)
    axes = tuple(int(a) for a in axes)
    mean = xc.mean(axis=axes, keepdims=True)
    variance = np.mean(xc * xc, axis=axes, keepdims=True) - mean * mean
    y = (xc - mean) / (np.sqrt(variance) + 1e-9)
    return (y.astype(x.dtype, copy=False),)
