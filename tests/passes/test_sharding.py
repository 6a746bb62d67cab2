"""Sharding analysis on small hand-built graphs: expected layouts worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from passes.analysis.sharding import REPLICATED, CollectiveOp, Layout, shard_graph
from passes.analysis.sharding_shapes import reshape_axis
from passes.load import load
from tests.modelgen import init, make_model, save, vi

SPLIT0, SPLIT1, PARTIAL = Layout(0), Layout(1), Layout(partial=True)


def _ones(*shape: int) -> np.ndarray:
    return np.ones(shape, np.float32)


@pytest.fixture
def mlp(tmp_path):
    """x[2, 8] -> MatMul W1[8, 16] -> Relu -> MatMul W2[16, 4] -> y[2, 4]."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("MatMul", ["a", "w2"], ["y"], name="fc2"),
    ]
    model = make_model(
        nodes,
        [vi("x", [2, 8])],
        [vi("y", [2, 4])],
        [init("w1", _ones(8, 16)), init("w2", _ones(16, 4))],
    )
    return load(save(model, tmp_path / "mlp.onnx"), {})


def test_mlp_column_then_row_split_with_one_all_reduce(mlp):
    plan = shard_graph(mlp, 2)
    assert dict(plan.weights) == {"w1": 1, "w2": 0}
    assert dict(plan.layouts) == {
        "x": REPLICATED,
        "w1": SPLIT1,
        "h": SPLIT1,
        "a": SPLIT1,
        "w2": SPLIT0,
        "y": PARTIAL,
    }
    # y is 2 x 4 float32 = 32 bytes, reduced right after fc2 (node 2)
    assert plan.collectives == (CollectiveOp("all_reduce", "y", None, 32, 2),)
    assert dict(plan.local_shapes) == {"w1": (8, 8), "w2": (8, 4), "h": (2, 8), "a": (2, 8)}
    assert plan.sharded_nodes == frozenset({0, 1, 2})
    assert plan.shape_inputs == {}
    assert plan.shardable_flops_fraction == 1.0
    assert plan.shardable_param_fraction == 1.0
    assert plan.collective_counts() == {"all_reduce": 1}


def test_mlp_degree_not_dividing_any_dim_is_replicated(mlp):
    plan = shard_graph(mlp, 3)  # 16 % 3 and 4 % 3 and 8 % 3 are all non-zero
    assert set(plan.layouts.values()) == {REPLICATED}
    assert plan.weights == {} and plan.collectives == () and plan.local_shapes == {}
    assert plan.sharded_nodes == frozenset()
    assert plan.shardable_flops_fraction == 0.0 and plan.shardable_param_fraction == 0.0


def test_degree_one_is_replicated_and_degree_zero_is_refused(mlp):
    plan = shard_graph(mlp, 1)
    assert set(plan.layouts) == {"x", "w1", "h", "a", "w2", "y"}
    assert set(plan.layouts.values()) == {REPLICATED}
    assert plan.collectives == () and plan.weights == {} and plan.sharded_nodes == frozenset()
    with pytest.raises(ValueError, match="at least 1"):
        shard_graph(mlp, 0)


