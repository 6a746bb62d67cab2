"""RoiAlign (opsets 10, 16): bilinear-sampled average or max pooling over regions of interest.

Average mode is separable: each RoI's output is A_y X A_x^T, where A_y (bins x H) holds, for
every bin row, the mean over its sample rows of their bilinear row weights (A_x likewise),
so a RoI costs two small matmuls. Max mode loops over the sample offsets inside a bin (a
few), each step a gather vectorised over RoIs, channels and bins.
"""

from __future__ import annotations

import numpy as np

from partitioner.executor.kernels.nn_common import as_str, to_compute
from partitioner.executor.registry import kernel

__all__ = ["roi_align", "roi_align_v10"]


_AxisSamples = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]


def _axis_samples(
    start: np.ndarray, end: np.ndarray, bins: int, size: int, sampling_ratio: int, half_pixel: bool
) -> _AxisSamples:
    """Per RoI r, bin p and sample i: low/high indices and weights along one axis.

    Returns (low, high, w_low, w_high, in_grid, inside) of shape (R, bins, G) and the per-RoI
    sample count (R,): ``in_grid`` is False for padding samples past a RoI's own count,
    ``inside`` is False for samples beyond [-1, size] (which contribute zero).
    """
    extent = end - start
    if not half_pixel:  # legacy mode forces a RoI at least one pixel wide
        extent = np.maximum(extent, 1.0)
    bin_size = extent / bins
    grid = (
        np.full(start.shape, sampling_ratio, dtype=np.int64)
        if sampling_ratio > 0
        else np.ceil(extent / bins).astype(np.int64)
    )
    samples = max(int(grid.max(initial=1)), 1)
    i = np.arange(samples)[None, None, :]
    p = np.arange(bins)[None, :, None]
    g = np.maximum(grid, 1)[:, None, None]
    coord = (
        start[:, None, None] + p * bin_size[:, None, None] + (i + 0.5) * bin_size[:, None, None] / g
    )
    in_grid = np.broadcast_to(i < grid[:, None, None], coord.shape)
    inside = (coord >= -1.0) & (coord <= size)
    coord = np.maximum(coord, 0.0)
    low = np.floor(coord).astype(np.int64)
    at_edge = low >= size - 1
    low = np.where(at_edge, size - 1, low)
    high = np.where(at_edge, size - 1, low + 1)
    frac = np.where(at_edge, 0.0, coord - low)
    return low, high, 1.0 - frac, frac, in_grid, inside, np.maximum(grid, 1)


def _axis_matrix(
    low: np.ndarray,
    high: np.ndarray,
    w_low: np.ndarray,
    w_high: np.ndarray,
    in_grid: np.ndarray,
    inside: np.ndarray,
    grid: np.ndarray,
    size: int,
) -> np.ndarray:
    """(R, bins, size): mean over samples of the bilinear weights along one axis."""
    r, bins, _ = low.shape
    use = in_grid & inside
    mat = np.zeros((r, bins, size))
    rows = np.broadcast_to(np.arange(r)[:, None, None], low.shape)
    cols = np.broadcast_to(np.arange(bins)[None, :, None], low.shape)
    np.add.at(mat, (rows, cols, low), w_low * use)
    np.add.at(mat, (rows, cols, high), w_high * use)
    return mat / grid[:, None, None]


def _roi_align(
    x: np.ndarray,
    rois: np.ndarray,
    batch_indices: np.ndarray,
    mode: str,
    out_h: int,
    out_w: int,
    sampling_ratio: int,
    spatial_scale: float,
    half_pixel: bool,
) -> np.ndarray:
    xc = to_compute(x)
    _, channels, height, width = x.shape
    boxes = np.asarray(rois, dtype=np.float64) * spatial_scale - (0.5 if half_pixel else 0.0)
    batch = np.asarray(batch_indices, dtype=np.int64)
    ys = _axis_samples(boxes[:, 1], boxes[:, 3], out_h, height, sampling_ratio, half_pixel)
    xs = _axis_samples(boxes[:, 0], boxes[:, 2], out_w, width, sampling_ratio, half_pixel)
    if mode == "avg":
        a_y = _axis_matrix(*ys, height).astype(xc.dtype)
        a_x = _axis_matrix(*xs, width).astype(xc.dtype)
        out = np.empty((len(batch), channels, out_h, out_w), dtype=xc.dtype)
        for image in np.unique(batch):  # a few images; every RoI of one image at once
            sel = batch == image
            rows = np.einsum("rph,chw->rcpw", a_y[sel], xc[image], optimize=True)
            out[sel] = np.einsum("rcpw,rqw->rcpq", rows, a_x[sel], optimize=True)
        return out
    return _roi_max(xc, batch, ys, xs)


