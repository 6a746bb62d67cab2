"""Control flow: If, Loop, Scan. Sub-graphs run through ``ctx.run_subgraph``,
which sees the enclosing scope's values (ONNX outer-scope references).

A Python loop over iterations is inherent to Loop/Scan; each iteration runs
the vectorised kernels of the body.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

from partitioner.executor.kernels._common import normalize_axis
from partitioner.executor.registry import KernelContext, kernel

__all__: list[str] = []


@kernel("If", since=1, needs_context=True)
def if_(
    cond: np.ndarray,
    *,
    ctx: KernelContext,
    then_branch: onnx.GraphProto,
    else_branch: onnx.GraphProto,
) -> tuple[Any, ...]:
    branch = then_branch if bool(np.asarray(cond).reshape(-1)[0]) else else_branch
    return tuple(ctx.run_subgraph(branch, [], ctx.outer_values))


def _empty_scan_output(body: onnx.GraphProto, output_index: int) -> np.ndarray:
    """A zero-iteration scan output: length 0 along the new axis, dtype from the body."""
    value_type = body.output[output_index].type
    elem_type = value_type.tensor_type.elem_type if value_type.HasField("tensor_type") else 0
    dtype = helper.tensor_dtype_to_np_dtype(elem_type) if elem_type else np.float32
    dims = value_type.tensor_type.shape.dim
    tail = [d.dim_value for d in dims] if all(d.HasField("dim_value") for d in dims) else []
    return np.zeros((0, *tail), dtype=dtype)


@kernel("Loop", since=1, needs_context=True)
def loop(
    max_trip_count: np.ndarray | None,
    cond: np.ndarray | None,
    *initial: Any,
    ctx: KernelContext,
    body: onnx.GraphProto,
) -> tuple[Any, ...]:
    limit = None if max_trip_count is None else int(np.asarray(max_trip_count).reshape(-1)[0])
    running = True if cond is None else bool(np.asarray(cond).reshape(-1)[0])
    carried = list(initial)
    scan_count = len(body.output) - 1 - len(carried)
    scanned: list[list[Any]] = [[] for _ in range(scan_count)]
    iteration = 0
    while running and (limit is None or iteration < limit):
        feeds = [np.array(iteration, dtype=np.int64), np.array(running), *carried]
        outputs = ctx.run_subgraph(body, feeds, ctx.outer_values)
        running = bool(np.asarray(outputs[0]).reshape(-1)[0])
        carried = list(outputs[1 : 1 + len(carried)])
        for collected, value in zip(scanned, outputs[1 + len(carried) :], strict=True):
            collected.append(value)
        iteration += 1
    stacked = [
        np.stack(values) if values else _empty_scan_output(body, 1 + len(carried) + i)
        for i, values in enumerate(scanned)
    ]
    return (*carried, *stacked)


@kernel("Scan", since=9, needs_context=True)
def scan(
    *inputs: Any,
    ctx: KernelContext,
    body: onnx.GraphProto,
    num_scan_inputs: int,
    scan_input_axes: tuple[int, ...] | None = None,
    scan_input_directions: tuple[int, ...] | None = None,
    scan_output_axes: tuple[int, ...] | None = None,
    scan_output_directions: tuple[int, ...] | None = None,
) -> tuple[Any, ...]:
    state_count = len(inputs) - num_scan_inputs
    states = list(inputs[:state_count])
    sequences = []
    for i, x in enumerate(inputs[state_count:]):
        axis = normalize_axis(scan_input_axes[i], x.ndim) if scan_input_axes else 0
        moved = np.moveaxis(x, axis, 0)
        reverse = bool(scan_input_directions and scan_input_directions[i])
        sequences.append(moved[::-1] if reverse else moved)
    steps = sequences[0].shape[0] if sequences else 0
    output_count = len(body.output) - state_count
    collected: list[list[np.ndarray]] = [[] for _ in range(output_count)]
    for t in range(steps):
        outputs = ctx.run_subgraph(body, [*states, *(s[t] for s in sequences)], ctx.outer_values)
        states = list(outputs[:state_count])
        for bucket, value in zip(collected, outputs[state_count:], strict=True):
            bucket.append(value)
    results = []
    for j, values in enumerate(collected):
        stacked = np.stack(values) if values else _empty_scan_output(body, state_count + j)
        if scan_output_directions and scan_output_directions[j]:
            stacked = stacked[::-1]
        if scan_output_axes:
            stacked = np.moveaxis(stacked, 0, normalize_axis(scan_output_axes[j], stacked.ndim))
        results.append(stacked)
    return (*states, *results)
