"""Stored weights: a folded DequantizeLinear of an initializer stays quantised in the
graphs a deployment runs (`passes.analysis.stored_weights`, `passes.transforms.rank_params`)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from examples import llama
from passes.analysis.costs import node_costs
from passes.analysis.partition_io import partition_io
from passes.analysis.sharding import shard_graph
from passes.analysis.stored_weights import eager_dequantise, stored_inputs, stored_weights
from passes.load import load
from passes.transforms.rank_params import declared_split, stored_initializers
from passes.transforms.tensor_parallel import rank_graph

FLOAT8 = TensorProto.FLOAT8E4M3FN


def _fp8_tiny(tmp_path):
    path = llama.build(tmp_path / "t8.onnx", "tiny", kind="decode", opset=21, quant="fp8")
    return load(path, dims={"batch": 1, "past": 15})


def test_every_fp8_projection_is_a_stored_weight_with_a_per_tensor_scale(tmp_path):
    graph = _fp8_tiny(tmp_path)
    params = [t.name for t in graph.iter_tensors() if t.is_param]
    stored = stored_weights(graph, params)
    # 7 projections in each of the tiny model's 2 layers; nothing else is quantised
    assert len(stored) == 14
    for w in stored.values():
        assert graph.nodes[w.node].op_type == "DequantizeLinear"
        assert graph.tensors[w.inputs[0]].elem_type == FLOAT8
        assert w.scale_axis is None
    assert len(stored_inputs(graph, params)) == len({i for w in stored.values() for i in w.inputs})


def test_a_rank_graph_holds_half_of_each_split_fp8_weight_and_dequantises_it(tmp_path):
    graph = _fp8_tiny(tmp_path)
    sharding = shard_graph(graph, 2)
    model = rank_graph(graph, sharding, 1)
    io = partition_io(graph, [i for i in range(graph.num_nodes) if not graph.nodes[i].folded])
    stored = stored_weights(graph, io.params)
    inits = {t.name: t for t in model.graph.initializer}
    assert not set(stored) & set(inits)  # no dequantised copy of any weight
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    assert set(stored) <= dq_outputs
    split = [w for name, w in stored.items() if name in sharding.weights]
    assert split  # tensor parallelism cuts the projections
    for w in split:
        data = inits[w.inputs[0]]
        assert data.data_type == FLOAT8
        whole = graph.tensors[w.inputs[0]].shape
        assert int(np.prod(data.dims)) * 2 == int(np.prod(whole))
        source, cut = declared_split(data)
        assert source == w.inputs[0] and cut == (sharding.weights[w.tensor], 1, 2)
        assert declared_split(inits[w.inputs[1]])[1] is None  # a per-tensor scale stays whole


def _per_axis_model(path):
    """y = x @ DequantizeLinear(w_q, scale, axis=1): one scale per output column."""
    rng = np.random.default_rng(0)
    w = rng.integers(-100, 100, (8, 4)).astype(np.int8)
    scale = np.array([0.5, 0.25, 2.0, 1.0], np.float32)
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "scale"], ["w"], axis=1),
        helper.make_node("MatMul", ["x", "w"], ["y"]),
    ]
    inits = [numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(scale, "scale")]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], inits,
    )  # fmt: skip
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]), path)
    return w, scale


def test_a_per_axis_scale_is_cut_only_along_its_own_axis(tmp_path):
    w, scale = _per_axis_model(tmp_path / "m.onnx")
    graph = load(tmp_path / "m.onnx")
    weight = stored_weights(graph, ["w"])["w"]
    assert weight.scale_axis == 1 and weight.inputs == ("w_q", "scale")
    values = {"w_q": w, "scale": scale}
    by_columns = stored_initializers(graph, weight, 1, 1, 2, values.__getitem__)
    got = {t.name: numpy_helper.to_array(t) for t in by_columns}
    np.testing.assert_array_equal(got["w_q"], w[:, 2:])
    np.testing.assert_array_equal(got["scale"], scale[2:])  # the rank's columns' scales
    by_rows = stored_initializers(graph, weight, 0, 1, 2, values.__getitem__)
    got = {t.name: numpy_helper.to_array(t) for t in by_rows}
    np.testing.assert_array_equal(got["w_q"], w[4:])
    np.testing.assert_array_equal(got["scale"], scale)  # every row needs every column's scale
    declared = {
        t.name: declared_split(t) for t in stored_initializers(graph, weight, 1, 0, 2, None)
    }
    assert declared == {"w_q": ("w_q", (1, 0, 2)), "scale": ("scale", (0, 0, 2))}


def test_an_eager_runtime_dequantises_each_stored_weight_every_step(tmp_path):
    """By hand: y[2,4] = x[2,8] float32 @ DequantizeLinear(w_q int8 [8,4], scale [4]).
    Stored, the MatMul reads x 64 B + w_q 32 B and writes y 32 B. Eager, a DequantizeLinear
    kernel reads w_q 32 B + scale 16 B and writes w 128 B, and the MatMul reads w wide:
    read 64 + 128 + 48 = 240 B, written 32 + 128 = 160 B, two kernels."""
    _per_axis_model(tmp_path / "m.onnx")
    graph = load(tmp_path / "m.onnx")
    costs = node_costs(graph)
    matmul = next(n.index for n in graph.nodes if n.op_type == "MatMul")
    stored = costs.nodes[matmul]
    assert (stored.bytes_read, stored.bytes_written, stored.kernels) == (96, 32, 1)
    eager = eager_dequantise(graph, costs).nodes[matmul]
    assert (eager.bytes_read, eager.bytes_written, eager.kernels) == (240, 160, 2)
    assert eager.flops > stored.flops  # the DequantizeLinear's, on its reader
    assert eager_dequantise(graph, costs).total_flops == costs.total_flops  # the model's
    plain = load(_plain_model(tmp_path / "plain.onnx"))
    assert eager_dequantise(plain, node_costs(plain)) == node_costs(plain)  # nothing stored


def _plain_model(path):
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(np.ones((8, 4), np.float32), "w")],
    )  # fmt: skip
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]), path)
    return path
