"""Torch-free helpers: the parameter count, literal sinking and down-conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from examples._onnx_cleanup import convert_down, default_domain_opset, literals_to_constant_nodes
from examples._onnx_utils import float_initializer_elements, save_model


def _model(
    initializers: list[TensorProto], nodes: list, y_shape: list[str | int] | None = None
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape or ["batch", 4])],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_float_initializer_elements_counts_floats_only() -> None:
    initializers = [
        numpy_helper.from_array(np.zeros((3, 4), np.float32), "w32"),  # 12
        numpy_helper.from_array(np.zeros((5,), np.float16), "w16"),  # 5
        numpy_helper.from_array(np.zeros((7,), np.int64), "shape"),  # not a float: 0
    ]
    bf16 = TensorProto()  # weightless: only dims, as the Llama graphs declare them
    bf16.name, bf16.data_type = "wbf16", TensorProto.BFLOAT16
    bf16.dims.extend([2, 3])  # 6
    model = _model([*initializers, bf16], [])
    assert float_initializer_elements(model) == 12 + 5 + 6


def test_literals_become_constants_but_large_unknown_floats_stay(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4), "w")
    half = numpy_helper.from_array(np.array(0.5, np.float32), "val_0")
    bias = numpy_helper.from_array(np.full(4, 0.25, np.float32), "val_1")  # 4 elements
    big = numpy_helper.from_array(np.ones((17, 4), np.float32), "val_2")  # 68 > 16: stays
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Mul", ["h", "val_0"], ["m"]),
        helper.make_node("Add", ["m", "val_1"], ["a"]),
        helper.make_node("Identity", ["val_2"], ["big_sum_in"]),
        helper.make_node("ReduceSum", ["big_sum_in"], ["s"], keepdims=0),
        helper.make_node("Add", ["a", "s"], ["y"]),
    ]
    model = _model([weight, half, bias, big], nodes)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]

    literals_to_constant_nodes(model, {"w"})

    assert [t.name for t in model.graph.initializer] == ["w", "val_2"]
    assert [n.op_type for n in model.graph.node[:2]] == ["Constant", "Constant"]
    onnx.checker.check_model(model, full_check=True)
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(after, before)
    path = save_model(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx.data").exists()  # small: inline
    assert float_initializer_elements(onnx.load(path)) == 16 + 68


def test_convert_down_fixes_reduce_mean_attribute() -> None:
    # torchlib writes noop_with_empty_axes=0 explicitly; onnx's ReduceMean 18->17 adapter
    # keeps it although ReduceMean only has it from opset 18. convert_down drops it (0 is
    # the old behaviour).
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1, noop_with_empty_axes=0)
    ]
    model = convert_down(_model([axes], nodes, ["batch", 1]), 17, fallback_hint="n/a")
    assert default_domain_opset(model) == 17
    (node,) = model.graph.node
    assert sorted(a.name for a in node.attribute) == ["axes", "keepdims"]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    y = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x.mean(axis=1, keepdims=True))


def test_save_model_writes_external_data_when_asked(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path = save_model(model, tmp_path / "m.onnx", external_data=True)
    data = tmp_path / "m.onnx.data"
    assert data.stat().st_size == 4096 * 4
    assert onnx.load(path, load_external_data=False).graph.initializer[0].data_location == (
        TensorProto.EXTERNAL
    )
    onnx.checker.check_model(str(path), full_check=True)
    x = np.eye(64, dtype=np.float32)
    y = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, numpy_helper.to_array(weight))
