"""Per-rank graphs of a tensor-parallel group: sliced weights, collective nodes, local shapes."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from examples import llama
from partitioner.executor.graph_run import constant_values
from partitioner.executor.weights import WeightStore
from passes.analysis.sharding import CollectiveOp, Layout, ShardingPlan, shard_graph
from passes.errors import ExternalDataError, PassError
from passes.external import weights_as_inputs
from passes.load import load
from passes.transforms.tensor_parallel import (
    COLLECTIVE_DOMAIN,
    SOURCE_KEY,
    SPLIT_KEY,
    RankGraph,
    rank_graph,
)
from tests.modelgen import init, make_model, save, vi

RNG = np.random.default_rng(0)
W1 = RNG.standard_normal((8, 16)).astype(np.float32)
W2 = RNG.standard_normal((16, 4)).astype(np.float32)
B = RNG.standard_normal(4).astype(np.float32)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """fc1: h = x @ W1; relu: a = Relu(h); fc2: y = a @ W2; bias: out = y + b."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("MatMul", ["a", "w2"], ["y"], name="fc2"),
        helper.make_node("Add", ["y", "b"], ["out"], name="bias"),
    ]
    inits = [init("w1", W1), init("w2", W2), init("b", B)]
    model = make_model(nodes, [vi("x", [2, 8])], [vi("out", [2, 4])], inits)
    return load(save(model, tmp_path_factory.mktemp("mlp") / "mlp.onnx"))


