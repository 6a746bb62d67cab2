"""Reductions (all Reduce* ops, both the axes-attribute and the axes-input forms),
ArgMax/ArgMin, CumSum/CumProd and TopK.

Empty ``axes`` reduce over every axis unless ``noop_with_empty_axes`` is set, in
which case the reduction is over no axis (composite ones still apply their
element-wise steps: ReduceSumSquare squares, ReduceLogSum takes the log).
16-bit floats accumulate in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from partitioner.executor.kernels._common import (
    ML_FLOAT_DTYPES,
    compute_dtype,
    int_list,
    normalize_axes,
    normalize_axis,
)
from partitioner.executor.registry import kernel

__all__: list[str] = []

Axes = tuple[int, ...] | None
Reducer = Callable[[np.ndarray, Axes, bool], np.ndarray]


def _reduction_axes(
    data: np.ndarray, axes_input: np.ndarray | None, axes_attr: Any, noop: int
) -> Axes:
    """None = every axis; () = no axis (the no-op case)."""
    chosen = axes_input if axes_input is not None else axes_attr
    values = int_list(chosen) if chosen is not None else []
    if not values:
        return () if noop else None
    return normalize_axes(values, data.ndim)


def _sum(x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
    return np.sum(x, axis=axes, keepdims=keep, dtype=x.dtype)


def _mean(x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
    count = x.size if axes is None else int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(x, axis=axes, keepdims=keep, dtype=x.dtype) / x.dtype.type(count)


def _extreme(ufunc: np.ufunc, x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
    # The identity makes empty reductions give -inf/+inf (or the int limits).
    if x.dtype == bool:
        initial: Any = ufunc is np.minimum
    elif x.dtype.kind == "f":
        initial = np.inf if ufunc is np.minimum else -np.inf
    else:
        info = np.iinfo(x.dtype)
        initial = info.max if ufunc is np.minimum else info.min
    return ufunc.reduce(x, axis=axes, keepdims=keep, initial=initial)


def _log_sum_exp(x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
    peak = _extreme(np.maximum, x, axes, True)
    peak = np.where(np.isfinite(peak), peak, 0)
    with np.errstate(divide="ignore"):
        total = np.log(np.sum(np.exp(x - peak), axis=axes, keepdims=True)) + peak
    return total if keep else np.squeeze(total, axis=axes)


def _with_logs(fn: Reducer) -> Reducer:
    def reducer(x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return fn(x, axes, keep)

    return reducer


_REDUCERS: dict[str, Reducer] = {
    "ReduceSum": _sum,
    "ReduceMean": _mean,
    "ReduceProd": lambda x, a, k: np.prod(x, axis=a, keepdims=k, dtype=x.dtype),
    "ReduceMax": lambda x, a, k: _extreme(np.maximum, x, a, k),
    "ReduceMin": lambda x, a, k: _extreme(np.minimum, x, a, k),
    "ReduceSumSquare": lambda x, a, k: _sum(x * x, a, k),
    "ReduceL1": lambda x, a, k: _sum(np.abs(x), a, k),
    "ReduceL2": lambda x, a, k: np.sqrt(_sum(x * x, a, k)),
    "ReduceLogSum": _with_logs(lambda x, a, k: np.log(_sum(x, a, k))),
    "ReduceLogSumExp": _log_sum_exp,
}


def _register_reduce(op_type: str, reducer: Reducer) -> None:
    def reduce_kernel(
        data: np.ndarray,
        axes_input: np.ndarray | None = None,
        *,
        axes: tuple[int, ...] | None = None,
        keepdims: int = 1,
        noop_with_empty_axes: int = 0,
    ) -> tuple[np.ndarray]:
        chosen = _reduction_axes(data, axes_input, axes, noop_with_empty_axes)
        work = data.astype(compute_dtype(data.dtype), copy=False)
        result = reducer(work, chosen, bool(keepdims))
        return (np.asarray(result).astype(data.dtype, copy=False),)

    reduce_kernel.__name__ = f"{op_type.lower()}_kernel"
    kernel(op_type, since=1)(reduce_kernel)


for _op, _reducer in _REDUCERS.items():
    _register_reduce(_op, _reducer)


def _comparable(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) if x.dtype in ML_FLOAT_DTYPES else x


def _arg_extreme(
    pick: Callable[..., np.ndarray], x: np.ndarray, axis: int, keepdims: int, last: int
) -> np.ndarray:
    x = _comparable(x)
    axis = normalize_axis(axis, x.ndim)
    if last:
        # The last occurrence is the first one in the reversed array.
        result = x.shape[axis] - 1 - pick(np.flip(x, axis), axis=axis, keepdims=True)
    else:
        result = pick(x, axis=axis, keepdims=True)
    result = result.astype(np.int64)
    return result if keepdims else np.squeeze(result, axis=axis)


@kernel("ArgMax", since=1)
def arg_max(
    x: np.ndarray, *, axis: int = 0, keepdims: int = 1, select_last_index: int = 0
) -> tuple[np.ndarray]:
    return (_arg_extreme(np.argmax, x, axis, keepdims, select_last_index),)


@kernel("ArgMin", since=1)
def arg_min(
    x: np.ndarray, *, axis: int = 0, keepdims: int = 1, select_last_index: int = 0
) -> tuple[np.ndarray]:
    return (_arg_extreme(np.argmin, x, axis, keepdims, select_last_index),)


def _cumulative(
    accumulate: np.ufunc,
    identity: int,
    x: np.ndarray,
    axis: np.ndarray,
    exclusive: int,
    reverse: int,
) -> np.ndarray:
    ax = normalize_axis(int(np.asarray(axis).reshape(-1)[0]), x.ndim)
    work = x.astype(compute_dtype(x.dtype), copy=False)
    if reverse:
        work = np.flip(work, ax)
    result = accumulate.accumulate(work, axis=ax, dtype=work.dtype)
    if exclusive:
        # Shift by one along the axis: element i holds the total of elements < i.
        lead = np.full_like(np.take(result, [0], axis=ax), identity)
        result = np.concatenate([lead, np.take(result, np.arange(x.shape[ax] - 1), axis=ax)], ax)
    if reverse:
        result = np.flip(result, ax)
    return result.astype(x.dtype, copy=False)


@kernel("CumSum", since=11)
def cum_sum(
    x: np.ndarray, axis: np.ndarray, *, exclusive: int = 0, reverse: int = 0
) -> tuple[np.ndarray]:
    return (_cumulative(np.add, 0, x, axis, exclusive, reverse),)


@kernel("CumProd", since=26)
def cum_prod(
    x: np.ndarray, axis: np.ndarray, *, exclusive: int = 0, reverse: int = 0
) -> tuple[np.ndarray]:
    return (_cumulative(np.multiply, 1, x, axis, exclusive, reverse),)


@kernel("TopK", since=10)
def top_k(
    x: np.ndarray,
    k: np.ndarray,
    *,
    axis: int = -1,
    largest: int = 1,
    sorted: int = 1,  # noqa: A002
) -> tuple[np.ndarray, np.ndarray]:
    axis = normalize_axis(axis, x.ndim)
    count = int(np.asarray(k).reshape(-1)[0])
    work = _comparable(x)
    if largest:
        # Descending order with ties broken by the lower index: stable-sort the
        # reversed array ascending, then read it backwards.
        order = np.argsort(np.flip(work, axis), axis=axis, kind="stable")
        order = x.shape[axis] - 1 - np.flip(order, axis)
    else:
        order = np.argsort(work, axis=axis, kind="stable")
    indices = np.take(order, np.arange(count), axis=axis).astype(np.int64)
    return np.take_along_axis(x, indices, axis=axis), indices
