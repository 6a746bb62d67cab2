"""NN kernels keep float16/bfloat16 in and out, computing close to their float32 results."""

from __future__ import annotations

from collections.abc import Callable

import ml_dtypes
import numpy as np
import pytest

from partitioner.executor.kernels.nn_activation import gelu, hard_swish, leaky_relu, relu
from partitioner.executor.kernels.nn_attention import attention_v23, rotary_embedding
from partitioner.executor.kernels.nn_conv import conv, conv_transpose
from partitioner.executor.kernels.nn_norm import (
    batch_normalization,
    group_normalization,
    instance_normalization,
    layer_normalization,
    rms_normalization,
)
from partitioner.executor.kernels.nn_pool import average_pool, global_average_pool, max_pool
from partitioner.executor.kernels.nn_resize import resize
from partitioner.executor.kernels.nn_softmax import log_softmax, softmax

RNG = np.random.default_rng(7)


def _r(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


X4, W4 = _r(2, 4, 9, 9), _r(6, 4, 3, 3) * 0.3
C4 = [_r(4) for _ in range(4)]
SEQ = _r(2, 5, 16)
HEADS = SEQ.reshape(2, 5, 4, 4).transpose(0, 2, 1, 3)  # (B, H, S, D)
ANGLES = _r(5, 2)
COS, SIN = np.cos(ANGLES)[None].repeat(2, 0), np.sin(ANGLES)[None].repeat(2, 0)  # (B, S, D/2)
SCALES = np.array([1, 1, 1.5, 2], np.float32)

CASES: dict[str, Callable[[Callable[[np.ndarray], np.ndarray]], tuple]] = {
    "conv": lambda c: conv(c(X4), c(W4), pads=[1, 1, 1, 1], strides=[2, 2]),
    "conv_transpose": lambda c: conv_transpose(c(X4), c(W4.transpose(1, 0, 2, 3)), strides=[2, 2]),
    "max_pool": lambda c: max_pool(c(X4), kernel_shape=[3, 3], pads=[1, 1, 1, 1])[:1],
    "average_pool": lambda c: average_pool(c(X4), kernel_shape=[2, 2], strides=[2, 2]),
    "global_average_pool": lambda c: global_average_pool(c(X4)),
    "batch_normalization": lambda c: batch_normalization(
        c(X4), c(C4[0]), c(C4[1]), c(C4[2]), c(np.abs(C4[3]) + 1)
    ),
    "instance_normalization": lambda c: instance_normalization(c(X4), c(C4[0]), c(C4[1])),
    "group_normalization": lambda c: group_normalization(c(X4), c(C4[0]), c(C4[1]), num_groups=2),
    "layer_normalization": lambda c: layer_normalization(c(SEQ), c(SEQ[0, 0]), c(SEQ[1, 0]))[:1],
    "rms_normalization": lambda c: rms_normalization(c(SEQ), c(SEQ[0, 0])),
    "softmax": lambda c: softmax(c(SEQ)),
    "log_softmax": lambda c: log_softmax(c(SEQ)),
    "relu": lambda c: relu(c(X4)),
    "leaky_relu": lambda c: leaky_relu(c(X4)),
    "hard_swish": lambda c: hard_swish(c(X4)),
    "gelu_tanh": lambda c: gelu(c(SEQ), approximate="tanh"),
    "gelu_erf": lambda c: gelu(c(SEQ)),
    "resize_linear": lambda c: resize(c(X4), None, SCALES, None, mode="linear"),
    "attention": lambda c: attention_v23(
        c(SEQ), c(SEQ[::-1]), c(SEQ), q_num_heads=2, kv_num_heads=2, is_causal=1
    )[:1],
    "rotary": lambda c: rotary_embedding(c(HEADS), c(COS), c(SIN)),
}  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_low_precision_in_and_out(name: str, dtype) -> None:
    def cast(a: np.ndarray) -> np.ndarray:
        return np.asarray(a).astype(dtype)

    def same(a: np.ndarray) -> np.ndarray:
        # the float32 reference sees exactly the rounded inputs
        return np.asarray(a).astype(dtype).astype(np.float32)

    low = CASES[name](cast)
    ref = CASES[name](same)
    tol = 2e-2 if dtype == np.float16 else 8e-2
    for got, want in zip(low, ref, strict=True):
        assert got.dtype == np.dtype(dtype), f"{name} returned {got.dtype}"
        np.testing.assert_allclose(got.astype(np.float32), want, rtol=tol, atol=tol)
