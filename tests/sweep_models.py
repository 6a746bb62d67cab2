"""Small models shaped like real exporters' output, for tests/test_model_sweep.py.

Each builder takes an opset and a float dtype and returns an ``onnx.ModelProto`` with
random weights from a seeded generator: a pre-LN transformer block, a conv net, and an
RNN-free sequence classifier with symbolic ``batch``/``seq`` dims. Nothing here is
written by the product: the graphs follow what torch's exporters emit (dynamic
reshapes through Shape/Gather/Concat, sliced causal masks, erf GELU before opset 20,
decomposed LayerNorm, masked mean pooling, an eval-mode dropout left as Identity).
With ``identity_output=True`` the last node's output reaches the graph output
through an Identity, as torch exports an output that aliases an intermediate.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.modelgen import make_model, vi

__all__ = ["BUILDERS", "DTYPES", "SYMBOLIC_DIMS", "buildable", "build", "unresident_elements"]

DTYPES: dict[str, tuple[int, type]] = {
    "float32": (TensorProto.FLOAT, np.float32),
    "float16": (TensorProto.FLOAT16, np.float16),
    "bfloat16": (TensorProto.BFLOAT16, ml_dtypes.bfloat16),
}

# Values for the symbolic dims of the builders that have them.
SYMBOLIC_DIMS = {"batch": 2, "seq": 8}


class _Builder:
    """Collects nodes and initializers; weights come from one seeded generator."""

    def __init__(self, opset: int, dtype: str, seed: int = 0) -> None:
        self.opset = opset
        self.elem, self.np_dtype = DTYPES[dtype]
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def weight(self, name: str, shape: tuple[int, ...], scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 2 else shape[0]
        std = scale if scale is not None else 1.0 / math.sqrt(max(fan_in, 1))
        array = (self.rng.standard_normal(shape) * std).astype(np.float32)
        self.inits.append(numpy_helper.from_array(array.astype(self.np_dtype), name))
        return name

    def const(self, name: str, value, dtype=None) -> str:
        array = np.asarray(value, dtype=np.float32 if dtype is None else dtype)
        if dtype is None:
            array = array.astype(self.np_dtype)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def ints(self, name: str, values) -> str:
        return self.const(name, np.asarray(values, dtype=np.int64), np.int64)

    def ops(self, op_type: str, inputs: list[str], n_out: int, **attrs) -> list[str]:
        """Append one node with ``n_out`` fresh outputs; returns their names."""
        outs = [self._name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(
            helper.make_node(op_type, inputs, outs, name=self._name(f"n_{op_type}"), **attrs)
        )
        return outs

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        return self.ops(op_type, inputs, 1, **attrs)[0]

    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: int = 1) -> str:
        """ReduceMean/ReduceSum with axes as an input (opset 18+, ReduceSum 13+) or attribute."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.ints(self._name("axes"), axes)], keepdims=keepdims)
        return self.op(op_type, [x], axes=axes, keepdims=keepdims)

    def unsqueeze(self, x: str, axes: list[int]) -> str:
        return self.op("Unsqueeze", [x, self.ints(self._name("axes"), axes)])

    def linear(self, x: str, prefix: str, d_in: int, d_out: int) -> str:
        w = self.weight(f"{prefix}.weight", (d_in, d_out))
        b = self.weight(f"{prefix}.bias", (d_out,), scale=0.02)
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def model(self, inputs, outputs) -> onnx.ModelProto:
        m = make_model(self.nodes, inputs, outputs, self.inits, opset=self.opset)
        m.producer_name = "tests.sweep_models"
        return m


def _gelu(b: _Builder, x: str) -> str:
    if b.opset >= 20:
        return b.op("Gelu", [x], approximate="tanh" if b.opset >= 21 else "none")
    # torch.onnx before opset 20: x * 0.5 * (1 + erf(x / sqrt(2)))
    inner = b.op("Erf", [b.op("Div", [x, b.const(b._name("sqrt2"), math.sqrt(2.0))])])
    one = b.op("Add", [inner, b.const(b._name("one"), 1.0)])
    return b.op("Mul", [b.op("Mul", [x, one]), b.const(b._name("half"), 0.5)])


def _output(b: _Builder, value: str, name: str, identity: bool, op_type: str = "Add") -> None:
    """Name the graph output ``name``: through an Identity (as torch exports an output
    that aliases an intermediate) or by renaming the node that makes ``value``."""
    if identity:
        b.nodes.append(helper.make_node("Identity", [value], [name], name=f"{name}_identity"))
        return
    node = b.nodes[-1]
    assert node.output[0] == value and node.op_type == op_type
    node.output[0] = name