def megatron(degree: int = 2) -> ShardingPlan:
    """W1 split by columns, W2 by rows: h and a split on axis 1, y a partial sum, reduced."""
    split = Layout(axis=1)
    return ShardingPlan(
        degree=degree,
        layouts={"x": Layout(), "w1": split, "h": split, "a": split, "w2": Layout(axis=0)}
        | {"y": Layout(partial=True), "b": Layout(), "out": Layout()},
        weights={"w1": 1, "w2": 0},
        collectives=(CollectiveOp("all_reduce", "y", None, 32, 2),),
        sharded_nodes=frozenset({0, 1, 2}),
        local_shapes={"w1": (8, 16 // degree), "h": (2, 16 // degree), "a": (2, 16 // degree)}
        | {"w2": (16 // degree, 4)},
        shape_inputs={},
        shardable_flops_fraction=1.0,
        shardable_param_fraction=1.0,
    )


def gathered() -> ShardingPlan:
    """W1 split by columns, then a gathered after the Relu: fc2 runs whole on every rank."""
    split = Layout(axis=1)
    return dataclasses.replace(
        megatron(),
        layouts={"x": Layout(), "w1": split, "h": split, "a": split} | {"w2": Layout()},
        weights={"w1": 1},
        collectives=(CollectiveOp("all_gather", "a", 1, 128, 1),),
        local_shapes={"w1": (8, 8), "h": (2, 8), "a": (2, 8)},
    )


def _read(graph):
    return constant_values(graph, WeightStore(graph)).__getitem__


def _shapes(values) -> dict[str, list]:
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


@pytest.mark.parametrize("rank", [0, 1])
def test_mlp_rank_graph_holds_its_slices_and_an_all_reduce(mlp, rank):
    model = rank_graph(mlp, megatron(), rank, read_param=_read(mlp))
    onnx.checker.check_model(model, full_check=True)
    assert {(o.domain, o.version) for o in model.opset_import} >= {(COLLECTIVE_DOMAIN, 1)}
    g = model.graph
    ops = [(n.op_type, list(n.input), list(n.output)) for n in g.node]
    assert ops == [
        ("MatMul", ["x", "w1"], ["h"]),
        ("Relu", ["h"], ["a"]),
        ("MatMul", ["a", "w2"], ["y__partial"]),
        ("AllReduce", ["y__partial"], ["y"]),
        ("Add", ["y", "b"], ["out"]),
    ]
    reduce = g.node[3]
    assert reduce.domain == COLLECTIVE_DOMAIN
    assert {a.name: a.i for a in reduce.attribute} == {"group_size": 2}
    weights = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    columns, rows = slice(8 * rank, 8 * rank + 8), slice(8 * rank, 8 * rank + 8)
    np.testing.assert_array_equal(weights["w1"], W1[:, columns])
    np.testing.assert_array_equal(weights["w2"], W2[rows, :])
    np.testing.assert_array_equal(weights["b"], B)
    assert _shapes(g.input) == {"x": [2, 8]} and _shapes(g.output) == {"out": [2, 4]}
    assert _shapes(g.value_info) == {"y__partial": [2, 4], "y": [2, 4]}


def test_all_gather_node_carries_its_axis_and_local_shapes(mlp):
    model = rank_graph(mlp, gathered(), 1, read_param=_read(mlp))
    onnx.checker.check_model(model, full_check=True)
    gather = next(n for n in model.graph.node if n.domain == COLLECTIVE_DOMAIN)
    assert (gather.op_type, list(gather.input), list(gather.output)) == (
        "AllGather",
        ["a__local"],
        ["a"],
    )
    assert {a.name: a.i for a in gather.attribute} == {"axis": 1, "group_size": 2}
    assert _shapes(model.graph.value_info) == {"a__local": [2, 8], "a": [2, 16]}
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    assert weights == {"w1": [8, 8], "w2": [16, 4], "b": [4]}


def test_a_subset_of_nodes_gets_its_boundary_as_inputs_and_outputs(mlp):
    """Nodes 1..2 (relu, fc2) read a from outside, split, and hand out y, reduced."""
    model = rank_graph(mlp, megatron(), 0, [1, 2], read_param=_read(mlp))
    onnx.checker.check_model(model, full_check=True)
    assert _shapes(model.graph.input) == {"h": [2, 8]}
    assert _shapes(model.graph.output) == {"y": [2, 4]}
    assert [t.name for t in model.graph.initializer] == ["w2"]


def test_structure_only_declares_parameters_without_data(mlp):
    model = rank_graph(mlp, megatron(), 1)
    declared = {t.name: t for t in model.graph.initializer}
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in declared.values())
    assert all(not t.raw_data for t in declared.values())
    entries = {k: {e.key: e.value for e in t.external_data} for k, t in declared.items()}
    assert entries["w1"] == {SOURCE_KEY: "w1", SPLIT_KEY: "axis 1, chunk 1 of 2"}
    assert entries["b"] == {SOURCE_KEY: "b", SPLIT_KEY: ""}
    assert list(declared["w2"].dims) == [8, 4]
    onnx.checker.check_model(weights_as_inputs(model)[0], full_check=True)


def test_bad_requests_are_pass_errors(mlp):
    with pytest.raises(PassError, match="rank 2 is not one of the 2 ranks"):
        rank_graph(mlp, megatron(), 2)
    with pytest.raises(PassError, match="node 9 is not in the model"):
        rank_graph(mlp, megatron(), 0, [9])
    odd = dataclasses.replace(megatron(3), local_shapes={})
    with pytest.raises(PassError, match=r"'w1' of shape \[8, 16\] does not split into 3 equal"):
        rank_graph(mlp, odd, 0, read_param=_read(mlp))
    unknown = dataclasses.replace(
        megatron(), collectives=(CollectiveOp("all_to_all", "y", None, 32, 2),)
    )
    with pytest.raises(PassError, match="collective 'all_to_all' on 'y'"):
        rank_graph(mlp, unknown, 0)


def test_rank_graph_is_a_pass_whose_result_reads_only_defined_values(mlp):
    result = RankGraph(megatron(), 0)(mlp)
    assert result.modified and isinstance(result.model, onnx.ModelProto)
    broken = onnx.ModelProto()
    broken.CopyFrom(result.model)
    del broken.graph.node[3]  # the all-reduce: the bias now reads y, which nothing makes
    with pytest.raises(PassError, match="node 'bias' reads 'y' before it is made"):
        RankGraph(megatron(), 0).ensures(broken)


EMBED = "model.embed_tokens.weight"
VOCAB = "model.embed_tokens__vocab"  # names of the masked lookup's constants and values


@pytest.fixture(scope="module", params=["decode", "prefill"])
def tiny_llama(request, tmp_path_factory):
    kind = request.param
    path = llama.build(
        tmp_path_factory.mktemp(kind) / f"{kind}.onnx", "tiny", kind=kind, weights="random"
    )
    return load(path, {"batch": 1, "past": 15} if kind == "decode" else {"batch": 1, "seq": 8})


@pytest.mark.parametrize("rank", [0, 1])
def test_llama_rank_graphs_hold_local_shapes(tiny_llama, rank):
    graph = tiny_llama
    sharding = shard_graph(graph, 2)
    model = rank_graph(graph, sharding, rank, read_param=_read(graph))
    onnx.checker.check_model(model, full_check=True)
    kinds = [n.op_type for n in model.graph.node if n.domain == COLLECTIVE_DOMAIN]
    # two a layer and the embedding's
    assert kinds.count("AllReduce") == 5 and len(kinds) == len(sharding.collectives)
    for t in model.graph.initializer:
        local = sharding.shape_inputs.get(t.name)
        if t.name.startswith(VOCAB):  # the masked lookup's constants: lo is this rank's
            assert t.name != f"{VOCAB}_lo" or numpy_helper.to_array(t) == 128 * rank
        elif local is not None:  # a Reshape target: this rank's value
            assert tuple(numpy_helper.to_array(t).tolist()) == tuple(local)
        else:
            assert tuple(t.dims) == sharding.local_shapes.get(t.name, graph.tensors[t.name].shape)
    lookups = [n for n in model.graph.node if n.op_type == "Gather" and EMBED in n.input]
    assert [n.input[1] for n in lookups] == [f"{VOCAB}_safe_out"]  # masked ids, not input_ids
    inputs, outputs = _shapes(model.graph.input), _shapes(model.graph.output)
    decode = "past.0.key" in graph.inputs
    seq, cached = (1, 15 + 1) if decode else (8, 8)
    if decode:
        assert inputs["past.0.key"] == [1, 1, 15, 16]  # two KV heads, one a rank
    assert outputs["present.1.value"] == [1, 1, cached, 16]
    assert outputs["logits"] == [1, seq, 256]  # all-gathered: whole


def test_weightless_model_gives_structure_and_fails_only_for_data(tmp_path):
    path = llama.build(tmp_path / "weightless.onnx", "tiny", kind="decode", weights="none")
    graph = load(path, {"batch": 1, "past": 15})
    sharding = shard_graph(graph, 2)
    model = rank_graph(graph, sharding, 0)
    onnx.checker.check_model(weights_as_inputs(model)[0])
    # the embedding's Gather became the 11 nodes of the masked lookup
    assert (
        len(model.graph.node)
        == sum(not n.folded for n in graph.nodes) + len(sharding.collectives) + 10
    )
    with pytest.raises(ExternalDataError, match=r"weightless\.onnx\.data"):
        rank_graph(graph, sharding, 0, read_param=WeightStore(graph).get)
