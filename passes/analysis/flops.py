"""FLOP rules per op type: pure functions of static shapes and attributes.

Conventions (each rule below is tested against hand-worked values):

- A multiply-add counts as 2 FLOPs (MatMul, Gemm, Conv, Einsum, attention).
- An elementwise op counts 1 FLOP per output element, whatever the function
  (Add and Erf alike, as in fvcore and DeepSpeed's profiler); a variadic one
  (Sum, Max, Min) counts ``inputs - 1`` per element, Mean one more. These ops are
  memory-bound on every target we model, so the roofline is set by their bytes.
- Normalisations and Softmax count the elementary operations of their formula
  per element (documented on each rule); O(rows) terms such as one square root
  per row are left out.
- Data movement (Reshape, Transpose, Gather, Concat, Cast, ...) is 0 FLOPs but
  a known cost: its time comes from bytes moved.
- Control flow (If/Loop/Scan) counts its sub-graphs' nodes once: a Loop's trip
  count is not known statically, and an If counts both branches. This is an
  approximation and is reported as such.

A rule returns ``(flops, matmuls)``; ``matmuls`` counts contractions (the
wafer cost model charges a mesh reduction per contraction).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FlopRule",
    "FLOP_RULES",
    "DATA_MOVEMENT_OPS",
    "VIEW_OPS",
    "flops_for",
    "broadcast_shape",
]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class OpShapes:
    """Static shapes of a node's inputs (None where omitted) and outputs."""

    inputs: Sequence[Shape | None]
    outputs: Sequence[Shape]
    attrs: Mapping[str, Any]

    def inp(self, i: int) -> Shape | None:
        return self.inputs[i] if i < len(self.inputs) else None


FlopRule = Callable[[OpShapes], tuple[int, int]]


