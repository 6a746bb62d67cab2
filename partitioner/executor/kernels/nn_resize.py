"""Resize (opsets 10-19) and Upsample: nearest / linear / cubic, every coordinate transform,
axes, keep_aspect_ratio_policy, antialias, exclude_outside, tf_crop_and_resize extrapolation.

Resizing is separable: each resized axis is done in turn. Per axis, every output position
gets a source coordinate; nearest takes one source index, linear/cubic a few taps with
weights (the Keys cubic / triangle kernel, stretched by 1/scale when antialiasing a
downsample). Out-of-range taps are clamped to the edge (or dropped with exclude_outside).
The gather is one ``np.take`` per tap, vectorised over the whole tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from partitioner.executor.kernels.nn_common import as_str, to_compute
from partitioner.executor.registry import kernel

__all__ = ["resize", "resize_v18", "resize_v11", "resize_v10", "upsample", "upsample_v7"]


@dataclass(frozen=True)
class _Mode:
    """The interpolation settings shared by every axis of one Resize."""

    mode: str = "nearest"
    coordinate_transformation_mode: str = "half_pixel"
    nearest_mode: str = "round_prefer_floor"
    cubic_coeff_a: float = -0.75
    exclude_outside: int = 0
    extrapolation_value: float = 0.0
    antialias: int = 0


def _source_coords(
    out_size: int, in_size: int, scale: float, roi: tuple[float, float], mode: _Mode
) -> np.ndarray:
    """Source coordinate of every output position along one axis (float64)."""
    x = np.arange(out_size, dtype=np.float64)
    ctm = mode.coordinate_transformation_mode
    if ctm == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if ctm == "half_pixel_symmetric":
        adjustment = out_size / (scale * in_size)
        offset = in_size / 2 * (1 - adjustment)
        return offset + (x + 0.5) / scale - 0.5
    if ctm == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_size > 1 else np.zeros_like(x)
    if ctm == "align_corners":
        return x * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros_like(x)
    if ctm == "asymmetric":
        return x / scale
    if ctm == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if ctm == "tf_crop_and_resize":
        start, end = roi
        if out_size == 1:
            return np.full_like(x, 0.5 * (start + end) * (in_size - 1))
        return start * (in_size - 1) + x * (end - start) * (in_size - 1) / (out_size - 1)
    raise ValueError(f"Resize: unknown coordinate_transformation_mode {ctm!r}")


def _nearest_index(coords: np.ndarray, in_size: int, scale: float, nearest_mode: str) -> np.ndarray:
    if nearest_mode == "round_prefer_floor":
        index = np.ceil(coords - 0.5)
    elif nearest_mode == "round_prefer_ceil":
        index = np.floor(coords + 0.5)
    elif nearest_mode == "floor":
        index = np.floor(coords)
    elif nearest_mode == "ceil":
        index = np.ceil(coords)
    elif nearest_mode == "simple":  # opset 10 / Upsample: ceil when downsampling, else floor
        index = np.ceil(coords) if scale < 1 else np.floor(coords)
    else:
        raise ValueError(f"Resize: unknown nearest_mode {nearest_mode!r}")
    return np.clip(index, 0, in_size - 1).astype(np.int64)


def _keys_cubic(d: np.ndarray, a: float) -> np.ndarray:
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _tap_weights(
    coords: np.ndarray, in_size: int, scale: float, mode: _Mode
) -> tuple[np.ndarray, np.ndarray]:
    """Clamped source indices and weights (out, taps) for linear or cubic interpolation."""
    radius = 1.0 if mode.mode == "linear" else 2.0
    stretch = min(scale, 1.0) if mode.antialias else 1.0
    reach = math.ceil(radius / stretch)
    base = np.floor(coords)
    taps = base[:, None] + np.arange(1 - reach, reach + 1)[None, :]
    d = (taps - coords[:, None]) * stretch
    if mode.mode == "linear":
        weights = np.clip(1 - np.abs(d), 0, None)
    else:
        weights = _keys_cubic(d, mode.cubic_coeff_a)
    if mode.antialias and stretch < 1:
        weights = weights / weights.sum(axis=1, keepdims=True)
    if mode.exclude_outside:
        weights = np.where((taps < 0) | (taps > in_size - 1), 0.0, weights)
        weights = weights / weights.sum(axis=1, keepdims=True)
    return np.clip(taps, 0, in_size - 1).astype(np.int64), weights


def _resize_axis(
    x: np.ndarray, axis: int, out_size: int, scale: float, roi: tuple[float, float], mode: _Mode
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize one axis; also the (out,) mask of positions outside the crop (tf_crop_and_resize)."""
    in_size = x.shape[axis]
    coords = _source_coords(out_size, in_size, scale, roi, mode)
    outside = None
    if mode.coordinate_transformation_mode == "tf_crop_and_resize":
        outside = (coords < 0) | (coords > in_size - 1)
    if mode.mode == "nearest":
        return np.take(
            x, _nearest_index(coords, in_size, scale, mode.nearest_mode), axis=axis
        ), outside
    index, weights = _tap_weights(coords, in_size, scale, mode)
    shape = [1] * x.ndim
    shape[axis] = out_size
    y = None
    for t in range(index.shape[1]):  # loop over the few kernel taps, vectorised over the tensor
        w = weights[:, t].astype(x.dtype).reshape(shape)
        term = np.take(x, index[:, t], axis=axis) * w
        y = term if y is None else y + term
    return y, outside