def transformer_block(
    opset: int, dtype: str, seed: int = 0, identity_output: bool = False
) -> onnx.ModelProto:
    """A pre-LN GPT block: LayerNorm, causal multi-head attention, GELU MLP, residuals.

    Input ``x`` is [batch, seq, 32]; heads are reshaped through Shape/Gather/Concat as
    torch exports them. At opset 23 attention is the fused ``Attention`` op.
    """
    d, heads, ff, max_seq = 32, 4, 64, 16
    dh = d // heads
    b = _Builder(opset, dtype, seed)
    x = "x"
    ln1 = b.op(
        "LayerNormalization",
        [x, b.weight("ln1.weight", (d,), 0.1), b.weight("ln1.bias", (d,), 0.1)],
        axis=-1,
        epsilon=1e-5,
    )
    qkv = b.linear(ln1, "attn.qkv", d, 3 * d)
    q, k, v = b.ops("Split", [qkv, b.ints("split_sizes", [d, d, d])], 3, axis=-1)
    if opset >= 23:
        ctx = b.op("Attention", [q, k, v], is_causal=1, q_num_heads=heads, kv_num_heads=heads)
    else:
        shape = b.op("Shape", [x])
        bsz = b.unsqueeze(b.op("Gather", [shape, b.ints("idx0", 0)], axis=0), [0])
        seq = b.unsqueeze(b.op("Gather", [shape, b.ints("idx1", 1)], axis=0), [0])
        heads_shape = b.op("Concat", [bsz, seq, b.ints("heads_dh", [heads, dh])], axis=0)
        q4 = b.op("Reshape", [q, heads_shape])
        k4 = b.op("Reshape", [k, b.ints("kv_shape", [0, 0, heads, dh])])
        v4 = b.op("Reshape", [v, b.ints("kv_shape2", [0, 0, heads, dh])])
        qt = b.op("Transpose", [q4], perm=[0, 2, 1, 3])
        kt = b.op("Transpose", [k4], perm=[0, 2, 3, 1])
        vt = b.op("Transpose", [v4], perm=[0, 2, 1, 3])
        scores = b.op("Div", [b.op("MatMul", [qt, kt]), b.const("scale", math.sqrt(dh))])
        # GPT-2's causal mask: a stored lower triangle sliced to the sequence length.
        tri = np.tril(np.ones((1, 1, max_seq, max_seq), dtype=bool))
        mask_full = b.const("causal_mask", tri, bool)
        zeros = b.ints("mask_starts", [0, 0])
        ends = b.op("Concat", [seq, seq], axis=0)
        mask = b.op("Slice", [mask_full, zeros, ends, b.ints("mask_axes", [2, 3])])
        masked = b.op("Where", [mask, scores, b.const("neg", -1e4)])
        probs = b.op("Softmax", [masked], axis=-1)
        ctx4 = b.op("Transpose", [b.op("MatMul", [probs, vt])], perm=[0, 2, 1, 3])
        out_shape = b.op("Concat", [bsz, seq, b.ints("d_model", [d])], axis=0)
        ctx = b.op("Reshape", [ctx4, out_shape])
    # nn.Dropout in eval mode, as some exporters leave it: an Identity mid-graph.
    dropped = b.op("Identity", [b.linear(ctx, "attn.proj", d, d)])
    h = b.op("Add", [x, dropped])
    ln2 = b.op(
        "LayerNormalization",
        [h, b.weight("ln2.weight", (d,), 0.1), b.weight("ln2.bias", (d,), 0.1)],
        axis=-1,
        epsilon=1e-5,
    )
    mlp = b.linear(_gelu(b, b.linear(ln2, "mlp.fc", d, ff)), "mlp.proj", ff, d)
    _output(b, b.op("Add", [h, mlp]), "y", identity_output, op_type="Add")
    return b.model([vi("x", ["batch", "seq", d], b.elem)], [vi("y", ["batch", "seq", d], b.elem)])


