"""Coarsening keeps a DAG, sums costs exactly and adapts the block count."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from passes.analysis import node_costs
from passes.load import load
from passes.transforms.coarsen import coarsen, target_block_count
from tests.modelgen import init, make_model, save, vi


def _residual_chain(tmp_path, layers: int = 6):
    """x -> [h = x@W_i ; x = x + relu(h)] * layers: each layer has a residual branch."""
    nodes, inits = [], []
    cur = "x"
    for i in range(layers):
        nodes += [
            helper.make_node("MatMul", [cur, f"w{i}"], [f"h{i}"]),
            helper.make_node("Relu", [f"h{i}"], [f"r{i}"]),
            helper.make_node("Add", [cur, f"r{i}"], [f"x{i}"]),
        ]
        inits.append(init(f"w{i}", np.ones((16, 16), np.float32)))
        cur = f"x{i}"
    model = make_model(nodes, [vi("x", [4, 16])], [vi(cur, [4, 16])], inits)
    return load(save(model, tmp_path / "res.onnx"))


def test_block_graph_is_a_dag_and_sums_exactly(tmp_path):
    g = _residual_chain(tmp_path)
    costs = node_costs(g)
    weights = [float(c.flops) for c in costs.nodes]
    bg = coarsen(g, costs, weights, target_blocks=4)
    assert all(e.src < e.dst for e in bg.edges)
    assert sorted(n for b in bg.blocks for n in b.nodes) == list(range(g.num_nodes))
    assert sum(b.flops for b in bg.blocks) == costs.total_flops
    assert sum(b.weight for b in bg.blocks) == sum(weights)
    assert sum(b.param_bytes for b in bg.blocks) == 6 * 16 * 16 * 4
    for n, b in enumerate(bg.block_of):
        assert n in bg.blocks[b].nodes
    # Edge bytes: each cut between layers carries the residual stream x_i (4*16*4 = 256 B)
    for e in bg.edges:
        assert e.bytes == 256 * len(e.tensors)


def test_param_budget_forces_cuts(tmp_path):
    g = _residual_chain(tmp_path)
    costs = node_costs(g)
    # One weight is 1 KiB; a 1.5 KiB budget allows one weight per block.
    bg = coarsen(g, costs, [0.0] * g.num_nodes, target_blocks=1, max_block_param_bytes=1536)
    assert len(bg.blocks) == 6
    assert all(b.param_bytes == 1024 for b in bg.blocks)


def test_target_block_count_adapts_to_devices():
    assert target_block_count(1, 10_000) == 64
    assert target_block_count(8, 10_000) == 256
    assert target_block_count(64, 10_000) == 512
    assert target_block_count(8, 40) == 40


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 8), st.integers(1, 18))
def test_any_target_gives_a_dag_covering_all_nodes(tmp_path_factory, layers, target):
    g = _residual_chain(tmp_path_factory.mktemp("c"), layers)
    costs = node_costs(g)
    bg = coarsen(g, costs, [1.0 + (i % 3) for i in range(g.num_nodes)], target_blocks=target)
    assert all(e.src < e.dst for e in bg.edges)
    assert sorted(n for b in bg.blocks for n in b.nodes) == list(range(g.num_nodes))
    assert len(bg.blocks) <= 2 * target + 1


def test_no_block_starts_between_a_cache_append_and_its_reader(tmp_path):
    """However fine the blocks, the appended KV cache is read in the block that appends
    it: a cut there would send the whole cache every step."""
    from examples import llama
    from passes.transforms.coarsen import glued_nodes

    graph = load(llama.build(tmp_path / "d.onnx", "tiny", kind="decode"), {"batch": 1, "past": 7})
    costs = node_costs(graph)
    runtime = [i for i in graph.topological_order() if not graph.nodes[i].folded]
    glued = glued_nodes(graph, runtime)
    appends = [n for n in graph.nodes if n.op_type == "Concat" and "cache" in n.name]
    assert len(appends) == 4 and glued  # k and v of two layers
    for node in appends:  # the nodes from the append on to the Q·Kᵀ / P·V reading it
        at = runtime.index(node.index)
        assert runtime[at + 1] in glued
    blocks = coarsen(graph, costs, [1.0] * graph.num_nodes, len(runtime))
    starts = {b.nodes[len([n for n in b.nodes if graph.nodes[n].folded])] for b in blocks.blocks
              if any(not graph.nodes[n].folded for n in b.nodes)}  # fmt: skip
    assert not starts & glued
