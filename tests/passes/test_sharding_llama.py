"""Sharding the tiny Llama (examples.llama "tiny": hidden 64, 4 heads, 2 KV heads of 16, 2 layers).

Expected values by hand. With n = 2 every rank holds 2 query heads and 1 KV head:
Q/K/V, gate and up are column split, o_proj and down_proj row split, and each
layer has exactly two all-reduces; the embedding table [256, 64] is split by
vocabulary (128 rows a rank), its lookup all-reduced right after the Gather;
the logits ([1, S, 256]) are all-gathered on their vocabulary axis. With n = 4
the 2 KV heads cannot be split: the attention core runs whole on every rank and
only the embedding, the MLP and the LM head are split.
"""

from __future__ import annotations

import math

import pytest

from examples.llama import CONFIGS, build
from passes.analysis.sharding import REPLICATED, Layout, ShardingPlan, shard_graph
from passes.ir import Graph
from passes.load import load

CONFIG = CONFIGS["tiny"]
EMBED = "model.embed_tokens.weight"
LAYERS = range(CONFIG.num_layers)
HEADS = Layout(1)  # [batch, heads, seq, head_dim] split on the heads


@pytest.fixture(scope="module", params=["decode", "prefill"])
def llama(request, tmp_path_factory) -> tuple[str, Graph]:
    kind = request.param
    path = build(tmp_path_factory.mktemp("llama") / f"{kind}.onnx", "tiny", kind=kind)
    dims = {"batch": 1, "past": 15} if kind == "decode" else {"batch": 1, "seq": 8}
    return kind, load(path, dims)


def _weights(*names: str, axis: int) -> dict[str, int]:
    return {f"model.layers.{i}.{name}.weight": axis for i in LAYERS for name in names}


def test_tiny_config_is_what_the_expectations_assume():
    assert (CONFIG.hidden_size, CONFIG.num_heads, CONFIG.num_kv_heads) == (64, 4, 2)
    assert (CONFIG.head_dim, CONFIG.intermediate_size, CONFIG.vocab_size) == (16, 128, 256)


def test_degree_2_megatron_layout(llama):
    kind, graph = llama
    plan = shard_graph(graph, 2)
    column = (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
    )
    expected = _weights(*column, axis=1) | _weights("self_attn.o_proj", "mlp.down_proj", axis=0)
    assert dict(plan.weights) == expected | {"lm_head.weight": 1, EMBED: 0}
    seq = 1 if kind == "decode" else 8
    # the embedding's lookup [1, S, 64] first, then two a layer of the same size
    reduces = [("model.embed_tokens", seq * 64 * 4)] + [
        (f"model.layers.{i}.{proj}", seq * 64 * 4)
        for i in LAYERS
        for proj in ("self_attn.o_proj", "mlp.down_proj")
    ]
    assert [(op.tensor, op.nbytes) for op in plan.collectives if op.kind == "all_reduce"] == reduces
    gathers = [
        (op.tensor, op.axis, op.nbytes) for op in plan.collectives if op.kind == "all_gather"
    ]
    assert gathers == [("logits", 2, seq * 256 * 4)]
    assert plan.shardable_flops_fraction > 0.5 and plan.shardable_param_fraction > 0.5
    assert plan.passes == 1


def test_degree_2_kv_caches_split_on_their_head_axis(llama):
    kind, graph = llama
    plan = shard_graph(graph, 2)
    total = 16 if kind == "decode" else 8
    for i in LAYERS:
        for part in ("key", "value"):
            assert plan.layouts[f"present.{i}.{part}"] == HEADS
            assert plan.local_shapes[f"present.{i}.{part}"] == (1, 1, total, 16)
            if kind == "decode":
                assert plan.layouts[f"past.{i}.{part}"] == HEADS
                assert plan.local_shapes[f"past.{i}.{part}"] == (1, 1, 15, 16)
    assert plan.layouts["model.layers.0.self_attn.softmax"] == HEADS  # [1, 2, 2, S, T] by KV head
    assert plan.layouts[EMBED] == Layout(0) and plan.local_shapes[EMBED] == (128, 64)
    assert plan.layouts["model.embed_tokens"] == Layout(partial=True)
    assert plan.layouts["input_ids"] == REPLICATED
    embed_node = graph.tensors["model.embed_tokens"].producer
    assert embed_node in plan.sharded_nodes


