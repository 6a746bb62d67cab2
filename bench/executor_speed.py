"""Speed of the NumPy executor against onnx.reference and onnxruntime on a
GPT-2-small-shaped decoder built from primitive ONNX ops.

The model is GPT-2 small's shape (12 layers, d=768, 12 heads, vocab 50257,
tied embeddings) with seeded random weights, written with onnx.helper using
only core ops, the way exporters decompose it: LayerNorm as ReduceMean/Sub/
Pow/Sqrt/Div, softmax as ReduceMax/Sub/Exp/ReduceSum/Div, tanh-GELU, causal
mask by Add. No torch and no NN kernels are needed.

Usage::

    python bench/executor_speed.py                     # seq 128, 12 layers, 3 runs each
    python bench/executor_speed.py --layers 2 --seq 32 --skip-reference
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import best_of  # noqa: E402

from partitioner.executor.runtime import prepare_model  # noqa: E402

__all__ = ["build_gpt2_like", "main"]


class _Builder:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self, seed: int) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def weight(self, name: str, shape: tuple[int, ...], std: float = 0.02) -> str:
        return self.const(name, (self.rng.standard_normal(shape) * std).astype(np.float32))

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs: object) -> list[str]:
        self.count += 1
        outs = [f"{op_type.lower()}_{self.count}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs

    def one(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        return self.op(op_type, inputs, **attrs)[0]


def _layer_norm(b: _Builder, x: str, prefix: str, d: int) -> str:
    axes = "axes_last"
    mean = b.one("ReduceMean", [x, axes])
    centred = b.one("Sub", [x, mean])
    var = b.one("ReduceMean", [b.one("Pow", [centred, "two"]), axes])
    std = b.one("Sqrt", [b.one("Add", [var, "eps"])])
    normed = b.one("Div", [centred, std])
    gamma = b.const(f"{prefix}.g", np.ones(d, np.float32))
    beta = b.const(f"{prefix}.b", np.zeros(d, np.float32))
    return b.one("Add", [b.one("Mul", [normed, gamma]), beta])


def _linear(b: _Builder, x: str, prefix: str, d_in: int, d_out: int) -> str:
    w = b.weight(f"{prefix}.w", (d_in, d_out))
    bias = b.const(f"{prefix}.bias", np.zeros(d_out, np.float32))
    return b.one("Add", [b.one("MatMul", [x, w]), bias])


def _attention(b: _Builder, x: str, i: int, d: int, heads: int, seq: int) -> str:
    qkv = _linear(b, x, f"h{i}.attn.c_attn", d, 3 * d)
    q, k, v = b.op("Split", [qkv], 3, axis=-1, num_outputs=3)
    shape = b.const(f"h{i}.heads_shape", np.array([1, seq, heads, d // heads], np.int64))
    qh = b.one("Transpose", [b.one("Reshape", [q, shape])], perm=[0, 2, 1, 3])
    kh = b.one("Transpose", [b.one("Reshape", [k, shape])], perm=[0, 2, 3, 1])
    vh = b.one("Transpose", [b.one("Reshape", [v, shape])], perm=[0, 2, 1, 3])
    scores = b.one("Mul", [b.one("MatMul", [qh, kh]), "attn_scale"])
    scores = b.one("Add", [scores, "causal_mask"])
    peak = b.one("ReduceMax", [scores, "axes_last"])
    exp = b.one("Exp", [b.one("Sub", [scores, peak])])
    probs = b.one("Div", [exp, b.one("ReduceSum", [exp, "axes_last"])])
    context = b.one("Transpose", [b.one("MatMul", [probs, vh])], perm=[0, 2, 1, 3])
    merged = b.one("Reshape", [context, "model_shape"])
    return _linear(b, merged, f"h{i}.attn.c_proj", d, d)


def _mlp(b: _Builder, x: str, i: int, d: int) -> str:
    h = _linear(b, x, f"h{i}.mlp.c_fc", d, 4 * d)
    cubic = b.one("Mul", [b.one("Pow", [h, "three"]), "gelu_c"])
    inner = b.one("Mul", [b.one("Add", [h, cubic]), "gelu_s"])
    gate = b.one("Add", [b.one("Tanh", [inner]), "one"])
    gelu = b.one("Mul", [b.one("Mul", [h, gate]), "half"])
    return _linear(b, gelu, f"h{i}.mlp.c_proj", 4 * d, d)


def build_gpt2_like(
    *,
    layers: int = 12,
    d: int = 768,
    heads: int = 12,
    vocab: int = 50257,
    seq: int = 128,
    seed: int = 0,
) -> onnx.ModelProto:
    """GPT-2-small-shaped decoder over ``input_ids`` [1, seq] -> ``logits`` [1, seq, vocab]."""
    b = _Builder(seed)
    scalars = {
        "two": 2.0,
        "three": 3.0,
        "eps": 1e-5,
        "one": 1.0,
        "half": 0.5,
        "gelu_c": 0.044715,
        "gelu_s": math.sqrt(2 / math.pi),
        "attn_scale": 1 / math.sqrt(d // heads),
    }
    for name, value in scalars.items():
        b.const(name, np.array(value, np.float32))
    b.const("axes_last", np.array([-1], np.int64))
    b.const("model_shape", np.array([1, seq, d], np.int64))
    b.const("positions", np.arange(seq, dtype=np.int64).reshape(1, seq))
    mask = np.triu(np.full((seq, seq), -1e4, np.float32), k=1)
    b.const("causal_mask", mask)
    wte = b.weight("wte", (vocab, d))
    wpe = b.weight("wpe", (1024, d), std=0.01)
    x = b.one("Add", [b.one("Gather", [wte, "input_ids"]), b.one("Gather", [wpe, "positions"])])
    for i in range(layers):
        x = b.one("Add", [x, _attention(b, _layer_norm(b, x, f"h{i}.ln_1", d), i, d, heads, seq)])
        x = b.one("Add", [x, _mlp(b, _layer_norm(b, x, f"h{i}.ln_2", d), i, d)])
    final = _layer_norm(b, x, "ln_f", d)
    logits = b.one("MatMul", [final, b.one("Transpose", [wte], perm=[1, 0])])
    b.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    graph = helper.make_graph(
        b.nodes,
        "gpt2_like",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, seq])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, seq, vocab])],
        initializer=b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args(argv)

    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    model = build_gpt2_like(layers=args.layers, seq=args.seq)
    feeds = {"input_ids": np.random.default_rng(1).integers(0, 50257, (1, args.seq))}
    print(f"model: {len(model.graph.node)} nodes, {args.layers} layers, seq {args.seq}")

    prepared = prepare_model(model)  # like an ORT session: weights decoded once
    ours_s, ours = best_of(args.runs, lambda: prepared.run(feeds)["logits"])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ort_s, theirs = best_of(args.runs, lambda: session.run(None, feeds)[0])
    diff = float(np.max(np.abs(ours - theirs)))
    print(f"numpy executor   {ours_s * 1e3:9.1f} ms")
    print(f"onnxruntime      {ort_s * 1e3:9.1f} ms   (ours / ort = {ours_s / ort_s:.2f}x)")
    if not args.skip_reference:
        evaluator = ReferenceEvaluator(model)
        ref_s, ref = best_of(max(1, args.runs - 2), lambda: evaluator.run(None, feeds)[0])
        diff = max(diff, float(np.max(np.abs(ours - ref))))
        print(
            f"onnx.reference   {ref_s * 1e3:9.1f} ms   (reference / ours = {ref_s / ours_s:.1f}x)"
        )
    print(f"max |ours - others| on logits: {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
