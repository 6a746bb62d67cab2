"""Sharding rules for the ops that only move data: Reshape, Expand, Flatten, Transpose, (Un)Squeeze.

A reshape keeps a split when each rank's chunk stays one contiguous block of the
reshaped group of dims: the split dim is the leading (non-1) dim of its group
and the group's leading output dim is divisible by n. Then rank r's chunk of
``[B, S, H*D]`` on axis 2 is exactly chunk r of ``[B, S, H, D]`` on axis 2 (when
n divides H), and the other way round. The node's shape input then gets the
per-rank target shape (the local output shape, spelled out), recorded in
`Decision.shape_values`; that needs the shape input to be a constant.
"""

from __future__ import annotations

from collections.abc import Sequence

from passes.analysis.sharding_common import axes_operand, normalize_axes, whole
from passes.analysis.sharding_layout import Layout
from passes.analysis.sharding_state import Decision, Propagation
from passes.ir import Node

__all__ = ["reshape_axis", "reshape", "expand", "flatten", "transpose", "squeeze", "unsqueeze"]

Group = tuple[range, range]


def _groups(src: Sequence[int], dst: Sequence[int]) -> list[Group] | None:
    """Runs of input dims and output dims with equal products, left to right.

    None when the shapes hold different element counts or an empty dim.
    """
    if 0 in src or 0 in dst:
        return None
    groups: list[Group] = []
    i = o = 0
    while i < len(src) and o < len(dst):
        i0, o0 = i, o
        p_in, p_out = src[i], dst[o]
        i, o = i + 1, o + 1
        while p_in != p_out:
            if p_in < p_out and i < len(src):
                p_in, i = p_in * src[i], i + 1
            elif p_out < p_in and o < len(dst):
                p_out, o = p_out * dst[o], o + 1
            else:
                return None
        groups.append((range(i0, i), range(o0, o)))
    # trailing size-1 dims join the last group
    if any(d != 1 for d in src[i:]) or any(d != 1 for d in dst[o:]):
        return None
    if groups and (i < len(src) or o < len(dst)):
        last_in, last_out = groups[-1]
        groups[-1] = (range(last_in.start, len(src)), range(last_out.start, len(dst)))
    return groups


def _leading(dims: Sequence[int], axes: range) -> int | None:
    return next((a for a in axes if dims[a] != 1), None)


def reshape_axis(src: Sequence[int], dst: Sequence[int], axis: int, degree: int) -> int | None:
    """The output axis a split on input ``axis`` lands on after a reshape, or None.

    Examples (n = 2): ``[1, 8, 64]`` split on 2 -> ``[1, 8, 4, 16]`` on 2;
    ``[1, 4, 8, 16]`` on 1 -> ``[1, 2, 2, 8, 16]`` on 1; ``[1, 8, 4, 16]`` on 3
    -> ``[1, 8, 64]``: None (each rank's chunk is strided, not contiguous).
    """
    groups = _groups(src, dst)
    if groups is None:
        return None
    for ins, outs in groups:
        if axis not in ins:
            continue
        if _leading(src, ins) != axis:
            return None
        lead = _leading(dst, outs)
        if lead is None or dst[lead] < degree or dst[lead] % degree:
            return None
        return lead
    return None


def _local(shape: Sequence[int], axis: int, degree: int) -> tuple[int, ...]:
    return tuple(d // degree if a == axis else d for a, d in enumerate(shape))


def _shape_input_rewrite(ctx: Propagation, node: Node, out_axis: int) -> Decision | None:
    """Split output on ``out_axis``, the shape input (input 1) set to the local output shape."""
    if len(node.inputs) < 2 or not node.inputs[1]:
        return None
    shape_name = node.inputs[1]
    t = ctx.graph.tensors.get(shape_name)
    out = ctx.shape(node.outputs[0])
    if t is None or not t.is_param or out is None or not ctx.layout(shape_name).is_whole:
        return None
    local = _local(out, out_axis, ctx.degree)
    return Decision((Layout(out_axis),), shape_values={shape_name: local})


def reshape(ctx: Propagation, node: Node) -> Decision | None:
    data = node.inputs[0]
    axis = ctx.layout(data).axis
    if axis is None:
        return whole(node) if ctx.all_whole(node.inputs[1:]) else None
    src, dst = ctx.shape(data), ctx.shape(node.outputs[0])
    if src is None or dst is None:
        return None
    out_axis = reshape_axis(src, dst, axis, ctx.degree)
    return None if out_axis is None else _shape_input_rewrite(ctx, node, out_axis)


def expand(ctx: Propagation, node: Node) -> Decision | None:
    """Broadcasting keeps the split dim (it is not 1), aligned from the right."""
    data = node.inputs[0]
    axis = ctx.layout(data).axis
    if axis is None:
        return whole(node) if ctx.all_whole(node.inputs[1:]) else None
    src, dst = ctx.shape(data), ctx.shape(node.outputs[0])
    if src is None or dst is None:
        return None
    out_axis = axis + len(dst) - len(src)
    return None if dst[out_axis] != src[axis] else _shape_input_rewrite(ctx, node, out_axis)


def flatten(ctx: Propagation, node: Node) -> Decision | None:
    """``[d0..dk-1, dk..]`` -> ``[prod(d0..dk-1), prod(dk..)]``: a reshape without a shape input."""
    axis = ctx.layout(node.inputs[0]).axis
    src = ctx.shape(node.inputs[0])
    if axis is None:
        return whole(node)
    if src is None:
        return None
    cut = int(node.attributes.get("axis", 1))
    cut = cut + len(src) if cut < 0 else cut  # Flatten's axis may equal the rank
    if not 0 <= cut <= len(src):
        return None
    side = range(0, cut) if axis < cut else range(cut, len(src))
    return None if _leading(src, side) != axis else Decision((Layout(0 if axis < cut else 1),))


def transpose(ctx: Propagation, node: Node) -> Decision | None:
    axis = ctx.layout(node.inputs[0]).axis
    if axis is None:
        return whole(node)
    shape = ctx.shape(node.inputs[0])
    if shape is None:
        return None
    perm = list(node.attributes.get("perm") or reversed(range(len(shape))))
    return Decision((Layout(perm.index(axis)),))


def unsqueeze(ctx: Propagation, node: Node) -> Decision | None:
    axis = ctx.layout(node.inputs[0]).axis
    if axis is None:
        return whole(node) if ctx.all_whole(node.inputs[1:]) else None
    axes = axes_operand(ctx, node, 1)
    shape = ctx.shape(node.inputs[0])
    if not axes or shape is None:
        return None
    inserted = normalize_axes(axes, len(shape) + len(axes))
    if inserted is None:
        return None
    kept = [a for a in range(len(shape) + len(axes)) if a not in inserted]
    return Decision((Layout(kept[axis]),))


def squeeze(ctx: Propagation, node: Node) -> Decision | None:
    axis = ctx.layout(node.inputs[0]).axis
    if axis is None:
        return whole(node) if ctx.all_whole(node.inputs[1:]) else None
    shape = ctx.shape(node.inputs[0])
    axes = axes_operand(ctx, node, 1)
    if axes is None or shape is None:
        return None
    removed = (
        normalize_axes(axes, len(shape))
        if axes
        else tuple(a for a, d in enumerate(shape) if d == 1)
    )
    if removed is None or axis in removed:
        return None
    return Decision((Layout(axis - sum(1 for a in removed if a < axis)),))
