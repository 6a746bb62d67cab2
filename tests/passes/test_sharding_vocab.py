"""Vocabulary-parallel embeddings: the table split by rows, the lookup masked, all-reduced.

The graph of most tests: ``h = Gather(E [8, 4], ids [2, 3])``, ``y = h @ W [4, 6]``.
At n = 2, rank 0 holds rows 0..3 of E and rank 1 rows 4..7; each looks up the
ids in its range and writes zeros for the others, so h is a partial sum: one
all-reduce of 2·3·4 float32 = 96 bytes after the Gather. W is then column split
and y all-gathered (a graph output).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from examples import llama
from partitioner.executor.graph_run import constant_values, run_graph
from partitioner.executor.tensor_parallel import run_group
from partitioner.executor.verify import make_inputs
from partitioner.executor.weights import WeightStore
from passes.analysis.sharding import REPLICATED, CollectiveOp, Layout, shard_graph
from passes.errors import PassError
from passes.load import load
from passes.transforms.tensor_parallel import rank_graph
from passes.transforms.tensor_parallel_vocab import vocab_lookup
from tests.modelgen import init, make_model, save, vi
from tests.passes.test_sharding_exec import _simulate

RNG = np.random.default_rng(7)
E = RNG.standard_normal((8, 4)).astype(np.float32)
W = RNG.standard_normal((4, 6)).astype(np.float32)
IDS = np.array([[0, 5, 7], [3, 4, 1]], np.int64)  # both halves of the vocabulary
PARTIAL = Layout(partial=True)
MASKED_LOOKUP = [
    *("Less", "Add", "Where", "Sub", "Greater", "Less", "And", "Where"),
    *("Gather", "Unsqueeze", "Where"),
]


def _embedding_model(
    table: np.ndarray = E, ids_shape: tuple[int, ...] = (2, 3), opset: int = 18
) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Gather", ["E", "ids"], ["h"], name="embed", axis=0),
        helper.make_node("MatMul", ["h", "W"], ["y"], name="proj"),
    ]
    ids = vi("ids", list(ids_shape), TensorProto.INT64)
    out = vi("y", [*ids_shape, 6])
    return make_model(nodes, [ids], [out], [init("E", table), init("W", W)], opset=opset)


@pytest.fixture
def embedding(tmp_path):
    return load(save(_embedding_model(), tmp_path / "embedding.onnx"))


def _params(graph):
    return constant_values(graph, WeightStore(graph))


def _run_ranks(graph, sharding, ids: np.ndarray, keep=("y",)) -> dict:
    result = run_group(
        graph, sharding, range(graph.num_nodes), {"ids": ids}, _params(graph), {}, keep=keep
    )
    return result.outbox


def test_degree_2_splits_the_table_by_rows_and_all_reduces_the_lookup(embedding):
    plan = shard_graph(embedding, 2)
    assert dict(plan.weights) == {"E": 0, "W": 1}
    assert plan.layouts["E"] == Layout(0) and plan.local_shapes["E"] == (4, 4)
    assert plan.layouts["ids"] == REPLICATED and plan.layouts["h"] == PARTIAL
    reduces = [op for op in plan.collectives if op.kind == "all_reduce"]
    assert reduces == [CollectiveOp("all_reduce", "h", None, 2 * 3 * 4 * 4, 0)]
    assert plan.sharded_nodes == frozenset({0, 1})
    assert plan.shardable_param_fraction == 1.0


def test_degree_3_does_not_divide_the_vocabulary(embedding):
    plan = shard_graph(embedding, 3)  # 8 rows do not split 3 ways
    assert "E" not in plan.weights and plan.layouts["E"] == REPLICATED
    assert plan.layouts["h"] == REPLICATED
    assert all(op.tensor != "h" for op in plan.collectives)
    assert 0 not in plan.sharded_nodes


def test_a_table_smaller_than_its_lookup_stays_whole(tmp_path):
    """4 rows read by 6 ids: the all-reduce would move more than the split saves."""
    model = _embedding_model(np.ones((4, 4), np.float32))
    plan = shard_graph(load(save(model, tmp_path / "small.onnx")), 2)
    assert "E" not in plan.weights and plan.layouts["h"] == REPLICATED


@pytest.mark.parametrize("rank", [0, 1])
def test_rank_graph_masks_the_ids_outside_its_rows(embedding, rank):
    plan = shard_graph(embedding, 2)
    model = rank_graph(embedding, plan, rank, read_param=_params(embedding).__getitem__)
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert ops == [*MASKED_LOOKUP, "AllReduce", "MatMul", "AllGather"]
    assert model.graph.node[len(MASKED_LOOKUP) - 1].output[0] == "h__partial"
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(values["E"], E[4 * rank : 4 * rank + 4])
    assert values["h__vocab_lo"] == 4 * rank and values["h__vocab_rows"] == 4
    assert values["h__vocab_lo"].dtype == np.int64  # the ids' type
    assert values["h__vocab_fill"].dtype == np.float32  # the table's type
    # the executor runs rank 0's nodes on every rank: only the initializers may differ
    assert list(model.graph.node) == list(rank_graph(embedding, plan, 0).graph.node)


def test_ranks_with_the_all_reduce_equal_the_whole_model_exactly(embedding):
    whole = run_graph(embedding, {"ids": IDS})
    ours = _run_ranks(embedding, shard_graph(embedding, 2), IDS, keep=("y", "h"))
    # every row comes from one rank, the other adds zeros: no rounding at all
    np.testing.assert_array_equal(ours["h"], E[IDS])
    np.testing.assert_array_equal(ours["y"], whole["y"])


def test_negative_ids_count_from_the_end_as_in_the_whole_model(embedding):
    ids = np.array([[-1, -8, 2], [-4, -5, 7]], np.int64)
    ours = _run_ranks(embedding, shard_graph(embedding, 2), ids, keep=("h",))
    np.testing.assert_array_equal(ours["h"], E[ids])


def test_rank_partials_match_onnx_reference_evaluator(tmp_path):
    """Each rank's lookup on onnx's reference evaluator: ranks' parts sum to the lookup."""
    path = save(_embedding_model(), tmp_path / "embedding.onnx")
    plan = _simulate(path, {}, {"ids": IDS}, 2)
    assert plan.layouts["h"] == PARTIAL