def conv_net(
    opset: int, dtype: str, seed: int = 0, identity_output: bool = False
) -> onnx.ModelProto:
    """A small ResNet-like classifier: Conv, BatchNormalization, Relu, MaxPool, a 1x1
    shortcut, Clip (ReLU6), GlobalAveragePool, Flatten and Gemm. Input [2, 3, 16, 16]."""
    b = _Builder(opset, dtype, seed)

    def conv_bn(x: str, prefix: str, c_in: int, c_out: int, k: int) -> str:
        w = b.weight(f"{prefix}.weight", (c_out, c_in, k, k))
        y = b.op("Conv", [x, w], kernel_shape=[k, k], pads=[k // 2] * 4, strides=[1, 1])
        bn = [
            b.weight(f"{prefix}.bn.weight", (c_out,), 0.1),
            b.weight(f"{prefix}.bn.bias", (c_out,), 0.1),
            b.weight(f"{prefix}.bn.running_mean", (c_out,), 0.1),
        ]
        var = b.rng.uniform(0.5, 1.5, c_out).astype(np.float32).astype(b.np_dtype)
        b.inits.append(numpy_helper.from_array(var, f"{prefix}.bn.running_var"))
        return b.op("BatchNormalization", [y, *bn, f"{prefix}.bn.running_var"], epsilon=1e-5)

    x = "image"
    h = b.op("Relu", [conv_bn(x, "stem", 3, 8, 3)])
    h = b.op("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    main = b.op("Relu", [conv_bn(h, "block.conv1", 8, 16, 3)])
    main = conv_bn(main, "block.conv2", 16, 16, 3)
    short = conv_bn(h, "block.shortcut", 8, 16, 1)
    h = b.op(
        "Clip", [b.op("Add", [main, short]), b.const("clip_min", 0.0), b.const("clip_max", 6.0)]
    )
    pooled = b.op("Flatten", [b.op("GlobalAveragePool", [h])], axis=1)
    w = b.weight("fc.weight", (10, 16))
    bias = b.weight("fc.bias", (10,), 0.02)
    logits = b.op("Gemm", [pooled, w, bias], transB=1)
    _output(b, logits, "logits", identity_output, op_type="Gemm")
    return b.model([vi("image", [2, 3, 16, 16], b.elem)], [vi("logits", [2, 10], b.elem)])


_SEQCLS_D, _SEQCLS_MAX_SEQ = 16, 32


def sequence_classifier(
    opset: int, dtype: str, seed: int = 0, identity_output: bool = False
) -> onnx.ModelProto:
    """Token + position embeddings (Gather, Range), a decomposed LayerNorm, a SiLU MLP,
    masked mean pooling over ``seq`` and a Gemm head. Inputs ``input_ids`` and
    ``attention_mask`` are int64 [batch, seq]; outputs the logits and the hidden states."""
    vocab, d, ff, classes, max_seq = 50, _SEQCLS_D, 32, 3, _SEQCLS_MAX_SEQ
    b = _Builder(opset, dtype, seed)
    tok = b.op("Gather", [b.weight("embed.tokens", (vocab, d), 1.0), "input_ids"], axis=0)
    seq = b.op("Gather", [b.op("Shape", ["input_ids"]), b.ints("idx1", 1)], axis=0)
    positions = b.op("Range", [b.ints("zero", 0), seq, b.ints("one", 1)])
    pos = b.op("Gather", [b.weight("embed.positions", (max_seq, d), 1.0), positions], axis=0)
    h = b.op("Add", [tok, pos])
    # LayerNorm as exporters wrote it before LayerNormalization existed.
    mean = b.reduce("ReduceMean", h, [-1])
    centred = b.op("Sub", [h, mean])
    var = b.reduce("ReduceMean", b.op("Pow", [centred, b.const("two", 2.0)]), [-1])
    std = b.op("Sqrt", [b.op("Add", [var, b.const("eps", 1e-5)])])
    normed = b.op("Div", [centred, std])
    normed = b.op(
        "Add",
        [b.op("Mul", [normed, b.weight("ln.weight", (d,), 0.1)]), b.weight("ln.bias", (d,), 0.1)],
    )
    up = b.linear(normed, "mlp.up", d, ff)
    silu = b.op("Mul", [up, b.op("Sigmoid", [up])])
    _output(b, b.op("Add", [h, b.linear(silu, "mlp.down", ff, d)]), "hidden", identity_output)
    mask = b.op("Cast", ["attention_mask"], to=b.elem)
    summed = b.reduce(
        "ReduceSum", b.op("Mul", ["hidden", b.unsqueeze(mask, [-1])]), [1], keepdims=0
    )
    count = b.reduce("ReduceSum", mask, [1])
    pooled = b.op("Tanh", [b.op("Div", [summed, count])])
    w = b.weight("head.weight", (classes, d))
    bias = b.weight("head.bias", (classes,), 0.02)
    b.nodes.append(helper.make_node("Gemm", [pooled, w, bias], ["logits"], name="head", transB=1))
    ids = [vi(n, ["batch", "seq"], TensorProto.INT64) for n in ("input_ids", "attention_mask")]
    outs = [vi("logits", ["batch", classes], b.elem), vi("hidden", ["batch", "seq", d], b.elem)]
    return b.model(ids, outs)


BUILDERS: dict[str, Callable[..., onnx.ModelProto]] = {
    "transformer": transformer_block,
    "convnet": conv_net,
    "seqcls": sequence_classifier,
}


def build(name: str, opset: int, dtype: str, identity_output: bool = False) -> onnx.ModelProto:
    return BUILDERS[name](opset, dtype, identity_output=identity_output)


def unresident_elements(name: str, dims: dict[str, int]) -> int:
    """Weight elements that constant folding leaves out of memory once ``dims`` are fixed.

    The sequence classifier's position table is only read through
    Gather(table, Range(0, seq)): with ``seq`` fixed that slice is folded into a
    constant, which is what stays resident (it stands for the whole table in the
    parameter count).
    """
    if name == "seqcls":
        return (_SEQCLS_MAX_SEQ - dims["seq"]) * _SEQCLS_D
    return 0


def buildable(name: str, opset: int, dtype: str) -> bool:
    """Whether ONNX's own checker (types and shapes, strict) accepts this combination."""
    model = build(name, opset, dtype)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError):
        return False
    return True
