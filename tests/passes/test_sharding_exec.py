"""A sharding plan computes what the whole graph computes: every rank run node by node.

The ranks run in lockstep with onnx's reference evaluator: rank r feeds each
runtime node its local tensors (chunk r of a split tensor or sliced parameter,
the per-rank value of a rewritten shape input; a vocabulary-split embedding
lookup runs as the rank graph's masked lookup), then the plan's collectives
run (sum for all_reduce, concatenation for all_gather). Every tensor is then
compared with the whole graph's value as its layout says: split -> the ranks'
chunks concatenate to it; partial -> they sum to it; whole -> every rank has it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from examples.llama import CONFIGS, build
from passes.analysis.sharding import Layout, ShardingPlan, shard_graph
from passes.ir import Graph
from passes.load import load
from passes.transforms.tensor_parallel_vocab import vocab_lookup, vocab_split_table
from tests.modelgen import init, make_model, save, vi

Values = dict[str, np.ndarray]


def _run_node(node: onnx.NodeProto, feeds: Values, opset: int) -> list[np.ndarray]:
    present = {name: feeds[name] for name in node.input if name}
    return ReferenceEvaluator(node, opsets={"": opset}).run(None, present)


def _whole_values(model: onnx.ModelProto, feeds: Values, opset: int) -> Values:
    env: Values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    env.update(feeds)
    for node in model.graph.node:
        env.update(zip(node.output, _run_node(node, env, opset), strict=False))
    return env


def _source_value(plan: ShardingPlan, env: Values, name: str, rank: int) -> np.ndarray:
    """What rank ``rank`` is fed for a tensor no runtime node produces."""
    if name in plan.shape_inputs:
        return np.array(plan.shape_inputs[name], dtype=np.int64)
    axis = plan.layouts[name].axis
    value = env[name]
    return value if axis is None else np.split(value, plan.degree, axis=axis)[rank]


def _run_lookup(
    graph: Graph, plan: ShardingPlan, index: int, feeds: Values, rank: int
) -> list[np.ndarray] | None:
    """A vocabulary-split Gather: the rank graph's masked lookup of the rank's rows, run
    node by node on onnx's reference evaluator (None for any other node)."""
    if vocab_split_table(graph, plan, index) is None:
        return None
    out = graph.nodes[index].outputs[0]
    lookup = vocab_lookup(graph, index, out, rank, plan.degree)
    env = dict(feeds) | {c.name: numpy_helper.to_array(c) for c in lookup.constants}
    for node in lookup.nodes:
        env.update(zip(node.output, _run_node(node, env, graph.opset), strict=True))
    return [env[out]]


def _run_ranks(graph: Graph, model: onnx.ModelProto, plan: ShardingPlan, env: Values):
    """Every rank's value of every runtime tensor, before and after the collectives."""
    n = plan.degree
    before: list[Values] = [{} for _ in range(n)]
    after: list[Values] = [{} for _ in range(n)]
    by_node: dict[int, list] = {}
    for op in plan.collectives:
        by_node.setdefault(op.node, []).append(op)
    for index in graph.topological_order():
        if graph.nodes[index].folded:
            continue
        proto = model.graph.node[index]
        for rank in range(n):
            feeds = {
                name: after[rank][name]
                if name in after[rank]
                else _source_value(plan, env, name, rank)
                for name in proto.input
                if name
            }
            outs = _run_lookup(graph, plan, index, feeds, rank)
            if outs is None:
                outs = _run_node(proto, feeds, graph.opset)
            for name, value in zip(proto.output, outs, strict=False):
                before[rank][name] = after[rank][name] = value
        for op in by_node.get(index, []):
            parts = [after[rank][op.tensor] for rank in range(n)]
            whole = sum(parts) if op.kind == "all_reduce" else np.concatenate(parts, op.axis)
            for rank in range(n):
                after[rank][op.tensor] = whole
    return before, after


def _check(graph: Graph, plan: ShardingPlan, env: Values, before: list[Values]) -> None:
    for name, layout in plan.layouts.items():
        if name not in before[0]:
            continue
        parts = [values[name] for values in before]
        expected = env[name]
        if layout.partial:
            got = sum(parts)
        elif layout.axis is not None:
            assert parts[0].shape == plan.local_shapes[name], name
            got = np.concatenate(parts, axis=layout.axis)
        else:
            for p in parts[1:]:
                np.testing.assert_allclose(p, parts[0], rtol=1e-5, atol=1e-5, err_msg=name)
            got = parts[0]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=name)