def test_degree_2_shape_inputs_by_hand(llama):
    kind, graph = llama
    plan = shard_graph(graph, 2)
    s = 1 if kind == "decode" else 8
    assert dict(plan.shape_inputs) == {
        "const.q_heads_shape": (1, s, 2, 16),  # 2 of the 4 query heads
        "const.k_heads_shape": (1, s, 1, 16),  # 1 of the 2 KV heads (K and V)
        "const.grouped_heads_shape": (1, 1, 2, s, 16),  # 1 KV group of 2 query heads
        "const.heads_shape": (1, 2, s, 16),
        "const.hidden_shape": (1, s, 32),  # 2 heads x 16 before o_proj
    }


def _runtime_tensors(graph: Graph) -> set[str]:
    return {
        name
        for node in graph.nodes
        if not node.folded
        for name in (*node.present_inputs, *node.present_outputs)
    }


def _check_consistent(graph: Graph, plan: ShardingPlan) -> None:
    """Every runtime tensor has a layout; local shapes and shape inputs agree with them."""
    assert set(plan.layouts) == _runtime_tensors(graph)
    for name, layout in plan.layouts.items():
        shape = graph.tensors[name].shape
        if layout.axis is None:
            assert name not in plan.local_shapes
            continue
        local = list(shape)  # type: ignore[arg-type]
        local[layout.axis] //= plan.degree
        assert plan.local_shapes[name] == tuple(local)
    for node in graph.nodes:
        if node.folded or node.op_type not in ("Reshape", "Expand"):
            continue
        value = plan.shape_inputs.get(node.inputs[1])
        out = node.outputs[0]
        if value is None:
            assert not plan.layouts[out].is_split
            continue
        local = plan.local_shapes[out]
        assert value == local and math.prod(value) == math.prod(plan.local_shapes[node.inputs[0]])
    for op in plan.collectives:
        assert op.tensor in graph.nodes[op.node].outputs


@pytest.mark.parametrize("degree", [1, 2, 4])
def test_every_runtime_tensor_has_a_consistent_layout(llama, degree):
    _check_consistent(llama[1], shard_graph(llama[1], degree))


def test_degree_4_gqa_keeps_attention_whole(llama):
    kind, graph = llama
    plan = shard_graph(graph, 4)  # 4 does not divide the 2 KV heads
    mlp = _weights("mlp.gate_proj", "mlp.up_proj", axis=1) | _weights("mlp.down_proj", axis=0)
    assert dict(plan.weights) == mlp | {"lm_head.weight": 1, EMBED: 0}  # 256 rows / 4
    reduces = [op.tensor for op in plan.collectives if op.kind == "all_reduce"]
    assert reduces == ["model.embed_tokens"] + [f"model.layers.{i}.mlp.down_proj" for i in LAYERS]
    assert [op.tensor for op in plan.collectives if op.kind == "all_gather"] == ["logits"]
    kv = [n for n in plan.layouts if n.startswith(("past.", "present."))]
    assert kv and all(plan.layouts[n] == REPLICATED for n in kv)
    assert plan.shape_inputs == {}
    assert plan.shardable_flops_fraction > 0.5


def test_degree_1_everything_replicated(llama):
    plan = shard_graph(llama[1], 1)
    assert set(plan.layouts.values()) == {REPLICATED}
    assert plan.collectives == () and plan.weights == {} and plan.shape_inputs == {}
    assert plan.sharded_nodes == frozenset() and plan.shardable_flops_fraction == 0.0
