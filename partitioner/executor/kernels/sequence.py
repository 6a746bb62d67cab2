"""Sequence and Optional ops. A sequence is a Python list of arrays; an empty
optional is ``None`` (the same value a missing optional input arrives as)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from partitioner.executor.kernels._common import int_list, normalize_axis
from partitioner.executor.kernels.tensor import split_sizes
from partitioner.executor.registry import KernelContext, kernel

__all__: list[str] = []


def _position(position: np.ndarray | None, length: int, default: int, *, inclusive: bool) -> int:
    if position is None:
        return default
    index = int(np.asarray(position).reshape(-1)[0])
    upper = length + 1 if inclusive else length
    if not -length <= index < upper:
        raise IndexError(f"sequence position {index} out of range for length {length}")
    return index + length if index < 0 else index


@kernel("SequenceEmpty", since=11)
def sequence_empty(*, dtype: int | None = None) -> tuple[list[np.ndarray]]:
    return ([],)


@kernel("SequenceConstruct", since=11)
def sequence_construct(*inputs: np.ndarray) -> tuple[list[np.ndarray]]:
    return (list(inputs),)


@kernel("SequenceInsert", since=11)
def sequence_insert(
    sequence: list[np.ndarray], tensor: np.ndarray, position: np.ndarray | None = None
) -> tuple[list[np.ndarray]]:
    where = _position(position, len(sequence), len(sequence), inclusive=True)
    return ([*sequence[:where], tensor, *sequence[where:]],)


@kernel("SequenceAt", since=11)
def sequence_at(sequence: list[np.ndarray], position: np.ndarray) -> tuple[np.ndarray]:
    return (sequence[_position(position, len(sequence), 0, inclusive=False)],)


@kernel("SequenceErase", since=11)
def sequence_erase(
    sequence: list[np.ndarray], position: np.ndarray | None = None
) -> tuple[list[np.ndarray]]:
    where = _position(position, len(sequence), len(sequence) - 1, inclusive=False)
    return ([*sequence[:where], *sequence[where + 1 :]],)


@kernel("SequenceLength", since=11)
def sequence_length(sequence: list[np.ndarray]) -> tuple[np.ndarray]:
    return (np.array(len(sequence), dtype=np.int64),)


@kernel("SplitToSequence", since=11)
def split_to_sequence(
    x: np.ndarray, split: np.ndarray | None = None, *, axis: int = 0, keepdims: int = 1
) -> tuple[list[np.ndarray]]:
    axis = normalize_axis(axis, x.ndim)
    dim = x.shape[axis]
    if split is None:
        parts = np.split(x, dim, axis=axis)
        return ([p if keepdims else np.squeeze(p, axis=axis) for p in parts],)
    if split.ndim == 0:
        # A scalar is the chunk length; the last chunk may be shorter.
        chunk = int(split)
        sizes = split_sizes(dim, None, -(-dim // chunk), 0)
    else:
        sizes = int_list(split)
    return (list(np.split(x, np.cumsum(sizes)[:-1], axis=axis)),)


@kernel("ConcatFromSequence", since=11)
def concat_from_sequence(
    sequence: list[np.ndarray], *, axis: int, new_axis: int = 0
) -> tuple[np.ndarray]:
    if new_axis:
        return (np.stack(sequence, axis=normalize_axis(axis, sequence[0].ndim + 1)),)
    return (np.concatenate(sequence, axis=normalize_axis(axis, sequence[0].ndim)),)


@kernel("SequenceMap", since=17, needs_context=True)
def sequence_map(
    sequence: list[np.ndarray], *extra: Any, ctx: KernelContext, body: onnx.GraphProto
) -> tuple[list[np.ndarray], ...]:
    outputs: list[list[np.ndarray]] = [[] for _ in body.output]
    for i, item in enumerate(sequence):
        feeds = [item, *(e[i] if isinstance(e, list) else e for e in extra)]
        for bucket, value in zip(
            outputs, ctx.run_subgraph(body, feeds, ctx.outer_values), strict=True
        ):
            bucket.append(value)
    return tuple(outputs)


@kernel("Optional", since=15)
def optional(value: Any = None, *, type: Any = None) -> tuple[Any]:  # noqa: A002
    return (value,)


@kernel("OptionalHasElement", since=15)
def optional_has_element(value: Any = None) -> tuple[np.ndarray]:
    return (np.array(value is not None),)


@kernel("OptionalGetElement", since=15)
def optional_get_element(value: Any) -> tuple[Any]:
    if value is None:
        raise ValueError("OptionalGetElement on an empty optional")
    return (value,)