def _simulate(path: Path, dims: dict[str, int], feeds: Values, degree: int) -> ShardingPlan:
    graph = load(path, dims)
    model = onnx.load(str(path))
    plan = shard_graph(graph, degree)
    env = _whole_values(model, feeds, graph.opset)
    before, after = _run_ranks(graph, model, plan, env)
    _check(graph, plan, env, before)
    for name in graph.outputs:  # outputs end whole on every rank, except split KV caches
        if plan.layouts[name].axis is None or not graph.tensors[name].is_kv_cache_output:
            for values in after:
                np.testing.assert_allclose(values[name], env[name], rtol=1e-4, atol=1e-4)
    return plan


def _llama_feeds(kind: str, past: int, seq: int) -> Values:
    config = CONFIGS["tiny"]
    rng = np.random.default_rng(1)
    feeds: Values = {
        "input_ids": rng.integers(0, config.vocab_size, (1, seq)).astype(np.int64),
        "position_ids": (np.arange(seq) + (past if kind == "decode" else 0))[None].astype(np.int64),
    }
    if kind == "decode":
        for layer in range(config.num_layers):
            for part in ("key", "value"):
                shape = (1, config.num_kv_heads, past, config.head_dim)
                feeds[f"past.{layer}.{part}"] = rng.standard_normal(shape).astype(np.float32)
    return feeds


@pytest.mark.parametrize("kind", ["decode", "prefill"])
@pytest.mark.parametrize("degree", [2, 4])
def test_tiny_llama_ranks_compute_the_whole_graph(tmp_path, kind, degree):
    path = build(tmp_path / f"{kind}.onnx", "tiny", kind=kind, weights="random")
    dims = {"batch": 1, "past": 5} if kind == "decode" else {"batch": 1, "seq": 6}
    plan = _simulate(
        path, dims, _llama_feeds(kind, past=5, seq=1 if kind == "decode" else 6), degree
    )
    assert plan.collectives  # the check above exercised communication