def _output_plan(
    shape: Sequence[int],
    scales: np.ndarray | None,
    sizes: np.ndarray | None,
    axes: Sequence[int],
    keep_aspect_ratio_policy: str,
) -> tuple[list[int], list[float]]:
    """Output size and scale per resized axis (in ``axes`` order)."""
    in_sizes = [shape[a] for a in axes]
    if sizes is not None and np.asarray(sizes).size:
        out = [int(v) for v in np.asarray(sizes)]
        ratios = [o / i for o, i in zip(out, in_sizes, strict=True)]
        if keep_aspect_ratio_policy in ("not_larger", "not_smaller"):
            pick = min if keep_aspect_ratio_policy == "not_larger" else max
            common = pick(ratios)
            return [int(common * i + 0.5) for i in in_sizes], [common] * len(axes)
        return out, ratios
    factors = [float(v) for v in np.asarray(scales, dtype=np.float64)]
    return [int(math.floor(f * i)) for f, i in zip(factors, in_sizes, strict=True)], factors


def _resize(
    x: np.ndarray,
    roi: np.ndarray | None,
    scales: np.ndarray | None,
    sizes: np.ndarray | None,
    axes: Sequence[int] | None,
    keep_aspect_ratio_policy: str,
    mode: _Mode,
) -> tuple[np.ndarray]:
    rank = x.ndim
    axes = [a + rank if a < 0 else a for a in axes] if axes else list(range(rank))
    out_sizes, factors = _output_plan(x.shape, scales, sizes, axes, keep_aspect_ratio_policy)
    roi_values = np.asarray(roi, dtype=np.float64) if roi is not None else np.empty(0)
    n_roi = len(roi_values) // 2
    work = x if mode.mode == "nearest" else to_compute(x)
    outside_any = None
    for i, (axis, out_size, factor) in enumerate(zip(axes, out_sizes, factors, strict=True)):
        crop = (roi_values[i], roi_values[n_roi + i]) if n_roi else (0.0, 1.0)
        if out_size == work.shape[axis] and factor == 1.0 and crop == (0.0, 1.0):
            continue
        work, outside = _resize_axis(work, axis, out_size, factor, crop, mode)
        if outside is not None and outside.any():
            view = [1] * rank
            view[axis] = out_size
            mask = outside.reshape(view)
            outside_any = mask if outside_any is None else (outside_any | mask)
    if outside_any is not None:
        work = np.where(outside_any, mode.extrapolation_value, work)
    if np.dtype(x.dtype).kind in "iu" and work.dtype != x.dtype:
        info = np.iinfo(x.dtype)
        work = np.clip(np.rint(work), info.min, info.max)
    return (np.ascontiguousarray(work).astype(x.dtype, copy=False),)


