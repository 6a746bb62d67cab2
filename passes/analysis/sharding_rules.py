"""Per-op sharding rules and their dispatch: `decide(ctx, node)` for each runtime node.

A rule reads the layouts its inputs have now and returns a `Decision`, or None
when it does not apply; then the node runs whole on every rank, each split
input all-gathered first (`sharding_common.replicate`): costed, never wrong.
Ops without a rule (Shape, ScatterND, control flow, the com.microsoft
attention ops, custom domains, ...) always run that way.

Broadcasting ops follow the split input's axis, aligned from the right; a whole
operand must broadcast over it (size 1 or absent) or be a parameter / KV cache
that each rank can hold sliced. A whole *activation* of full size is not sliced:
the op runs whole instead. In transformer graphs that only happens where a
column-split output meets the replicated residual stream, and gathering there
lets `shard_graph` drop the column split that caused it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from passes.analysis.sharding_attention import attention
from passes.analysis.sharding_common import (
    axes_operand,
    join_split,
    normalize_axes,
    normalize_axis,
    replicate,
    whole,
)
from passes.analysis.sharding_embedding import vocab_split
from passes.analysis.sharding_layout import Layout
from passes.analysis.sharding_matmul import gemm, matmul
from passes.analysis.sharding_shapes import (
    expand,
    flatten,
    reshape,
    squeeze,
    transpose,
    unsqueeze,
)
from passes.analysis.sharding_state import Decision, Propagation
from passes.ir import Node

__all__ = ["decide", "RULES", "ELEMENTWISE"]

Rule = Callable[[Propagation, Node], Decision | None]

# Ops whose every output has the broadcast shape of all inputs (numpy rules). Dropout
# is the identity in the inference graphs planned here.
_ELEMENTWISE_NAMES = """Add Sub Mul Div Pow Mod Neg Abs Sqrt Reciprocal Exp Log Sigmoid Tanh
    Relu LeakyRelu Elu Selu Celu Gelu Erf Sin Cos Tan Asin Acos Atan Sinh Cosh Cast Where
    Equal Less Greater LessOrEqual GreaterOrEqual And Or Xor Not Clip Identity Floor Ceil
    Round Sign HardSigmoid HardSwish Softplus Softsign Mish IsNaN IsInf Max Min Sum Mean
    PRelu ThresholdedRelu Dropout BitwiseAnd BitwiseOr BitwiseXor BitwiseNot"""
ELEMENTWISE = frozenset(_ELEMENTWISE_NAMES.split())
_REDUCTION_NAMES = """ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2
    ReduceLogSum ReduceLogSumExp ReduceSumSquare"""
_REDUCTIONS = frozenset(_REDUCTION_NAMES.split())
# ReduceSum took its axes as an input from opset 13, the other reductions from 18.
_AXES_INPUT_OPSET = {"ReduceSum": 13}


def elementwise(ctx: Propagation, node: Node) -> Decision | None:
    out = ctx.shape(node.outputs[0])
    return None if out is None else join_split(ctx, node, node.present_inputs, len(out))


def linear_quantization(ctx: Propagation, node: Node) -> Decision | None:
    """QuantizeLinear/DequantizeLinear with a per-tensor scale (and zero point): elementwise
    over input 0, so its split carries through; per-axis or blocked scales run whole."""
    for name in node.present_inputs[1:]:
        shape = ctx.shape(name)
        if shape is None or math.prod(shape) != 1:
            return None
    source = node.inputs[0]
    if ctx.is_source(source) and source not in ctx.sources:
        axis = _joined_split(ctx, node)
        if axis is not None and ctx.can_split_source(source, axis):
            # a dequantised KV cache read split like the new rows appended to it
            return Decision.same(node, Layout(axis), split_sources={source: axis})
    return Decision.same(node, ctx.layout(source))


def _joined_split(ctx: Propagation, node: Node) -> int | None:
    """The axis the other operands of the Concat reading ``node``'s output are split on,
    when that Concat is its only reader and the axis is not the one it joins on."""
    out = ctx.graph.tensors.get(node.outputs[0])
    if out is None or len(out.consumers) != 1:
        return None
    concat = ctx.graph.nodes[out.consumers[0]]
    shape = ctx.shape(out.name)
    if concat.op_type != "Concat" or shape is None:
        return None
    joined = normalize_axis(int(concat.attributes.get("axis", 0)), len(shape))
    axes = {ctx.layout(n).axis for n in concat.present_inputs if n != out.name}
    axis = next(iter(axes)) if len(axes) == 1 else None
    return axis if axis is not None and axis != joined else None


def follow_first(ctx: Propagation, node: Node) -> Decision | None:
    """CastLike: the output is the first input converted; the second only gives the type."""
    return Decision.same(node, ctx.layout(node.inputs[0]))


def _follow_unless(ctx: Propagation, node: Node, reduced: set[int], keepdims: bool) -> Decision:
    """The split of input 0 carries through an op over ``reduced`` axes, unless it is one."""
    layout = ctx.layout(node.inputs[0])
    if not layout.is_split:
        return whole(node)
    axis = layout.axis
    assert axis is not None
    if axis in reduced:
        return replicate(ctx, node)
    if not keepdims:
        axis -= sum(1 for a in reduced if a < axis)
    return Decision.same(node, Layout(axis))


def softmax(ctx: Propagation, node: Node) -> Decision | None:
    """Softmax/LogSoftmax/Hardmax; before opset 13 they work over all axes from ``axis`` on."""
    shape = ctx.shape(node.inputs[0])
    if shape is None:
        return None
    modern = ctx.opset >= 13
    axis = normalize_axis(int(node.attributes.get("axis", -1 if modern else 1)), len(shape))
    if axis is None:
        return None
    reduced = {axis} if modern else set(range(axis, len(shape)))
    return _follow_unless(ctx, node, reduced, keepdims=True)


def reduction(ctx: Propagation, node: Node) -> Decision | None:
    shape = ctx.shape(node.inputs[0])
    if shape is None:
        return None
    if ctx.opset >= _AXES_INPUT_OPSET.get(node.op_type, 18):
        axes = axes_operand(ctx, node, 1)
    else:
        axes = tuple(int(a) for a in node.attributes.get("axes", ()))
    if axes is None:
        return None
    keepdims = bool(node.attributes.get("keepdims", 1))
    if not axes and node.attributes.get("noop_with_empty_axes", 0):
        return _follow_unless(ctx, node, set(), keepdims=True)
    reduced = normalize_axes(axes, len(shape)) if axes else tuple(range(len(shape)))
    if reduced is None:
        return None
    return _follow_unless(ctx, node, set(reduced), keepdims)


def arg_reduction(ctx: Propagation, node: Node) -> Decision | None:
    """ArgMax/ArgMin over one axis."""
    shape = ctx.shape(node.inputs[0])
    axis = (
        None if shape is None else normalize_axis(int(node.attributes.get("axis", 0)), len(shape))
    )
    if axis is None:
        return None
    return _follow_unless(ctx, node, {axis}, bool(node.attributes.get("keepdims", 1)))


def normalization(ctx: Propagation, node: Node) -> Decision | None:
    """LayerNormalization / RMSNormalization over the axes from ``axis`` on (scale, bias there)."""
    shape = ctx.shape(node.inputs[0])
    if shape is None or not ctx.all_whole(node.inputs[1:]):
        return None
    axis = normalize_axis(int(node.attributes.get("axis", -1)), len(shape))
    if axis is None:
        return None
    return _follow_unless(ctx, node, set(range(axis, len(shape))), keepdims=True)


def concat(ctx: Propagation, node: Node) -> Decision | None:
    out = ctx.shape(node.outputs[0])
    joined = None if out is None else normalize_axis(int(node.attributes.get("axis", 0)), len(out))
    if out is None or joined is None:
        return None
    # operands of a Concat never broadcast: a whole one must be sliced to join a split
    decision = join_split(ctx, node, node.present_inputs, len(out), broadcast=False)
    return None if decision is None or decision.outputs[0].axis == joined else decision


def split(ctx: Propagation, node: Node) -> Decision | None:
    shape = ctx.shape(node.inputs[0])
    if shape is None or not ctx.all_whole(node.inputs[1:]):
        return None
    axis = normalize_axis(int(node.attributes.get("axis", 0)), len(shape))
    if axis is None:
        return None
    return _follow_unless(ctx, node, {axis}, keepdims=True)


def slice_(ctx: Propagation, node: Node) -> Decision | None:
    shape = ctx.shape(node.inputs[0])
    if shape is None or not ctx.all_whole(node.inputs[1:]):
        return None
    if ctx.opset < 10:
        attrs = node.attributes
        axes: tuple[int, ...] | None = tuple(
            attrs.get("axes") or range(len(attrs.get("starts", ())))
        )
    elif len(node.inputs) > 3 and node.inputs[3]:
        axes = ctx.constants.ints(node.inputs[3])
    else:
        starts = ctx.shape(node.inputs[1])  # no axes: the first len(starts) axes
        axes = None if starts is None or len(starts) != 1 else tuple(range(starts[0]))
    sliced = None if axes is None else normalize_axes(axes, len(shape))
    if sliced is None:
        return None
    return _follow_unless(ctx, node, set(sliced), keepdims=True)


def gather(ctx: Propagation, node: Node) -> Decision | None:
    """Gather(data, indices, axis): data's split off ``axis`` or the indices' split carries;
    a parameter table looked up by whole ids may be split on ``axis`` (`vocab_split`)."""
    data, indices = node.inputs[0], node.inputs[1]
    sd, si = ctx.shape(data), ctx.shape(indices)
    if sd is None or si is None:
        return None
    axis = normalize_axis(int(node.attributes.get("axis", 0)), len(sd))
    data_axis, indices_axis = ctx.layout(data).axis, ctx.layout(indices).axis
    if axis is None or (data_axis is not None and indices_axis is not None):
        return None
    if indices_axis is not None:
        return Decision((Layout(axis + indices_axis),))  # indices' dims replace data's axis
    if data_axis is None or data_axis == axis:
        # a table split on the looked-up axis (by another lookup of it) needs the same rule
        vocab = vocab_split(ctx, node)
        if vocab is not None or data_axis is not None:
            return vocab
        return whole(node)
    shift = 0 if data_axis < axis else len(si) - 1
    return Decision((Layout(data_axis + shift),))


RULES: dict[str, Rule] = {
    **dict.fromkeys(ELEMENTWISE, elementwise),
    **dict.fromkeys(_REDUCTIONS, reduction),
    **dict.fromkeys(("Softmax", "LogSoftmax", "Hardmax"), softmax),
    **dict.fromkeys(("ArgMax", "ArgMin"), arg_reduction),
    **dict.fromkeys(("LayerNormalization", "RMSNormalization"), normalization),
    "CastLike": follow_first,
    **dict.fromkeys(("QuantizeLinear", "DequantizeLinear"), linear_quantization),
    "Attention": attention,
    "MatMul": matmul,
    "Gemm": gemm,
    "Reshape": reshape,
    "Expand": expand,
    "Flatten": flatten,
    "Transpose": transpose,
    "Unsqueeze": unsqueeze,
    "Squeeze": squeeze,
    "Concat": concat,
    "Split": split,
    "Slice": slice_,
    "Gather": gather,
}


def decide(ctx: Propagation, node: Node) -> Decision:
    """The rule's decision for ``node``, or running it whole when no rule applies."""
    rule = RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    decision = None
    if rule is not None and not ctx.runs_whole(node) and node.present_outputs:
        decision = rule(ctx, node)
    if decision is None:
        return replicate(ctx, node)
    return decision
