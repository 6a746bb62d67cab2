"""Shape inference leaves nothing in the working directory, types Dropout's mask,
hands onnxruntime weights it can read, and parameter totals agree with each other."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from passes.analysis import activation_liveness, node_costs
from passes.ir import build_graph
from passes.load import STRIP_ABOVE_BYTES, load
from passes.transforms.shapes import apply_shape_rules
from tests.modelgen import external_init, init, make_model, save, vi

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
DROPOUT_ZOO = ["bvlc_alexnet", "inception_v1", "squeezenet", "vgg19"]
USER_BYTES = b"the user's own model, not ours to overwrite"


def _light(name: str) -> Path:
    path = LIGHT / f"light_{name}.onnx"
    if not path.is_file():
        pytest.skip(f"onnx's light model {path.name} is not installed")
    return path


def _custom_op_model(tmp_path: Path) -> Path:
    """x -> com.microsoft::Gelu -> com.example::MyOp -> Relu: onnxruntime types the Gelu,
    then stops at the custom op (the case that made it save its debug copy)."""
    nodes = [
        helper.make_node("Gelu", ["x"], ["g"], domain="com.microsoft"),
        helper.make_node("MyOp", ["g"], ["h"], domain="com.example"),
        helper.make_node("Relu", ["h"], ["y"]),
    ]
    model = make_model(
        nodes,
        [vi("x", [2, 64])],
        [vi("y", [2, 64])],
        extra_opsets={"com.microsoft": 1, "com.example": 1},
    )
    return save(model, tmp_path / "custom.onnx")


# ---- 1. nothing written outside the outputs ---------------------------------------------


@pytest.mark.parametrize("which", ["custom_op", "squeezenet"])
def test_load_writes_nothing_to_cwd(which, tmp_path, monkeypatch):
    path = _custom_op_model(tmp_path) if which == "custom_op" else _light("squeezenet")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "sym_shape_infer_temp.onnx").write_bytes(USER_BYTES)
    monkeypatch.chdir(cwd)
    g = load(path)
    assert (cwd / "sym_shape_infer_temp.onnx").read_bytes() == USER_BYTES
    assert sorted(p.name for p in cwd.iterdir()) == ["sym_shape_infer_temp.onnx"]
    if which == "custom_op":
        # What onnxruntime found before the custom op is kept, not thrown away.
        assert g.tensors["g"].dtype == "float32" and g.tensors["g"].shape == (2, 64)
        assert g.tensors["h"].shape is None  # nothing can size a custom op's output


def test_shapes_found_before_onnxruntime_raises_are_kept(tmp_path):
    # Reshape to a shape of data-dependent length: onnxruntime asserts a literal rank
    # and raises, after it typed the Gelu (which onnx cannot).
    nodes = [
        helper.make_node("Gelu", ["x"], ["g"], domain="com.microsoft"),
        helper.make_node("NonZero", ["x"], ["nz"]),
        helper.make_node("Gather", ["nz", "zero"], ["s"], axis=0),
        helper.make_node("Reshape", ["g", "s"], ["y"]),
    ]
    model = make_model(
        nodes,
        [vi("x", [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [init("zero", np.array(0, np.int64))],
        extra_opsets={"com.microsoft": 1},
    )
    # No check: onnx.checker wants a shape on y, whose rank is data-dependent.
    g = load(save(model, tmp_path / "m.onnx"), check=False)
    assert g.tensors["g"].dtype == "float32" and g.tensors["g"].shape == (2, 8)
    assert g.tensors["y"].shape is None


# ---- 2. Dropout's mask -------------------------------------------------------------------


def _dropout_model(opset: int) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Dropout", ["a"], ["d", "mask"], name="drop"),
        helper.make_node("Relu", ["d"], ["y"], name="after"),
    ]
    return make_model(nodes, [vi("x", [4, 256])], [vi("y", [4, 256])], opset=opset)


@pytest.mark.parametrize("opset", [7, 9])
def test_dropout_mask_typed_below_opset_10(opset, tmp_path):
    g = load(save(_dropout_model(opset), tmp_path / "drop.onnx"))
    mask = g.tensors["mask"]
    # Schema 7: ``mask: T``, the input's type, and the input's shape.
    assert (mask.dtype, mask.shape) == ("float32", (4, 256))
    r = node_costs(g)
    assert r.num_unknown == 0
    assert r.nodes[1].bytes_written == 2 * 4 * 256 * 4  # output and mask
    live = activation_liveness(g)
    assert live.unknown_tensors == ()
    # During Dropout's step: its input a, its output d and the mask, 4 KB each.
    assert live.peak_bytes == 3 * 4 * 256 * 4


def test_dropout_mask_rule_is_bool_from_opset_10():
    model = _dropout_model(13)
    known = {"a": vi("a", [4, 256])}
    assert apply_shape_rules(model, known) == 1
    mask = known["mask"].type.tensor_type
    assert mask.elem_type == TensorProto.BOOL
    assert [d.dim_value for d in mask.shape.dim] == [4, 256]


def test_unread_untyped_output_carries_no_weight():
    # No inference at all: the mask is untyped, nothing reads it, it is not an output.
    model = _dropout_model(9)
    model.graph.value_info.extend([vi("a", [4, 256]), vi("d", [4, 256])])
    g = build_graph(model)
    assert g.tensors["mask"].elem_type == 0
    r = node_costs(g)
    assert r.nodes[1].known, r.nodes[1].reason
    assert r.num_unknown == 0 and r.nodes[1].bytes_written == 4 * 256 * 4


def test_dropout_mask_does_not_stop_onnxruntime(tmp_path):
    # An unread opset-9 mask made onnxruntime stop before the contrib op that needs it.
    nodes = [
        helper.make_node("Dropout", ["x"], ["d", "mask"]),
        helper.make_node("Gelu", ["d"], ["g"], domain="com.microsoft"),
        helper.make_node("Relu", ["g"], ["y"]),
    ]
    model = make_model(
        nodes, [vi("x", [2, 8])], [vi("y", [2, 8])], opset=9, extra_opsets={"com.microsoft": 1}
    )
    g = load(save(model, tmp_path / "m.onnx"))
    assert g.tensors["g"].shape == (2, 8) and g.tensors["mask"].shape == (2, 8)


@pytest.mark.parametrize("name", DROPOUT_ZOO)
def test_zoo_models_with_dropout_fully_known(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    g = load(_light(name))
    assert [t.name for t in g.iter_tensors() if not (t.is_static and t.elem_type)] == []
    assert node_costs(g).unknown == {}
    assert activation_liveness(g).unknown_tensors == ()
    assert list(tmp_path.iterdir()) == []


# ---- 3. weights stripped at load, handed to onnxruntime ---------------------------------


@pytest.mark.parametrize("storage", ["stripped", "external"])
def test_weights_outside_the_proto_do_not_break_onnxruntime(storage, tmp_path, monkeypatch):
    # Add reads the weight's values in onnxruntime's symbolic inference; the Gelu is
    # a contrib op only onnxruntime types.
    shape = (64, 128)
    if storage == "stripped":
        w = init("w", np.ones(shape, np.float32))
        assert w.ByteSize() > STRIP_ABOVE_BYTES
    else:
        w = external_init("w", shape, TensorProto.FLOAT, location="missing.bin")
    nodes = [
        helper.make_node("Add", ["x", "w"], ["h"]),
        helper.make_node("Gelu", ["h"], ["g"], domain="com.microsoft"),
        helper.make_node("Relu", ["g"], ["y"]),
    ]
    model = make_model(
        nodes, [vi("x", shape)], [vi("y", shape)], [w], extra_opsets={"com.microsoft": 1}
    )
    monkeypatch.chdir(tmp_path)
    g = load(save(model, tmp_path / "m.onnx"))
    assert g.tensors["g"].dtype == "float32" and g.tensors["g"].shape == shape
    assert g.tensors["w"].kind == "initializer" and "w" not in g.inputs
    # The Gelu itself has no cost rule (a contrib op); what follows it is now sized.
    assert node_costs(g).unknown == {"com.microsoft::Gelu": ("Gelu_1",)}


# ---- 4. parameter count and parameter bytes from the same tensors -----------------------


@pytest.mark.parametrize("view", ["Reshape", "Unsqueeze"])
def test_weight_read_through_folded_view_is_counted(view, tmp_path):
    # ConstantOfShape builds a 4096-element weight; only its folded view is resident.
    if view == "Reshape":
        target, dims, x_dims = "target", [64, 64], [2, 64]
        extra = init("target", np.array([64, 64], np.int64))
        use = helper.make_node("MatMul", ["x", "w"], ["y"])
    else:
        target, dims, x_dims = "axes", [4096, 1], [4096, 3]
        extra = init("axes", np.array([1], np.int64))
        use = helper.make_node("Mul", ["x", "w"], ["y"])
    nodes = [
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["flat"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5]),
        ),
        helper.make_node(view, ["flat", target], ["w"]),
        use,
    ]
    y_dims = [2, 64] if view == "Reshape" else x_dims
    model = make_model(
        nodes,
        [vi("x", x_dims)],
        [vi("y", y_dims)],
        [init("shape", np.array([4096], np.int64)), extra],
    )
    g = load(save(model, tmp_path / "m.onnx"))
    assert g.nodes[0].folded and g.nodes[1].folded
    assert g.tensors["w"].shape == tuple(dims)
    r = node_costs(g)
    assert r.constant_bytes == 0
    assert r.param_count == 4096
    assert r.param_count * 4 == r.param_bytes


def _float_weight_elements(model: onnx.ModelProto) -> int:
    """Float initializers that nodes read, plus float ConstantOfShape results, by hand."""
    inits = {t.name: t for t in model.graph.initializer}
    read = {i for n in model.graph.node for i in n.input}
    total = sum(
        math.prod(t.dims)
        for t in inits.values()
        if t.name in read and helper.tensor_dtype_to_np_dtype(t.data_type).kind == "f"
    )
    for n in model.graph.node:
        if n.op_type != "ConstantOfShape":
            continue
        value = next((a.t for a in n.attribute if a.name == "value"), None)
        dtype = value.data_type if value is not None else TensorProto.FLOAT
        if helper.tensor_dtype_to_np_dtype(dtype).kind == "f":
            total += math.prod(numpy_helper.to_array(inits[n.input[0]]).tolist())
    return total


def test_inception_v1_classifier_counted(tmp_path, monkeypatch):
    path = _light("inception_v1")
    monkeypatch.chdir(tmp_path)
    r = node_costs(load(path))
    expected = _float_weight_elements(onnx.load(path))
    assert expected == 6_998_552  # 5,974,552 plus the 1000x1024 classifier
    assert r.param_count == expected
    assert r.param_count * 4 == r.param_bytes - r.constant_bytes