def _mode(**attrs: str | float | int) -> _Mode:
    text = {"mode", "coordinate_transformation_mode", "nearest_mode"}
    return _Mode(**{k: (as_str(v) if k in text else v) for k, v in attrs.items()})


@kernel("Resize", since=19)
def resize(
    x: np.ndarray,
    roi: np.ndarray | None = None,
    scales: np.ndarray | None = None,
    sizes: np.ndarray | None = None,
    *,
    antialias: int = 0,
    axes: Sequence[int] | None = None,
    coordinate_transformation_mode: str = "half_pixel",
    cubic_coeff_a: float = -0.75,
    exclude_outside: int = 0,
    extrapolation_value: float = 0.0,
    keep_aspect_ratio_policy: str = "stretch",
    mode: str = "nearest",
    nearest_mode: str = "round_prefer_floor",
) -> tuple[np.ndarray]:
    """Resize to ``sizes`` or by ``scales`` (over ``axes``), see the module docstring."""
    settings = _mode(
        mode=mode, coordinate_transformation_mode=coordinate_transformation_mode,
        nearest_mode=nearest_mode, cubic_coeff_a=cubic_coeff_a, exclude_outside=exclude_outside,
        extrapolation_value=extrapolation_value, antialias=antialias,
    )  # fmt: skip
    return _resize(x, roi, scales, sizes, axes, as_str(keep_aspect_ratio_policy), settings)


@kernel("Resize", since=18)
def resize_v18(
    x: np.ndarray,
    roi: np.ndarray | None = None,
    scales: np.ndarray | None = None,
    sizes: np.ndarray | None = None,
    **attrs: str | float | int | Sequence[int],
) -> tuple[np.ndarray]:
    """Opset 18 = opset 19 without half_pixel_symmetric (an unknown mode raises)."""
    return resize(x, roi, scales, sizes, **attrs)


@kernel("Resize", since=11)
def resize_v11(
    x: np.ndarray,
    roi: np.ndarray | None = None,
    scales: np.ndarray | None = None,
    sizes: np.ndarray | None = None,
    *,
    coordinate_transformation_mode: str = "half_pixel",
    cubic_coeff_a: float = -0.75,
    exclude_outside: int = 0,
    extrapolation_value: float = 0.0,
    mode: str = "nearest",
    nearest_mode: str = "round_prefer_floor",
) -> tuple[np.ndarray]:
    """Opsets 11-17: no axes, antialias or keep_aspect_ratio_policy."""
    return resize(
        x, roi, scales, sizes, coordinate_transformation_mode=coordinate_transformation_mode,
        cubic_coeff_a=cubic_coeff_a, exclude_outside=exclude_outside,
        extrapolation_value=extrapolation_value, mode=mode, nearest_mode=nearest_mode,
    )  # fmt: skip


def _legacy(x: np.ndarray, scales: Sequence[float], mode: str) -> tuple[np.ndarray]:
    """Opset-10 Resize and Upsample: asymmetric coordinates, 'simple' nearest rounding."""
    settings = _mode(
        mode=as_str(mode), coordinate_transformation_mode="asymmetric", nearest_mode="simple"
    )
    return _resize(x, None, np.asarray(scales, dtype=np.float64), None, None, "stretch", settings)


@kernel("Resize", since=10)
def resize_v10(x: np.ndarray, scales: np.ndarray, *, mode: str = "nearest") -> tuple[np.ndarray]:
    return _legacy(x, scales, mode)


@kernel("Upsample", since=9)
def upsample(x: np.ndarray, scales: np.ndarray, *, mode: str = "nearest") -> tuple[np.ndarray]:
    """Deprecated; the same as opset-10 Resize."""
    return _legacy(x, scales, mode)


@kernel("Upsample", since=7)
def upsample_v7(
    x: np.ndarray, *, mode: str = "nearest", scales: Sequence[float] = ()
) -> tuple[np.ndarray]:
    return _legacy(x, scales, mode)
