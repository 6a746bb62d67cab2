"""Helpers shared by the per-op sharding rules: axes, broadcasting, running whole."""

from __future__ import annotations

from collections.abc import Sequence

from passes.analysis.sharding_layout import REPLICATED, Layout
from passes.analysis.sharding_state import Decision, Propagation
from passes.ir import Node

__all__ = [
    "normalize_axis",
    "normalize_axes",
    "whole",
    "replicate",
    "fit_operand",
    "resolve_split_axis",
    "join_split",
    "axes_operand",
]


def normalize_axis(axis: int, rank: int) -> int | None:
    """``axis`` as a non-negative index into ``rank`` dims, or None when out of range."""
    a = axis + rank if axis < 0 else axis
    return a if 0 <= a < rank else None


def normalize_axes(axes: Sequence[int], rank: int) -> tuple[int, ...] | None:
    out = [normalize_axis(a, rank) for a in axes]
    return tuple(a for a in out if a is not None) if None not in out else None


def whole(node: Node) -> Decision:
    """The node runs whole on every rank, on inputs that are whole already."""
    return Decision.same(node, REPLICATED)


def replicate(ctx: Propagation, node: Node) -> Decision:
    """No rule applies: gather every split input first and run the node whole."""
    split = tuple(dict.fromkeys(n for n in node.present_inputs if ctx.layout(n).is_split))
    return Decision.same(node, REPLICATED, gathers=split)


def fit_operand(
    ctx: Propagation, name: str, out_rank: int, out_axis: int
) -> tuple[bool, int | None]:
    """Can a whole operand of a broadcasting op join an output split on ``out_axis``?

    Returns ``(fits, axis)``: it fits when it lacks that axis or has size 1 there
    (it broadcasts), or when it is a parameter / KV cache of full size that can be
    read sliced on ``axis``. A whole activation of full size does not fit: the
    op then runs whole (see `passes.analysis.sharding`).
    """
    shape = ctx.shape(name)
    if shape is None:
        return False, None
    k = out_axis - (out_rank - len(shape))
    if k < 0 or shape[k] == 1:
        return True, None
    if ctx.can_split_source(name, k):
        return True, k
    return False, None


def resolve_split_axis(
    ctx: Propagation, names: Sequence[str], out_rank: int
) -> tuple[bool, int | None, tuple[str, ...]]:
    """The output axis the split inputs among ``names`` keep (aligned from the right).

    Returns ``(ok, axis, regather)``: axis None when no input is split. When split
    inputs land on different axes, the axis whose inputs hold the most bytes wins
    and the others are to be gathered (``regather``), as GSPMD reshards the
    smaller operand; ok is False when one of those is a parameter or KV cache
    (nothing can gather it) or a split input has no static shape.
    """
    by_axis: dict[int, list[str]] = {}
    for name in dict.fromkeys(names):
        axis = ctx.layout(name).axis
        if axis is None:
            continue
        shape = ctx.shape(name)
        if shape is None:
            return False, None, ()
        by_axis.setdefault(axis + out_rank - len(shape), []).append(name)
    if not by_axis:
        return True, None, ()
    axis = max(sorted(by_axis), key=lambda a: sum(ctx.planned_nbytes(n) for n in by_axis[a]))
    regather = tuple(n for a, group in by_axis.items() if a != axis for n in group)
    if any(ctx.is_source(n) for n in regather):
        return False, None, ()
    return True, axis, regather


def join_split(
    ctx: Propagation, node: Node, names: Sequence[str], out_rank: int, *, broadcast: bool = True
) -> Decision | None:
    """Outputs split like the inputs among ``names`` (a broadcasting op's operands).

    The inputs split on the kept axis carry it; the others must fit it (see
    `fit_operand`; without ``broadcast``, as Concat's operands, only by being
    sliced). None when they cannot.
    """
    ok, axis, regather = resolve_split_axis(ctx, names, out_rank)
    if not ok:
        return None
    if axis is None:
        return whole(node) if ctx.all_whole(node.present_inputs) else None
    splits: dict[str, int] = {}
    for name in dict.fromkeys(names):
        if ctx.layout(name).is_split and name not in regather:
            continue
        fits, source_axis = fit_operand(ctx, name, out_rank, axis)
        if not fits or (source_axis is None and not broadcast):
            return None
        if source_axis is not None:
            splits[name] = source_axis
    return Decision.same(node, Layout(axis), split_sources=splits, gathers=regather)


def axes_operand(ctx: Propagation, node: Node, input_index: int) -> tuple[int, ...] | None:
    """The ``axes`` of Squeeze/Unsqueeze/Reduce*/Slice: an input (newer opsets) or an attribute.

    Returns () when neither is given, None when the input's value cannot be read.
    """
    if len(node.inputs) > input_index and node.inputs[input_index]:
        if not ctx.layout(node.inputs[input_index]).is_whole:
            return None
        return ctx.constants.ints(node.inputs[input_index])
    return tuple(int(a) for a in node.attributes.get("axes", ()))
