"""ONNX element types as numpy-style names, with their storage size in bits.

The rest of the project speaks numpy-style dtype names ("float32", "bfloat16",
"int64"), the same keys the targets use for peak FLOP/s tables.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto

__all__ = ["dtype_name", "dtype_bits", "tensor_nbytes", "numpy_dtype", "FLOAT_DTYPES"]

# Sub-byte and odd-width types pack several elements per byte; their numpy
# stand-ins (ml_dtypes) occupy a whole byte each, so the width is listed here.
_PACKED_BITS = {
    TensorProto.INT4: 4,
    TensorProto.UINT4: 4,
    TensorProto.FLOAT4E2M1: 4,
}
for _name, _bits in (("INT2", 2), ("UINT2", 2), ("FLOAT6E2M3", 6), ("FLOAT6E3M2", 6)):
    if hasattr(TensorProto, _name):
        _PACKED_BITS[getattr(TensorProto, _name)] = _bits

FLOAT_DTYPES = frozenset(
    {
        "float64",
        "float32",
        "float16",
        "bfloat16",
        "float8_e4m3fn",
        "float8_e4m3fnuz",
        "float8_e5m2",
        "float8_e5m2fnuz",
        "float8_e8m0fnu",
        "float4_e2m1fn",
        "complex64",
        "complex128",
    }
)


def numpy_dtype(elem_type: int) -> np.dtype:
    """The numpy (or ml_dtypes) dtype that holds ONNX element type ``elem_type``."""
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def dtype_name(elem_type: int) -> str:
    """Numpy-style name of an ONNX element type; "" for UNDEFINED, "string" for STRING."""
    if elem_type == TensorProto.UNDEFINED:
        return ""
    if elem_type == TensorProto.STRING:
        return "string"
    return numpy_dtype(elem_type).name


def dtype_bits(elem_type: int) -> int:
    """Storage bits per element. Strings have no fixed size; they are counted as 8 bytes."""
    if elem_type in _PACKED_BITS:
        return _PACKED_BITS[elem_type]
    if elem_type == TensorProto.STRING:
        return 64
    if elem_type == TensorProto.UNDEFINED:
        return 0
    return numpy_dtype(elem_type).itemsize * 8


def tensor_nbytes(elem_type: int, shape: tuple[int, ...]) -> int:
    """Bytes a tensor of this type and static shape occupies (packed types round up)."""
    return -(-math.prod(shape) * dtype_bits(elem_type) // 8)  # integers: exact for huge shapes