def test_bias_layernorm_gemm_graph_ranks_compute_the_whole_graph(tmp_path):
    """LayerNorm -> Gemm(transB) + sliced bias -> Tanh -> MatMul row split -> Add bias."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g", "b"], ["n"], axis=-1),
        helper.make_node("Gemm", ["n", "w1", "c1"], ["h"], transB=1),
        helper.make_node("Tanh", ["h"], ["t"]),
        helper.make_node("MatMul", ["t", "w2"], ["p"]),
        helper.make_node("Add", ["p", "c2"], ["y"]),
    ]
    inits = [
        init("g", rng.standard_normal(8).astype(np.float32)),
        init("b", rng.standard_normal(8).astype(np.float32)),
        init("w1", rng.standard_normal((12, 8)).astype(np.float32)),
        init("c1", rng.standard_normal(12).astype(np.float32)),
        init("w2", rng.standard_normal((12, 8)).astype(np.float32)),
        init("c2", rng.standard_normal(8).astype(np.float32)),
    ]
    path = save(make_model(nodes, [vi("x", [3, 8])], [vi("y", [3, 8])], inits), tmp_path / "m.onnx")
    plan = _simulate(path, {}, {"x": rng.standard_normal((3, 8)).astype(np.float32)}, 2)
    assert dict(plan.weights) == {"w1": 0, "c1": 0, "w2": 0}  # w1 is [N, K] under transB
    assert [(op.kind, op.tensor) for op in plan.collectives] == [("all_reduce", "p")]


def _fused_attention_model(kv_heads: int) -> onnx.ModelProto:
    """x[1, 4, 8] -> Q/K/V projections -> 4-D heads (2 query heads of 4) -> Attention
    (opset 23) -> merge heads -> output projection."""
    rng = np.random.default_rng(2)
    nodes, inits = [], []
    for proj, heads in (("q", 2), ("k", kv_heads), ("v", kv_heads)):
        inits.append(init(f"w{proj}", rng.standard_normal((8, 4 * heads)).astype(np.float32)))
        inits.append(init(f"{proj}_shape", np.array([1, 4, heads, 4], np.int64)))
        nodes += [
            helper.make_node("MatMul", ["x", f"w{proj}"], [f"{proj}_flat"]),
            helper.make_node("Reshape", [f"{proj}_flat", f"{proj}_shape"], [f"{proj}_rows"]),
            helper.make_node("Transpose", [f"{proj}_rows"], [proj], perm=[0, 2, 1, 3]),
        ]
    inits += [
        init("merged", np.array([1, 4, 8], np.int64)),
        init("wo", rng.standard_normal((8, 8)).astype(np.float32)),
    ]
    nodes += [
        helper.make_node("Attention", ["q", "k", "v"], ["context"], is_causal=1),
        helper.make_node("Transpose", ["context"], ["context_rows"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["context_rows", "merged"], ["context_flat"]),
        helper.make_node("MatMul", ["context_flat", "wo"], ["y"]),
    ]
    return make_model(nodes, [vi("x", [1, 4, 8])], [vi("y", [1, 4, 8])], inits, opset=23)


@pytest.mark.parametrize("kv_heads", [2, 1])
def test_fused_attention_split_by_heads(tmp_path, kv_heads):
    path = save(_fused_attention_model(kv_heads), tmp_path / "attention.onnx")
    feeds = {"x": np.random.default_rng(3).standard_normal((1, 4, 8)).astype(np.float32)}
    plan = _simulate(path, {}, feeds, 2)
    assert plan.layouts["context"] == Layout(1)  # one query head per rank
    assert [(op.kind, op.tensor) for op in plan.collectives] == [("all_reduce", "y")]
    # one KV head cannot be split 2 ways: K and V are computed whole and broadcast
    kv = {"wk": 1, "wv": 1} if kv_heads == 2 else {}
    assert dict(plan.weights) == {"wq": 1, **kv, "wo": 0}


def _zoo_model() -> onnx.ModelProto:
    """One split carried through many layout ops, then row split and a sliced bias."""
    rng = np.random.default_rng(4)

    def ints(name: str, values: list[int]) -> onnx.TensorProto:
        return init(name, np.array(values, np.int64))

    inits = [
        init("w", rng.standard_normal((8, 16)).astype(np.float32)),
        init("w2", rng.standard_normal((16, 5)).astype(np.float32)),
        init("bias", rng.standard_normal(16).astype(np.float32)),
        *(ints(n, v) for n, v in [("s1", [2, 4, 4]), ("ax0", [0]), ("ax2", [2]), ("e", [3, 4, 4])]),
        *(
            ints(n, v)
            for n, v in [("sizes", [1, 2]), ("zero", [0]), ("one", [1]), ("idx", [1, 0, 1])]
        ),
    ]
    make = helper.make_node
    nodes = [
        make("MatMul", ["x", "w"], ["h"]),  # [2, 16] split 1
        make("Reshape", ["h", "s1"], ["r"]),  # [2, 4, 4] split 1
        make("Unsqueeze", ["r", "ax0"], ["u"]),  # [1, 2, 4, 4] split 2
        make("Transpose", ["u"], ["t"], perm=[0, 2, 1, 3]),  # [1, 4, 2, 4] split 1
        make("Softmax", ["t"], ["sm"], axis=-1),
        make("ReduceSum", ["sm", "ax2"], ["rs"], keepdims=0),  # [1, 4, 4] split 1
        make("Expand", ["rs", "e"], ["ex"]),  # [3, 4, 4] split 1
        make("Flatten", ["ex"], ["f"], axis=1),  # [3, 16] split 1
        make("Split", ["f", "sizes"], ["f1", "f2"], axis=0),  # [1, 16], [2, 16] split 1
        make("Slice", ["f2", "zero", "one", "ax0"], ["sl"]),  # [1, 16] split 1
        make("Concat", ["f1", "sl"], ["c"], axis=0),  # [2, 16] split 1
        make("MatMul", ["c", "w2"], ["y"]),  # row split: partial, all-reduced
        make("Gather", ["c", "idx"], ["g"], axis=0),  # [3, 16] split 1
        make("Add", ["g", "bias"], ["z"]),  # bias sliced; z gathered as a graph output
    ]
    outputs = [vi("y", [2, 5]), vi("z", [3, 16])]
    return make_model(nodes, [vi("x", [2, 8])], outputs, inits)


def test_layout_ops_carry_one_split_exactly(tmp_path):
    path = save(_zoo_model(), tmp_path / "zoo.onnx")
    feeds = {"x": np.random.default_rng(5).standard_normal((2, 8)).astype(np.float32)}
    plan = _simulate(path, {}, feeds, 2)
    assert dict(plan.weights) == {"w": 1, "w2": 0, "bias": 0}
    assert dict(plan.shape_inputs) == {"s1": (2, 2, 4), "e": (3, 2, 4)}
    assert [(op.kind, op.tensor, op.axis) for op in plan.collectives] == [
        ("all_reduce", "y", None),
        ("all_gather", "z", 1),
    ]
    expected = {"h": 1, "r": 1, "u": 2, "t": 1, "sm": 1, "rs": 1, "ex": 1, "f": 1, "c": 1, "g": 1}
    assert {name: plan.layouts[name].axis for name in expected} == expected