def _cumsum_graph(tmp_path, with_row_split: bool):
    """x[2, 8] -> MatMul W1[8, 16] -> h; h -> Relu -> CumSum (no rule) -> c; maybe h -> W2 -> y."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1")]
    outputs = [vi("c", [2, 16])]
    inits = [init("w1", _ones(8, 16)), init("axis", np.array(1, np.int64))]
    if with_row_split:
        nodes.append(helper.make_node("MatMul", ["h", "w2"], ["y"], name="fc2"))
        outputs.append(vi("y", [2, 4]))
        inits.append(init("w2", _ones(16, 4)))
    nodes += [
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("CumSum", ["r", "axis"], ["c"], name="cumsum"),
    ]
    model = make_model(nodes, [vi("x", [2, 8])], outputs, inits)
    return load(save(model, tmp_path / "cumsum.onnx"), {})


def test_op_without_rule_reads_its_split_input_all_gathered(tmp_path):
    graph = _cumsum_graph(tmp_path, with_row_split=True)  # fc1 0, fc2 1, relu 2, cumsum 3
    plan = shard_graph(graph, 2)
    assert dict(plan.weights) == {"w1": 1, "w2": 0}
    # r (2 x 16 float32 = 128 bytes) is gathered on axis 1 right after relu; CumSum runs whole
    assert plan.collectives == (
        CollectiveOp("all_reduce", "y", None, 32, 1),
        CollectiveOp("all_gather", "r", 1, 128, 2),
    )
    assert plan.layouts["r"] == SPLIT1 and plan.layouts["c"] == REPLICATED
    assert plan.sharded_nodes == frozenset({0, 1, 2})


def test_column_split_that_only_feeds_a_gather_is_dropped(tmp_path):
    # without fc2 nothing uses the split: splitting fc1 would only add an all-gather
    plan = shard_graph(_cumsum_graph(tmp_path, with_row_split=False), 2)
    assert plan.weights == {} and plan.collectives == ()
    assert set(plan.layouts.values()) == {REPLICATED}
    assert plan.passes == 2


def _reshape_graph(tmp_path, second_input_split: bool):
    """Two Reshapes share the shape constant s = [2, 2, 8]: one of fc1's output h[2, 16],
    one of z: fc2's output (split like h) or a copy of the whole graph input x16."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Reshape", ["h", "s"], ["r1"], name="reshape1"),
        helper.make_node("MatMul", ["x", "w2"], ["z"], name="fc2"),
        helper.make_node("Reshape", ["z", "s"], ["r2"], name="reshape2"),
        helper.make_node("Sum", ["r1", "r2"], ["y"], name="sum"),
    ]
    inits = [init("w1", _ones(8, 16)), init("s", np.array([2, 2, 8], np.int64))]
    inits.append(init("w2", _ones(8, 16)))
    if not second_input_split:
        nodes[2] = helper.make_node("Identity", ["x16"], ["z"], name="copy")
    inputs = [vi("x", [2, 8]), vi("x16", [2, 16])]
    model = make_model(nodes, inputs, [vi("y", [2, 2, 8])], inits)
    return load(save(model, tmp_path / "reshape.onnx"), {})


def test_shared_shape_constant_rewritten_once_for_readers_that_agree(tmp_path):
    plan = shard_graph(_reshape_graph(tmp_path, second_input_split=True), 2)
    # [2, 16] split on 1 -> [2, 2, 8] split on 1 (16 = 2 x 8, n divides the leading 2)
    assert plan.layouts["r1"] == SPLIT1 and plan.layouts["r2"] == SPLIT1
    assert dict(plan.shape_inputs) == {"s": (2, 1, 8)}
    assert plan.collectives == (CollectiveOp("all_gather", "y", 1, 128, 4),)


def test_shared_shape_constant_with_a_whole_reader_is_not_rewritten(tmp_path):
    # reshape2 reads s whole: rewriting s for reshape1 would break it, so reshape1 runs
    # whole too, which leaves fc1's split useless: everything ends replicated
    plan = shard_graph(_reshape_graph(tmp_path, second_input_split=False), 2)
    assert plan.shape_inputs == {} and plan.collectives == () and plan.weights == {}


@pytest.mark.parametrize(
    "src,dst,axis,expected",
    [
        ((1, 8, 64), (1, 8, 4, 16), 2, 2),  # split the hidden dim into heads
        ((1, 8, 4, 16), (1, 8, 64), 2, 2),  # merge heads back
        ((1, 4, 8, 16), (1, 2, 2, 8, 16), 1, 1),  # group query heads by KV head
        ((1, 2, 2, 8, 16), (1, 4, 8, 16), 1, 1),  # and ungroup them
        ((1, 1, 64), (1, 1, 2, 32), 2, 2),
        ((1, 8, 4, 16), (1, 8, 64), 3, None),  # chunks of head_dim are strided in H*D
        ((1, 1, 32), (1, 1, 2, 16), 2, None),  # 2 KV heads cannot be split 4 ways (n = 4)
        ((6, 4), (24,), 0, 0),
        ((6, 4), (4, 6), 0, 0),  # one group: rank r's rows stay one contiguous block
        ((6, 4), (4, 6), 1, None),  # a column chunk is strided
        ((8, 1), (2, 4), 0, 0),  # trailing size-1 dim
    ],
)
def test_reshape_axis_by_hand(src, dst, axis, expected):
    degree = 4 if src == (1, 1, 32) else 2
    assert reshape_axis(src, dst, axis, degree) == expected


def test_layout_rejects_negative_axes_and_split_partials():
    with pytest.raises(ValueError):
        Layout(-1)
    with pytest.raises(ValueError):
        Layout(0, partial=True)
    assert Layout().is_whole and not PARTIAL.is_whole and SPLIT0.is_split
