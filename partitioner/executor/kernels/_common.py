"""Helpers shared by the kernel modules: axes, dtypes and small conversions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ml_dtypes
import numpy as np

__all__ = [
    "ML_FLOAT_DTYPES",
    "compute_dtype",
    "is_float",
    "normalize_axis",
    "normalize_axes",
    "int_list",
    "upcast",
    "scalar",
]

# Float formats NumPy has no native arithmetic for (ml_dtypes provides them).
ML_FLOAT_DTYPES: frozenset[np.dtype] = frozenset(
    np.dtype(t)
    for t in (
        ml_dtypes.bfloat16,
        ml_dtypes.float8_e4m3fn,
        ml_dtypes.float8_e4m3fnuz,
        ml_dtypes.float8_e5m2,
        ml_dtypes.float8_e5m2fnuz,
        ml_dtypes.float8_e8m0fnu,
        ml_dtypes.float4_e2m1fn,
    )
)


def is_float(dtype: np.dtype) -> bool:
    """True for every floating format, ml_dtypes ones included."""
    return np.dtype(dtype).kind == "f" or np.dtype(dtype) in ML_FLOAT_DTYPES


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype to accumulate in: float32 for 16-bit and smaller floats, else unchanged.

    Sums, products and matrix products of float16/bfloat16 are done in float32
    and rounded once at the end, as onnxruntime and GPUs do.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float16 or dtype in ML_FLOAT_DTYPES:
        return np.dtype(np.float32)
    return dtype


def upcast(x: np.ndarray) -> np.ndarray:
    """``x`` in its `compute_dtype` (no copy when already there)."""
    return x.astype(compute_dtype(x.dtype), copy=False)


def normalize_axis(axis: int, rank: int) -> int:
    """A possibly negative axis as an index in ``[0, rank)``."""
    axis = int(axis)
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def normalize_axes(axes: Iterable[int], rank: int) -> tuple[int, ...]:
    """Possibly negative axes as sorted-as-given indices in ``[0, rank)``."""
    return tuple(normalize_axis(a, rank) for a in axes)


def int_list(values: Any) -> list[int]:
    """A 1-D int tensor (or tuple attribute) as a list of Python ints."""
    if values is None:
        return []
    return [int(v) for v in np.asarray(values).reshape(-1)]


def scalar(x: Any) -> Any:
    """The single element of a 0-d (or, leniently, one-element) tensor, as a NumPy scalar."""
    return np.asarray(x).reshape(-1)[0]
