"""Signal kernels: DFT (opsets 17, 20), STFT, MelWeightMatrix (window functions: kernels-core).

Complex tensors follow ONNX: a trailing axis of size 2 holds (real, imag); size 1 is real.
FFTs use numpy.fft in single precision (double for float64 inputs) and cast back.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from onnx.helper import tensor_dtype_to_np_dtype

from partitioner.executor.registry import kernel

__all__ = [
    "dft",
    "dft_v17",
    "stft",
    "mel_weight_matrix",
]


def _to_complex(x: np.ndarray) -> np.ndarray:
    """complex64 for float32 and narrower inputs (numpy.fft keeps single precision), else 128."""
    x = np.asarray(x)
    real = np.float64 if x.dtype == np.float64 else np.float32
    complex_dtype = np.complex128 if real is np.float64 else np.complex64
    xr = x.astype(real, copy=False)
    if xr.shape[-1] == 2:
        return (xr[..., 0] + 1j * xr[..., 1]).astype(complex_dtype)
    return xr[..., 0].astype(complex_dtype)


def _from_complex(z: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1).astype(dtype)


def _dft(
    x: np.ndarray, dft_length: int | None, axis: int, inverse: int, onesided: int
) -> np.ndarray:
    """``axis`` indexes the complex array (the input without its trailing real/imag axis)."""
    z = _to_complex(x)
    axis = axis + z.ndim if axis < 0 else axis
    size = z.shape[axis]
    if inverse and onesided:
        n = int(dft_length) if dft_length is not None else 2 * (size - 1)
        return np.fft.irfft(z, n=n, axis=axis)[..., None].astype(x.dtype)
    n = int(dft_length) if dft_length is not None else size
    out = np.fft.ifft(z, n=n, axis=axis) if inverse else np.fft.fft(z, n=n, axis=axis)
    if onesided:
        out = np.take(out, np.arange(n // 2 + 1), axis=axis)
    return _from_complex(out, x.dtype)


@kernel("DFT", since=20)
def dft(
    x: np.ndarray,
    dft_length: np.ndarray | None = None,
    axis: np.ndarray | None = None,
    *,
    inverse: int = 0,
    onesided: int = 0,
) -> tuple[np.ndarray]:
    """Opset 20: ``axis`` is an input (default -2, the last signal axis of the input)."""
    ax = -2 if axis is None else int(np.asarray(axis))
    ax = ax + 1 if ax < 0 else ax  # -2 of the input is -1 of the complex array
    length = None if dft_length is None else int(np.asarray(dft_length))
    return (_dft(x, length, ax, inverse, onesided),)


@kernel("DFT", since=17)
def dft_v17(
    x: np.ndarray,
    dft_length: np.ndarray | None = None,
    *,
    axis: int = 1,
    inverse: int = 0,
    onesided: int = 0,
) -> tuple[np.ndarray]:
    """Opset 17: ``axis`` is an attribute (default 1)."""
    length = None if dft_length is None else int(np.asarray(dft_length))
    return (_dft(x, length, axis, inverse, onesided),)


@kernel("STFT", since=17)
def stft(
    signal: np.ndarray,
    frame_step: np.ndarray,
    window: np.ndarray | None = None,
    frame_length: np.ndarray | None = None,
    *,
    onesided: int = 1,
) -> tuple[np.ndarray]:
    """Frames of ``frame_length`` every ``frame_step`` samples, windowed, then DFT'd.

    Returns (batch, frames, bins, 2).
    """
    z = _to_complex(signal)  # (batch, length)
    step = int(np.asarray(frame_step))
    if frame_length is not None:
        length = int(np.asarray(frame_length))
    elif window is not None:
        length = len(window)
    else:
        length = z.shape[1]
    frames = sliding_window_view(z, length, axis=1)[:, ::step]  # (batch, frames, length)
    if window is not None:
        frames = frames * np.asarray(window, dtype=np.float64)
    spectrum = np.fft.fft(frames, axis=-1)
    if onesided:
        spectrum = spectrum[..., : length // 2 + 1]
    return (_from_complex(spectrum, signal.dtype),)


@kernel("MelWeightMatrix", since=17)
def mel_weight_matrix(
    num_mel_bins: np.ndarray,
    dft_length: np.ndarray,
    sample_rate: np.ndarray,
    lower_edge_hertz: np.ndarray,
    upper_edge_hertz: np.ndarray,
    *,
    output_datatype: int = 1,
) -> tuple[np.ndarray]:
    """(dft_length // 2 + 1, num_mel_bins) triangles peaking at 1 on the mel scale.

    Band edges are spaced evenly in mel(f) = 2595 log10(1 + f / 700) and snapped to integer
    spectrogram bins as onnxruntime does.
    """
    mels, n_fft = int(np.asarray(num_mel_bins)), int(np.asarray(dft_length))
    rate = float(np.asarray(sample_rate))
    low = 2595 * np.log10(1 + float(np.asarray(lower_edge_hertz)) / 700)
    high = 2595 * np.log10(1 + float(np.asarray(upper_edge_hertz)) / 700)
    edges_mel = np.arange(mels + 2) * ((high - low) / (mels + 2)) + low
    edges_hz = 700 * (10 ** (edges_mel / 2595) - 1)
    bins = np.floor((n_fft + 1) * edges_hz / rate).astype(np.int64)
    left, center, right = bins[:-2], bins[1:-1], bins[2:]
    j = np.arange(n_fft // 2 + 1)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where(center > left, (j - left) / np.maximum(center - left, 1), 0.0)
        falling = (right - j) / np.maximum(right - center, 1)
    out = np.zeros((n_fft // 2 + 1, mels))
    out = np.where((j >= left) & (j <= center), rising, out)
    out = np.where((j >= center) & (j < right), falling, out)
    out = np.where(j == center, 1.0, out)
    return (out.astype(tensor_dtype_to_np_dtype(output_datatype)),)
