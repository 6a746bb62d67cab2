"""Partition I/O: what a set of nodes reads, holds resident, hands out, and what moves.

Every expected name and byte count below is worked out by hand from the graphs
drawn in the helpers' docstrings (float32 is 4 bytes, int64 8).
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from passes.analysis import (
    PartitionIO,
    Residency,
    TensorFlow,
    partition_io,
    residency,
    tensor_flows,
)
from passes.ir import build_graph
from passes.load import load
from targets import HOST
from tests.modelgen import init, make_model, save, vi


def _two_stage(tmp_path):
    """Six nodes; stage 0 = nodes 0-2, stage 1 = nodes 3-5::

        0  h0 = MatMul(x, w)          w: float32[4,4] = 64 B, shared by 0 and 3
        1  h1 = Add(h0, b)            b: float32[4] = 16 B
        2  mid = Relu(h1)             graph output, and read by stage 1
        3  h2 = MatMul(mid, w)
        4  y = Add(h2, x)             x: float32[2,4] = 32 B, read by both stages
        5  present_key = Add(past_key, h2)   past_key: KV-cache input, 32 B

    ``unused`` is a model input nobody reads. Outputs: y, mid, present_key.
    """
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h0"], name="mm0"),
        helper.make_node("Add", ["h0", "b"], ["h1"], name="add0"),
        helper.make_node("Relu", ["h1"], ["mid"], name="relu"),
        helper.make_node("MatMul", ["mid", "w"], ["h2"], name="mm1"),
        helper.make_node("Add", ["h2", "x"], ["y"], name="add1"),
        helper.make_node("Add", ["past_key", "h2"], ["present_key"], name="cache"),
    ]
    model = make_model(
        nodes,
        [vi("x", [2, 4]), vi("past_key", [2, 4]), vi("unused", [3])],
        [vi("y", [2, 4]), vi("mid", [2, 4]), vi("present_key", [2, 4])],
        [init("w", np.ones((4, 4), np.float32)), init("b", np.ones(4, np.float32))],
    )
    return load(save(model, tmp_path / "two_stage.onnx"))


def _folded(tmp_path):
    """Four nodes, two of them folded at load time::

    0  wT = Transpose(wt)     folded: wt float32[4,2]; wT float32[2,4] = 32 B
    1  h = MatMul(x, wT)      x: float32[2,2]
    2  hs = Shape(h)          folded: reads h's static shape only; hs int64[2] = 16 B
    3  y = Reshape(h, hs)
    """
    nodes = [
        helper.make_node("Transpose", ["wt"], ["wT"], name="t"),
        helper.make_node("MatMul", ["x", "wT"], ["h"], name="mm"),
        helper.make_node("Shape", ["h"], ["hs"], name="shape"),
        helper.make_node("Reshape", ["h", "hs"], ["y"], name="reshape"),
    ]
    model = make_model(
        nodes, [vi("x", [2, 2])], [vi("y", [2, 4])], [init("wt", np.ones((4, 2), np.float32))]
    )
    graph = load(save(model, tmp_path / "folded.onnx"))
    assert [n.folded for n in graph.nodes] == [True, False, True, False]
    return graph


def test_residency_counts_a_shared_weight_in_both_stages(tmp_path):
    g = _two_stage(tmp_path)
    first, second = residency(g, [0, 1, 2]), residency(g, [3, 4, 5])
    assert first == Residency(params={"w": 64, "b": 16}, kv_cache={})
    assert list(first.params) == ["w", "b"]  # first-use order
    assert list(residency(g, range(6)).params) == [
        "w",
        "b",
    ]  # node 3 reading w again keeps it first
    assert (first.param_bytes, first.kv_cache_bytes) == (80, 0)
    # w again (read twice across the plan, resident twice); the KV cache lives where it is read
    assert second == Residency(params={"w": 64}, kv_cache={"past_key": 32})
    assert (second.param_bytes, second.kv_cache_bytes) == (64, 32)


def test_residency_skips_what_folded_nodes_read(tmp_path):
    g = _folded(tmp_path)
    # the Transpose ran at load time: its input wt is not needed, its output wT is resident
    assert residency(g, [0, 1]) == Residency(params={"wT": 32}, kv_cache={})
    assert residency(g, [2, 3]) == Residency(params={"hs": 16}, kv_cache={})
    assert residency(g, [0, 2]) == Residency(params={}, kv_cache={})  # folded nodes only


def test_partition_io_splits_inputs_and_keeps_first_use_order(tmp_path):
    g = _two_stage(tmp_path)
    assert partition_io(g, [0, 1, 2]) == PartitionIO(
        nodes=(0, 1, 2),
        inputs=("x", "w", "b"),  # h0 and h1 are made and read inside: not inputs
        received=("x",),
        params=("w", "b"),
        kv_cache=(),
        outputs=("mid",),  # read by node 3 and a graph output; h0, h1 stay inside
    )
    assert partition_io(g, [3, 4, 5]) == PartitionIO(
        nodes=(3, 4, 5),
        inputs=("mid", "w", "x", "past_key"),
        received=("mid", "x"),
        params=("w",),
        kv_cache=("past_key",),
        outputs=("y", "present_key"),  # graph outputs; h2 is read only inside
    )


def test_partition_io_counts_a_value_read_before_it_is_made_as_an_input(tmp_path):
    g = _two_stage(tmp_path)
    io = partition_io(g, [1, 0])  # Add runs before the MatMul that makes h0
    assert io.inputs == ("h0", "b", "x", "w")
    assert io.received == ("h0", "x")
    assert io.outputs == ("h1",)  # h0's only reader is inside; h1 is read by node 2


def test_partition_io_ignores_folded_nodes_and_folded_readers(tmp_path):
    g = _folded(tmp_path)
    first = partition_io(g, [0, 1])
    assert (first.nodes, first.inputs, first.params, first.received) == (
        (1,),
        ("x", "wT"),
        ("wT",),
        ("x",),
    )
    assert first.outputs == ("h",)  # node 3 (runtime) reads it
    # with Reshape inside, h's only outside reader is the folded Shape: nothing leaves but y
    assert partition_io(g, [1, 3]).outputs == ("y",)


def test_tensor_flows_of_two_stages(tmp_path):
    g = _two_stage(tmp_path)
    owner = {0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 1}
    # w, b: parameters; past_key: resident KV cache; unused: nobody reads it
    assert tensor_flows(g, owner) == (
        TensorFlow("x", 32, HOST, (0, 1), False),  # a model input both stages read
        TensorFlow("h0", 32, 0, (), False),
        TensorFlow("h1", 32, 0, (), False),
        TensorFlow("mid", 32, 0, (1,), True),  # a graph output made mid-graph
        TensorFlow("h2", 32, 1, (), False),
        TensorFlow("y", 32, 1, (), True),
        TensorFlow("present_key", 32, 1, (), False),  # a KV-cache output stays on its stage
    )
    # owner may be a sequence indexed by node (a BlockGraph's block_of)
    assert tensor_flows(g, [0, 0, 0, 1, 1, 1]) == tensor_flows(g, owner)


def test_tensor_flows_skip_folded_readers(tmp_path):
    g = _folded(tmp_path)
    owner = {0: 0, 1: 0, 2: 2, 3: 1}  # the folded Shape sits alone in partition 2
    assert tensor_flows(g, owner) == (
        TensorFlow("x", 16, HOST, (0,), False),
        TensorFlow("h", 32, 0, (1,), False),  # not read by partition 2 at runtime
        TensorFlow("y", 32, 1, (), True),
    )


def test_unknown_sizes_move_at_zero_bytes_and_are_not_resident_bytes():
    """No shape inference: ``n`` stays symbolic, so x, past and h have no known size."""
    nodes = [
        helper.make_node("Relu", ["x"], ["h"], name="relu"),
        helper.make_node("Add", ["h", "past"], ["y"], name="add"),
    ]
    model = make_model(nodes, [vi("x", ["n", 4]), vi("past", ["n", 4])], [vi("y", [2, 4])])
    g = build_graph(model)
    assert residency(g, [0, 1]) == Residency(params={}, kv_cache={})
    # still resident by name: the executor must find it there
    assert partition_io(g, [1]).kv_cache == ("past",)
    assert partition_io(g, [1]).received == ("h",)
    assert tensor_flows(g, {0: 0, 1: 1}) == (
        TensorFlow("x", 0, HOST, (0,), False),
        TensorFlow("h", 0, 0, (1,), False),
        TensorFlow("y", 32, 1, (), True),  # the graph output declares its shape
    )
