"""Matrix products: MatMul, Gemm, Einsum, MatMulInteger, Det.

float16/bfloat16 operands are multiplied in float32 (BLAS) and rounded once,
as onnxruntime and GPU tensor cores accumulate; integer MatMul stays integer.
Gemm's transposes are views, so BLAS reads them without copies.
"""

from __future__ import annotations

import numpy as np

from partitioner.executor.kernels._common import compute_dtype, upcast
from partitioner.executor.registry import kernel

__all__: list[str] = []


@kernel("MatMul", since=1)
def matmul(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
    if compute_dtype(a.dtype) != a.dtype:
        return (np.matmul(upcast(a), upcast(b)).astype(a.dtype),)
    return (np.matmul(a, b),)


@kernel("Gemm", since=7)
def gemm(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray | None = None,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    transA: int = 0,  # noqa: N803  (ONNX spelling)
    transB: int = 0,  # noqa: N803
) -> tuple[np.ndarray]:
    dtype = a.dtype
    left = upcast(a).T if transA else upcast(a)
    right = upcast(b).T if transB else upcast(b)
    work = compute_dtype(dtype)
    result = left @ right
    if alpha != 1.0:
        result = result * work.type(alpha)
    if c is not None and beta != 0.0:
        bias = upcast(c)
        result = result + (bias if beta == 1.0 else bias * work.type(beta))
    return (result.astype(dtype, copy=False),)


@kernel("Einsum", since=12)
def einsum(*inputs: np.ndarray, equation: str) -> tuple[np.ndarray]:
    dtype = inputs[0].dtype
    operands = [upcast(x) for x in inputs]
    # optimize=True lets NumPy pick a contraction order and route pairs to BLAS.
    result = np.einsum(equation.replace(" ", ""), *operands, optimize=len(operands) > 1)
    return (np.asarray(result).astype(dtype, copy=False),)


@kernel("MatMulInteger", since=10)
def matmul_integer(
    a: np.ndarray,
    b: np.ndarray,
    a_zero_point: np.ndarray | None = None,
    b_zero_point: np.ndarray | None = None,
) -> tuple[np.ndarray]:
    left = a.astype(np.int32)
    right = b.astype(np.int32)
    if a_zero_point is not None:
        # A per-row zero point (shape [M]) lines up with A's rows.
        zero = a_zero_point.astype(np.int32)
        left = left - (zero.reshape(-1, 1) if zero.ndim == 1 and zero.size > 1 else zero)
    if b_zero_point is not None:
        right = right - b_zero_point.astype(np.int32)
    return (np.matmul(left, right),)


@kernel("Det", since=11)
def det(x: np.ndarray) -> tuple[np.ndarray]:
    return (np.linalg.det(upcast(x)).astype(x.dtype),)
