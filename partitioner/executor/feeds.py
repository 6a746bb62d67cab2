"""Checks on the arrays a caller feeds to a model's graph inputs.

A wrong feed is the user's input at fault, so every problem is a `FeedError`
with one line naming the input and what it should be.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

from partitioner.executor.errors import FeedError

__all__ = ["as_feed", "check_feeds", "check_feed"]


def as_feed(value: Any) -> Any:
    """NumPy scalars become 0-d arrays; str arrays become object arrays (ONNX strings)."""
    if isinstance(value, np.generic):
        return np.asarray(value)
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return value.astype(object)
    return value


def check_feeds(graph: onnx.GraphProto, feeds: Mapping[str, Any]) -> None:
    """Every non-initializer graph input is fed, nothing unknown is, and tensors match.

    Raises:
        FeedError: the first problem found.
    """
    initialized = {t.name for t in graph.initializer}
    inputs = {v.name: v for v in graph.input}
    unknown = sorted(set(feeds) - set(inputs))
    if unknown:
        raise FeedError(
            f"feed {unknown[0]!r} is not a model input; the inputs are: {', '.join(inputs)}"
        )
    for name, info in inputs.items():
        if name not in feeds:
            if name in initialized:
                continue
            raise FeedError(f"model input {name!r} is not fed; provide an array for it")
        check_feed(name, info, feeds[name])


def check_feed(name: str, info: onnx.ValueInfoProto, value: Any) -> None:
    """A tensor feed has the declared dtype, rank and static dimensions.

    Raises:
        FeedError: the dtype, rank or a static dimension differs.
    """
    if not info.type.HasField("tensor_type"):
        return  # sequences / optionals: the kernels check what they use
    tensor_type = info.type.tensor_type
    if not isinstance(value, np.ndarray):
        raise FeedError(f"model input {name!r} must be a NumPy array, got {type(value).__name__}")
    if tensor_type.elem_type:
        expected = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        if value.dtype != expected:
            raise FeedError(
                f"model input {name!r} must have dtype {np.dtype(expected)}, got {value.dtype}; "
                f"cast it before feeding"
            )
    if tensor_type.HasField("shape"):
        dims = tensor_type.shape.dim
        bad_rank = len(dims) != value.ndim
        if bad_rank or any(
            d.HasField("dim_value") and d.dim_value != size
            for d, size in zip(dims, value.shape, strict=True)
        ):
            declared = ",".join(d.dim_param or str(d.dim_value) for d in dims)
            raise FeedError(
                f"model input {name!r} must have shape [{declared}], got "
                f"{list(value.shape)}; feed an array of the declared shape"
            )
