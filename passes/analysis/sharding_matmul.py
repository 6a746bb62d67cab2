"""Sharding rules for contractions: MatMul and Gemm (Megatron's column and row splits).

With a 2-D parameter weight ``W[K, N]``:

- activation whole -> *column split*: rank r holds columns chunk r of W (axis
  N) and computes that chunk of the output (split on its last axis);
- activation split on its last axis (the contraction K) -> *row split*: rank
  r holds rows chunk r of W (axis K) and computes a partial sum, all-reduced
  right after the node;
- activation split on a row or batch axis -> each rank multiplies its rows by
  the whole weight; the output keeps the split.

Between two activations (attention's Q·Kᵀ and probabilities·V), a split on the
same batch axis (the heads) carries through, as does a split on A's rows or
B's columns; both split on the contraction gives a partial sum.
"""

from __future__ import annotations

from dataclasses import replace

from passes.analysis.sharding_common import fit_operand, whole
from passes.analysis.sharding_layout import Layout
from passes.analysis.sharding_state import Decision, Propagation
from passes.ir import Node

__all__ = ["matmul", "gemm"]


def _is_weight(ctx: Propagation, name: str) -> bool:
    t = ctx.graph.tensors.get(name)
    return t is not None and t.is_param and t.is_static and len(t.shape or ()) == 2


def _is_param(ctx: Propagation, name: str) -> bool:
    t = ctx.graph.tensors.get(name)
    return t is not None and t.is_param


def matmul(ctx: Propagation, node: Node) -> Decision | None:
    if len(node.inputs) != 2 or not all(node.inputs):
        return None
    a, b = node.inputs
    if _is_weight(ctx, b) and not _is_param(ctx, a):
        return _matmul_weight(ctx, node, a, b)
    if not _is_param(ctx, a) and not _is_param(ctx, b):
        return _matmul_activations(ctx, node, a, b)
    return None


def _matmul_weight(ctx: Propagation, node: Node, act: str, weight: str) -> Decision | None:
    shape, out = ctx.shape(act), ctx.shape(node.outputs[0])
    if shape is None or out is None or len(shape) < 2:
        return None
    axis, weight_whole = ctx.layout(act).axis, ctx.layout(weight).is_whole
    if axis is None:
        if ctx.column_split_allowed(node) and ctx.can_split_source(weight, 1):
            return Decision((Layout(len(out) - 1),), split_sources={weight: 1}, column_split=True)
        return whole(node) if weight_whole else None
    if axis == len(shape) - 1:
        if not ctx.can_split_source(weight, 0):
            return None
        return Decision((Layout(partial=True),), split_sources={weight: 0}, ends_split=True)
    # a row or batch axis: each rank multiplies its rows by the whole weight
    return Decision((Layout(axis + len(out) - len(shape)),)) if weight_whole else None


def _out_axis(layout: Layout, rank: int, out_rank: int, matrix_axis: int) -> int | None:
    """Where an operand's split lands in the output; None if whole, -1 if on K.

    ``matrix_axis`` is the operand's own matrix axis that survives (A: rows,
    rank - 2; B: columns, rank - 1); the other matrix axis is the contraction.
    """
    if not layout.is_split:
        return None
    axis = layout.axis
    assert axis is not None
    if axis >= rank - 2 and axis != matrix_axis:
        return -1
    return axis + out_rank - rank


def _matmul_activations(ctx: Propagation, node: Node, a: str, b: str) -> Decision | None:
    sa, sb, out = ctx.shape(a), ctx.shape(b), ctx.shape(node.outputs[0])
    if sa is None or sb is None or out is None or len(sa) < 2 or len(sb) < 2:
        return None
    rank = len(out)
    axis_a = _out_axis(ctx.layout(a), len(sa), rank, len(sa) - 2)
    axis_b = _out_axis(ctx.layout(b), len(sb), rank, len(sb) - 1)
    if axis_a == -1 and axis_b == -1:
        return Decision((Layout(partial=True),), ends_split=True)
    regather: tuple[str, ...] = ()
    if axis_a is not None and axis_b is not None and axis_a != axis_b:
        # keep the operand with more bytes split and gather the other (GSPMD's reshard)
        smaller = a if ctx.planned_nbytes(a) < ctx.planned_nbytes(b) else b
        if a == b or ctx.is_source(smaller):
            return None
        regather = (smaller,)
        axis_a, axis_b = (None, axis_b) if smaller == a else (axis_a, None)
    decision = _one_split(ctx, node, (a, axis_a), (b, axis_b), rank)
    return decision if decision is None else replace(decision, gathers=regather)


def _one_split(
    ctx: Propagation, node: Node, a: tuple[str, int | None], b: tuple[str, int | None], rank: int
) -> Decision | None:
    """A @ B where the operands' splits land on the same output axis, or one is whole."""
    (name_a, axis_a), (name_b, axis_b) = a, b
    if axis_a is None and axis_b is None:
        return whole(node)
    if -1 in (axis_a, axis_b):
        return None  # one operand split on the contraction, the other not
    if axis_a is not None and axis_b is not None:
        return Decision((Layout(axis_a),))
    axis = axis_a if axis_a is not None else axis_b
    assert axis is not None
    if axis >= rank - 2:
        return Decision((Layout(axis),))  # A's rows or B's columns: the other is read whole
    # a batch axis (the heads): the whole operand must broadcast over it or be sliced
    other = name_b if axis_a is not None else name_a
    fits, source_axis = fit_operand(ctx, other, rank, axis)
    if not fits:
        return None
    return Decision(
        (Layout(axis),), split_sources={} if source_axis is None else {other: source_axis}
    )


def gemm(ctx: Propagation, node: Node) -> Decision | None:
    """``alpha * A' @ B' + beta * C`` with B a 2-D weight (A' = Aᵀ if transA, same for B)."""
    if len(node.inputs) < 2 or not _is_weight(ctx, node.inputs[1]):
        return None
    a, b = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    if _is_param(ctx, a) or ctx.shape(a) is None or (bias and not ctx.layout(bias).is_whole):
        return None
    contraction_a = 0 if node.attributes.get("transA", 0) else 1
    contraction_b = 1 if node.attributes.get("transB", 0) else 0
    layout = ctx.layout(a)
    if layout.is_whole:
        return _gemm_column(ctx, node, b, 1 - contraction_b, bias)
    if layout.axis == contraction_a:
        # every rank would add beta * C to its partial sum: n times C after the all-reduce
        if bias is not None or not ctx.can_split_source(b, contraction_b):
            return None
        return Decision((Layout(partial=True),), split_sources={b: contraction_b}, ends_split=True)
    if not ctx.layout(b).is_whole:
        return None
    fits, bias_axis = (True, None) if bias is None else fit_operand(ctx, bias, 2, 0)
    if not fits:
        return None
    splits = {bias: bias_axis} if bias is not None and bias_axis is not None else {}
    return Decision((Layout(0),), split_sources=splits)


def _gemm_column(
    ctx: Propagation, node: Node, weight: str, n_axis: int, bias: str | None
) -> Decision | None:
    can_split = ctx.column_split_allowed(node) and ctx.can_split_source(weight, n_axis)
    fits, bias_axis = (True, None) if bias is None else fit_operand(ctx, bias, 2, 1)
    if not can_split or not fits:
        weights_whole = ctx.layout(weight).is_whole
        return whole(node) if weights_whole and ctx.all_whole([bias or ""]) else None
    splits = {weight: n_axis}
    if bias is not None and bias_axis is not None:
        splits[bias] = bias_axis
    return Decision((Layout(1),), split_sources=splits, column_split=True)