def test_old_opset_spells_unsqueeze_axes_as_an_attribute(tmp_path):
    graph = load(save(_embedding_model(opset=11), tmp_path / "old.onnx"))
    plan = shard_graph(graph, 2)
    model = rank_graph(graph, plan, 1, read_param=_params(graph).__getitem__)
    onnx.checker.check_model(model, full_check=True)
    unsqueeze = next(n for n in model.graph.node if n.op_type == "Unsqueeze")
    assert {a.name: list(a.ints) for a in unsqueeze.attribute} == {"axes": [-1]}
    assert "h__vocab_axes" not in {t.name for t in model.graph.initializer}
    np.testing.assert_array_equal(
        _run_ranks(graph, plan, IDS)["y"], run_graph(graph, {"ids": IDS})["y"]
    )


def _tied_model(head: onnx.NodeProto, table: np.ndarray, out_shape: list[int]) -> onnx.ModelProto:
    lookup = helper.make_node("Gather", ["E", "ids"], ["h"], name="embed", axis=0)
    ids = vi("ids", [6], TensorProto.INT64)
    return make_model([lookup, head], [ids], [vi("y", out_shape)], [init("E", table)])


def test_tied_table_needed_on_another_axis_stays_whole(tmp_path):
    """``y = Gather(E, ids) @ E``: the head would split E by columns, the lookup by rows;
    a table held in two layouts would be wrong, so the next pass keeps E whole."""
    table = RNG.standard_normal((8, 8)).astype(np.float32)
    head = helper.make_node("MatMul", ["h", "E"], ["y"], name="head")
    graph = load(save(_tied_model(head, table, [6, 8]), tmp_path / "tied.onnx"))
    plan = shard_graph(graph, 2)
    assert plan.weights == {} and plan.collectives == () and plan.passes == 2
    assert plan.layouts["E"] == REPLICATED and plan.layouts["h"] == REPLICATED


def test_tied_head_reading_the_same_rows_keeps_the_split(tmp_path):
    """``y = Gemm(h, E, transB=1)``: the head's columns are E's rows, split the same way."""
    table = RNG.standard_normal((8, 4)).astype(np.float32)
    head = helper.make_node("Gemm", ["h", "E"], ["y"], name="head", transB=1)
    graph = load(save(_tied_model(head, table, [6, 8]), tmp_path / "tied.onnx"))
    plan = shard_graph(graph, 2)
    assert dict(plan.weights) == {"E": 0}
    assert [(op.kind, op.tensor) for op in plan.collectives] == [
        ("all_reduce", "h"),
        ("all_gather", "y"),
    ]
    ids = np.array([7, 0, 3, 4, -1, 5], np.int64)
    whole = run_graph(graph, {"ids": ids})["y"]
    np.testing.assert_allclose(_run_ranks(graph, plan, ids)["y"], whole, rtol=1e-6, atol=1e-6)


def test_a_table_that_does_not_split_is_a_pass_error(embedding):
    with pytest.raises(PassError, match=r"table 'E' of shape \(8, 4\) does not split into 3"):
        vocab_lookup(embedding, 0, "h", 0, 3)


def test_tied_tiny_llama_on_two_ranks_equals_the_whole_model(tmp_path):
    """Llama 3.2's tied head: the loader folds ``Transpose(E)`` into its own constant,
    split by columns (E's rows): both splits agree with the one table."""
    config = dataclasses.replace(llama.CONFIGS["tiny"], tie_word_embeddings=True)
    path = llama.build(tmp_path / "tied.onnx", config, kind="decode", weights="random")
    graph = load(path, {"batch": 1, "past": 15})
    plan = shard_graph(graph, 2)
    assert plan.weights["model.embed_tokens.weight"] == 0
    assert plan.weights["lm_head.tied_transpose"] == 1
    feeds = make_inputs(graph, seed=3)
    cache = {n: v for n, v in feeds.items() if n.startswith("past.")}
    inbox = {n: v for n, v in feeds.items() if n not in cache}
    outputs = tuple(graph.outputs)
    result = run_group(
        graph, plan, range(graph.num_nodes), inbox, _params(graph), cache, keep=outputs
    )
    whole = run_graph(graph, feeds)
    for name in outputs:
        np.testing.assert_allclose(result.outbox[name], whole[name], rtol=1e-5, atol=1e-5)