def broadcast_shape(*shapes: Shape) -> Shape:
    """numpy broadcasting of static shapes."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(rank):
        dims = {s[len(s) - rank + axis] for s in shapes if len(s) - rank + axis >= 0}
        dims.discard(1)
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _numel(shape: Shape | None) -> int:
    return math.prod(shape) if shape is not None else 0


def _out(s: OpShapes) -> int:
    return _numel(s.outputs[0]) if s.outputs else 0


# --- contractions -----------------------------------------------------------


def _matmul(s: OpShapes) -> tuple[int, int]:
    a, b = s.inp(0), s.inp(1)
    assert a is not None and b is not None
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    m, k = a2[-2], a2[-1]
    n = b2[-1]
    batch = math.prod(broadcast_shape(a2[:-2], b2[:-2]))
    return 2 * batch * m * k * n, 1


def _gemm(s: OpShapes) -> tuple[int, int]:
    a, b = s.inp(0), s.inp(1)
    assert a is not None and b is not None
    m, k = (a[1], a[0]) if s.attrs.get("transA", 0) else (a[0], a[1])
    n = b[0] if s.attrs.get("transB", 0) else b[1]
    bias = m * n if s.inp(2) is not None else 0
    return 2 * m * k * n + bias, 1


_EINSUM_TERM = re.compile(r"[A-Za-z]|\.\.\.")


def _einsum(s: OpShapes) -> tuple[int, int]:
    """Naive contraction: (operands) x product of every distinct index size.

    One operand (a sum or trace) costs one add per visited element; two cost a
    multiply and an add; n cost n-1 multiplies and an add.
    """
    equation = str(s.attrs["equation"]).replace(" ", "")
    lhs = equation.split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for term, shape in zip(lhs, s.inputs, strict=False):
        if shape is None:
            continue
        labels = _EINSUM_TERM.findall(term)
        if "..." in labels:
            at = labels.index("...")
            n_ellipsis = len(shape) - (len(labels) - 1)
            labels = labels[:at] + [f"...{i}" for i in range(n_ellipsis)] + labels[at + 1 :]
        for label, dim in zip(labels, shape, strict=False):
            sizes[label] = max(sizes.get(label, 1), dim)
    operands = len(lhs)
    return operands * math.prod(sizes.values()), 1 if operands >= 2 else 0


def _conv(s: OpShapes) -> tuple[int, int]:
    w = s.inp(1)
    assert w is not None
    per_output = 2 * w[1] * math.prod(w[2:])  # C_in/groups x kernel taps, multiply-add
    bias = _out(s) if s.inp(2) is not None else 0
    return _out(s) * per_output + bias, 1


def _conv_transpose(s: OpShapes) -> tuple[int, int]:
    x, w = s.inp(0), s.inp(1)
    assert x is not None and w is not None
    # The weight is [C_in, C_out/groups, k...]: each input element scatters a
    # multiply-add into C_out/groups x kernel-tap outputs.
    per_input = 2 * w[1] * math.prod(w[2:])
    bias = _out(s) if s.inp(2) is not None else 0
    return _numel(x) * per_input + bias, 1


def _attention(s: OpShapes) -> tuple[int, int]:
    """ONNX Attention (opset 23): QK^T and AV contractions plus scale, mask and softmax."""
    q, k, v = s.inp(0), s.inp(1), s.inp(2)
    assert q is not None and k is not None and v is not None
    past_key = s.inp(4)
    if len(q) == 4:  # [B, Hq, L, E]
        batch, heads_q, q_len, head_dim = q
        kv_len = k[2]
        v_dim = v[3]
    else:  # [B, L, Hq*E] with q_num_heads
        heads_q = int(s.attrs.get("q_num_heads", 0) or 1)
        heads_kv = int(s.attrs.get("kv_num_heads", 0) or heads_q)
        batch, q_len = q[0], q[1]
        head_dim = q[2] // heads_q
        kv_len = k[1]
        v_dim = v[2] // heads_kv
    if past_key is not None:
        kv_len += past_key[2]
    scores = batch * heads_q * q_len * kv_len
    has_mask = s.inp(3) is not None or bool(s.attrs.get("is_causal", 0))
    elementwise = scores * (1 + (1 if has_mask else 0) + _SOFTMAX_PER_ELEMENT)
    return 2 * scores * head_dim + 2 * scores * v_dim + elementwise, 2


# --- normalisations and softmax ---------------------------------------------

# max, subtract, exp, sum, divide
_SOFTMAX_PER_ELEMENT = 5


def _per_element(count: int) -> FlopRule:
    def rule(s: OpShapes) -> tuple[int, int]:
        return count * _numel(s.inp(0)), 0

    return rule


def _layer_norm(s: OpShapes) -> tuple[int, int]:
    # sum (mean), subtract, square, sum (variance), multiply by 1/std, scale; + bias
    per = 6 + (1 if s.inp(2) is not None else 0)
    return per * _numel(s.inp(0)), 0


def _rms_norm(s: OpShapes) -> tuple[int, int]:
    # square, sum, multiply by 1/rms, scale
    return 4 * _numel(s.inp(0)), 0


def _lrn(s: OpShapes) -> tuple[int, int]:
    size = int(s.attrs.get("size", 1))
    # square and add per neighbour, then scale, power and divide
    return (2 * size + 3) * _numel(s.inp(0)), 0


# --- pooling, reductions, elementwise ---------------------------------------


def _pool(s: OpShapes) -> tuple[int, int]:
    kernel = s.attrs.get("kernel_shape") or ()
    return _out(s) * math.prod(kernel), 0


def _global_pool(s: OpShapes) -> tuple[int, int]:
    return _numel(s.inp(0)), 0


def _reduce(per_input: int, per_output: int = 0) -> FlopRule:
    def rule(s: OpShapes) -> tuple[int, int]:
        return per_input * _numel(s.inp(0)) + per_output * _out(s), 0

    return rule


def _elementwise(s: OpShapes) -> tuple[int, int]:
    return _out(s), 0


def _variadic(extra: int = 0) -> FlopRule:
    def rule(s: OpShapes) -> tuple[int, int]:
        present = sum(1 for i in s.inputs if i is not None)
        return (max(present - 1, 0) + extra) * _out(s), 0

    return rule


def _resize(s: OpShapes) -> tuple[int, int]:
    mode = str(s.attrs.get("mode", "nearest"))
    x = s.inp(0)
    out = s.outputs[0] if s.outputs else None
    if mode == "nearest" or x is None or out is None:
        return 0, 0
    resized_axes = sum(1 for a, b in zip(x, out, strict=False) if a != b)
    taps = (2 if mode == "linear" else 4) ** resized_axes
    return 2 * taps * _numel(out), 0  # a weight multiply and an add per tap


def _recurrent(gates: int) -> FlopRule:
    """RNN/GRU/LSTM: per step and direction, gate matmuls on [x, h] plus ~8 ops per unit."""

    def rule(s: OpShapes) -> tuple[int, int]:
        x, w = s.inp(0), s.inp(1)
        assert x is not None and w is not None
        seq, batch, in_size = x
        directions, gate_rows, _ = w
        hidden = gate_rows // gates
        per_step = 2 * batch * gate_rows * (in_size + hidden) + 8 * batch * hidden * gates
        return seq * directions * per_step, 2 * seq * directions

    return rule


_ELEMENTWISE_OPS = [
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Neg",
    "Abs",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Exp",
    "Log",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Asinh",
    "Acosh",
    "Atanh",
    "Tanh",
    "Sigmoid",
    "Erf",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Mod",
    "Clip",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Softsign",
    "Mish",
    "Swish",
    "ThresholdedRelu",
    "Shrink",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Not",
    "Where",
    "IsNaN",
    "IsInf",
    "BitShift",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
    "BitwiseNot",
    "Hardmax",
    "Dequantize",
    "QuantizeLinear",
    "DequantizeLinear",
]

DATA_MOVEMENT_OPS = frozenset(
    [
        "Reshape",
        "Transpose",
        "Concat",
        "Split",
        "Slice",
        "Gather",
        "GatherElements",
        "GatherND",
        "ScatterND",
        "ScatterElements",
        "Scatter",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "Expand",
        "Tile",
        "Pad",
        "Identity",
        "Cast",
        "CastLike",
        "Shape",
        "Size",
        "Constant",
        "ConstantOfShape",
        "Range",
        "Dropout",
        "DepthToSpace",
        "SpaceToDepth",
        "Trilu",
        "OneHot",
        "NonZero",
        "Compress",
        "EyeLike",
        "SplitToSequence",
        "SequenceAt",
        "SequenceConstruct",
        "SequenceInsert",
        "ConcatFromSequence",
        "SequenceEmpty",
        "SequenceLength",
        "ReverseSequence",
        "Optional",
        "OptionalGetElement",
        "OptionalHasElement",
        "CenterCropPad",
        "Col2Im",
    ]
)

# No kernel runs for these on a GPU: the output aliases the input's memory.
VIEW_OPS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout"})

FLOP_RULES: dict[str, FlopRule] = {
    "MatMul": _matmul,
    "MatMulInteger": _matmul,
    "QLinearMatMul": _matmul,
    "Gemm": _gemm,
    "Einsum": _einsum,
    "Conv": _conv,
    "ConvInteger": _conv,
    "QLinearConv": _conv,
    "ConvTranspose": _conv_transpose,
    "Attention": _attention,
    "Softmax": _per_element(_SOFTMAX_PER_ELEMENT),
    "LogSoftmax": _per_element(_SOFTMAX_PER_ELEMENT),
    # (x - mean) / sqrt(var + eps) * scale + bias
    "BatchNormalization": _per_element(4),
    "LayerNormalization": _layer_norm,
    "GroupNormalization": _per_element(7),
    "InstanceNormalization": _per_element(7),
    "RMSNormalization": _rms_norm,
    "SimplifiedLayerNormalization": _rms_norm,
    "MeanVarianceNormalization": _per_element(5),
    "LpNormalization": _per_element(3),
    "LRN": _lrn,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "LpPool": _pool,
    "GlobalAveragePool": _global_pool,
    "GlobalMaxPool": _global_pool,
    "GlobalLpPool": _global_pool,
    "ReduceSum": _reduce(1),
    "ReduceMax": _reduce(1),
    "ReduceMin": _reduce(1),
    "ReduceProd": _reduce(1),
    "ReduceL1": _reduce(2),
    "ReduceMean": _reduce(1, per_output=1),
    "ReduceSumSquare": _reduce(2),
    "ReduceL2": _reduce(2, per_output=1),
    "ReduceLogSum": _reduce(1, per_output=1),
    "ReduceLogSumExp": _reduce(2, per_output=1),
    "ArgMax": _reduce(1),
    "ArgMin": _reduce(1),
    "CumSum": _reduce(1),
    "TopK": _reduce(1),
    "Sum": _variadic(),
    "Max": _variadic(),
    "Min": _variadic(),
    "Mean": _variadic(extra=1),
    "Resize": _resize,
    "Upsample": _resize,
    "RNN": _recurrent(1),
    "GRU": _recurrent(3),
    "LSTM": _recurrent(4),
}
for _op in _ELEMENTWISE_OPS:
    FLOP_RULES[_op] = _elementwise
for _op in DATA_MOVEMENT_OPS:
    FLOP_RULES.setdefault(_op, lambda s: (0, 0))


def flops_for(op_type: str, domain: str, shapes: OpShapes) -> tuple[int, int] | None:
    """(FLOPs, contractions) for one node, or None when no rule covers the op."""
    if domain not in ("", "ai.onnx"):
        return None
    rule = FLOP_RULES.get(op_type)
    return rule(shapes) if rule is not None else None