def _roi_max(xc: np.ndarray, batch: np.ndarray, ys: _AxisSamples, xs: _AxisSamples) -> np.ndarray:
    """onnxruntime's max mode: per sample the largest of its four weighted corners (zero for a
    sample outside the map), then the largest sample of the bin."""
    y_low, y_high, wy_low, wy_high, y_grid, y_inside, _ = ys
    x_low, x_high, wx_low, wx_high, x_grid, x_inside, _ = xs
    rois, out_h, samples_y = y_low.shape
    out_w, samples_x = x_low.shape[1:]
    best = np.full((rois, out_h, out_w, xc.shape[1]), -np.inf, dtype=xc.dtype)
    b = batch[:, None, None]
    for iy in range(samples_y):
        for ix in range(samples_x):
            sample = None
            for yi, wy in ((y_low, wy_low), (y_high, wy_high)):
                for xi, wx in ((x_low, wx_low), (x_high, wx_high)):
                    v = xc[b, :, yi[:, :, iy, None], xi[:, None, :, ix]]  # (R, PH, PW, C)
                    v = v * (wy[:, :, iy, None] * wx[:, None, :, ix])[..., None]
                    sample = v if sample is None else np.maximum(sample, v)
            inside = (y_inside[:, :, iy, None] & x_inside[:, None, :, ix])[..., None]
            sample = np.where(inside, sample, 0.0)
            in_grid = (y_grid[:, :, iy, None] & x_grid[:, None, :, ix])[..., None]
            best = np.where(in_grid, np.maximum(best, sample), best)
    best[np.isneginf(best)] = 0.0  # a degenerate RoI with no samples pools to zero
    return best.transpose(0, 3, 1, 2)


@kernel("RoiAlign", since=16)
def roi_align(
    x: np.ndarray,
    rois: np.ndarray,
    batch_indices: np.ndarray,
    *,
    coordinate_transformation_mode: str = "half_pixel",
    mode: str = "avg",
    output_height: int = 1,
    output_width: int = 1,
    sampling_ratio: int = 0,
    spatial_scale: float = 1.0,
) -> tuple[np.ndarray]:
    """(num_rois, C, output_height, output_width) pooled from x (N, C, H, W) over ``rois``
    given as [x1, y1, x2, y2] in input-image coordinates."""
    half_pixel = as_str(coordinate_transformation_mode) == "half_pixel"
    y = _roi_align(
        x, rois, batch_indices, as_str(mode), output_height, output_width,
        sampling_ratio, spatial_scale, half_pixel,
    )  # fmt: skip
    return (y.astype(x.dtype, copy=False),)


@kernel("RoiAlign", since=10)
def roi_align_v10(
    x: np.ndarray,
    rois: np.ndarray,
    batch_indices: np.ndarray,
    *,
    mode: str = "avg",
    output_height: int = 1,
    output_width: int = 1,
    sampling_ratio: int = 0,
    spatial_scale: float = 1.0,
) -> tuple[np.ndarray]:
    """Opset 10 had no pixel shift (today's 'output_half_pixel')."""
    return roi_align(
        x, rois, batch_indices, coordinate_transformation_mode="output_half_pixel", mode=mode,
        output_height=output_height, output_width=output_width, sampling_ratio=sampling_ratio,
        spatial_scale=spatial_scale,
    )  # fmt: skip
