"""Cast, CastLike and BitCast, exact to the bit for every ONNX numeric format.

bfloat16, float8, float4, int4/int2 are ml_dtypes arrays. Float8 casts
saturate by default (``saturate=1``: ±Inf and out-of-range go to ±max), as the
ONNX tables say; FLOAT8E8M0 uses onnx's own rounding helper.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from partitioner.executor.registry import kernel

__all__ = ["cast_array"]

_SATURATING_FLOAT8 = frozenset(
    np.dtype(t)
    for t in (
        ml_dtypes.float8_e4m3fn,
        ml_dtypes.float8_e4m3fnuz,
        ml_dtypes.float8_e5m2,
        ml_dtypes.float8_e5m2fnuz,
    )
)


def _to_string(x: np.ndarray) -> np.ndarray:
    return x.astype(np.str_).astype(object)


def cast_array(
    x: np.ndarray, to: np.dtype, *, saturate: int = 1, round_mode: str = "up"
) -> np.ndarray:
    """``x`` converted to ``to`` with ONNX Cast semantics.

    Args:
        x: any numeric, bool or string (object) array.
        to: target NumPy dtype (object for STRING).
        saturate: float8 targets only: clamp out-of-range values to ±max.
        round_mode: FLOAT8E8M0 only: "up", "down" or "nearest".
    """
    to = np.dtype(to)
    if x.dtype == to:
        return x
    if to.kind == "O":
        return _to_string(x)
    if x.dtype.kind in "OU":
        # Strings parse through float64 ("1e-5", "INF", "NaN" all accepted).
        return (
            np.array([float(s) for s in x.reshape(-1)], dtype=np.float64)
            .reshape(x.shape)
            .astype(to)
        )
    if to == np.dtype(ml_dtypes.float8_e8m0fnu):
        return numpy_helper.to_float8e8m0(x, bool(saturate), round_mode).astype(to)
    if to in _SATURATING_FLOAT8 and saturate:
        info = ml_dtypes.finfo(to)
        wide = x.astype(np.float32) if x.dtype.kind != "f" or x.dtype == np.float16 else x
        return np.clip(wide, float(info.min), float(info.max)).astype(to)
    return x.astype(to)


@kernel("Cast", since=6)
def cast(x: np.ndarray, *, to: int, saturate: int = 1, round_mode: str = "up") -> tuple[np.ndarray]:
    target = helper.tensor_dtype_to_np_dtype(to)
    return (cast_array(x, target, saturate=saturate, round_mode=round_mode),)


@kernel("CastLike", since=15)
def cast_like(
    x: np.ndarray, like: np.ndarray, *, saturate: int = 1, round_mode: str = "up"
) -> tuple[np.ndarray]:
    target = like.dtype if like.dtype.kind != "U" else np.dtype(object)
    return (cast_array(x, target, saturate=saturate, round_mode=round_mode),)


@kernel("BitCast", since=26)
def bit_cast(x: np.ndarray, *, to: int) -> tuple[np.ndarray]:
    if to == TensorProto.STRING or x.dtype == object:
        raise ValueError("BitCast does not take strings")
    target = np.dtype(helper.tensor_dtype_to_np_dtype(to))
    if target.itemsize != x.dtype.itemsize:
        raise ValueError(f"BitCast needs equal bit widths, got {x.dtype} -> {target}")
    # .view reinterprets the little-endian bytes; it needs a contiguous array.
    return ((x if x.flags.c_contiguous else x.copy()).view(target),)
