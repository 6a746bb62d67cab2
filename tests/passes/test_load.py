"""Loading: bad input gives one-line errors; dims, shapes, folding and external data."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from passes.errors import DimError, ExternalDataError, ModelError
from passes.load import load, read_model, require_external_data
from passes.transforms.dims import parse_dim_overrides
from tests.modelgen import external_init, init, make_model, save, vi


def _mlp(tmp_path, weights_external: bool = False):
    w1 = (
        external_init("w1", [8, 16], TensorProto.FLOAT)
        if weights_external
        else init("w1", np.ones((8, 16), np.float32))
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["a"]),  # unnamed: display name Relu_1
        helper.make_node("MatMul", ["a", "w2"], ["y"], name="fc2"),
    ]
    model = make_model(
        nodes,
        [vi("x", ["batch", 8])],
        [vi("y", ["batch", 4])],
        [w1, init("w2", np.ones((16, 4), np.float32))],
    )
    return save(model, tmp_path / "mlp.onnx")


def test_loads_with_dims_and_keeps_original_indices(tmp_path):
    g = load(_mlp(tmp_path), {"batch": 3})
    assert [n.index for n in g.nodes] == [0, 1, 2]
    assert [n.name for n in g.nodes] == ["fc1", "Relu_1", "fc2"]
    assert g.tensors["h"].shape == (3, 16)
    assert g.tensors["y"].shape == (3, 4)
    assert g.tensors["w1"].kind == "initializer"
    assert g.tensors["h"].kind == "activation"
    assert g.dims == {"batch": 3}
    assert g.sha256 and len(g.sha256) == 64


def test_duplicate_node_names_get_stable_unique_display_names(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="act"),
        helper.make_node("Relu", ["a"], ["b"], name="act"),
    ]
    path = save(make_model(nodes, [vi("x", [2])], [vi("b", [2])]), tmp_path / "dup.onnx")
    assert [n.name for n in load(path).nodes] == ["act#0", "act#1"]


def test_missing_file():
    with pytest.raises(ModelError, match="does not exist"):
        load("/nonexistent/model.onnx")


def test_random_bytes_are_not_onnx(tmp_path):
    p = tmp_path / "random.onnx"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelError) as err:
        read_model(p)
    assert "\n" not in str(err.value)


def test_truncated_protobuf(tmp_path):
    full = _mlp(tmp_path).read_bytes()
    p = tmp_path / "truncated.onnx"
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(ModelError, match="truncated"):
        read_model(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        load(p)


def test_model_failing_checker(tmp_path):
    # Node consumes a tensor nobody produces.
    nodes = [helper.make_node("Relu", ["nope"], ["y"])]
    path = save(make_model(nodes, [vi("x", [2])], [vi("y", [2])]), tmp_path / "bad.onnx")
    with pytest.raises(ModelError, match="onnx.checker"):
        load(path)


@pytest.mark.parametrize("spec", ["batch", "batch=", "=3", "batch=x", "batch=1.5"])
def test_malformed_dim(spec):
    with pytest.raises(DimError, match="malformed"):
        parse_dim_overrides([spec])


def test_non_positive_and_repeated_dims():
    with pytest.raises(DimError, match="positive"):
        parse_dim_overrides(["batch=0"])
    with pytest.raises(DimError, match="twice"):
        parse_dim_overrides(["batch=1", "batch=2"])
    assert parse_dim_overrides(["batch = 2", "seq=128"]) == {"batch": 2, "seq": 128}


def test_unresolved_dims_listed_by_name(tmp_path):
    nodes = [helper.make_node("Add", ["x", "z"], ["y"])]
    model = make_model(
        nodes, [vi("x", ["batch", "seq"]), vi("z", ["batch", "seq"])], [vi("y", ["batch", "seq"])]
    )
    path = save(model, tmp_path / "m.onnx")
    with pytest.raises(DimError) as err:
        load(path)
    assert "batch" in str(err.value) and "seq" in str(err.value)
    with pytest.raises(DimError, match="seq"):
        load(path, {"batch": 1})


def test_unknown_dim_name_suggests_close_match(tmp_path):
    with pytest.raises(DimError, match="did you mean 'batch'"):
        load(_mlp(tmp_path), {"bacth": 1})


def test_external_data_never_loaded_for_planning(tmp_path):
    path = _mlp(tmp_path, weights_external=True)
    assert not (tmp_path / "weights.bin").exists()
    g = load(path, {"batch": 2})
    assert g.tensors["w1"].external
    assert g.tensors["w1"].nbytes == 8 * 16 * 4
    with pytest.raises(ExternalDataError, match="weights.bin"):
        require_external_data(g)
    (tmp_path / "weights.bin").write_bytes(b"\0" * 10)
    with pytest.raises(ExternalDataError, match="too short"):
        require_external_data(g)
    (tmp_path / "weights.bin").write_bytes(b"\0" * (8 * 16 * 4))
    require_external_data(g)


def test_shape_arithmetic_and_constants_are_folded(tmp_path):
    # mask = Trilu(ConstantOfShape([seq, seq])) with seq read by Shape/Gather: all constant
    # once seq is fixed; w = Cast(Constant fp16) is a parameter computed from a constant.
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "one"], ["seqlen"], axis=0),
        helper.make_node("Unsqueeze", ["seqlen", "zero"], ["seq1"]),
        helper.make_node("Concat", ["seq1", "seq1"], ["ss"], axis=0),
        helper.make_node(
            "ConstantOfShape",
            ["ss"],
            ["ones"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]),
        ),
        helper.make_node("Trilu", ["ones"], ["mask"], upper=0),
        helper.make_node(
            "Constant",
            [],
            ["w16"],
            value=helper.make_tensor(
                "w", TensorProto.FLOAT16, [8, 8], np.ones(64, np.float16).view(np.uint16).tolist()
            ),
        ),
        helper.make_node("Cast", ["w16"], ["w"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x", "w"], ["y"]),
        helper.make_node("MatMul", ["mask", "y"], ["z"]),
    ]
    inits = [init("one", np.array(1, np.int64)), init("zero", np.array([0], np.int64))]
    model = make_model(nodes, [vi("x", ["batch", "seq", 8])], [vi("z", ["batch", "seq", 8])], inits)
    g = load(save(model, tmp_path / "fold.onnx"), {"batch": 2, "seq": 4})
    assert [n.folded for n in g.nodes] == [True] * 8 + [False, False]
    assert g.tensors["mask"].kind == "constant" and g.tensors["mask"].shape == (4, 4)
    assert g.tensors["w"].kind == "constant"
    assert g.tensors["z"].shape == (2, 4, 8)


def test_custom_domain_op_does_not_stop_loading(tmp_path):
    nodes = [
        helper.make_node("MyOp", ["x"], ["h"], domain="com.example"),
        helper.make_node("Relu", ["h"], ["y"]),
    ]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])], extra_opsets={"com.example": 1})
    g = load(save(model, tmp_path / "custom.onnx"))
    assert g.nodes[0].domain == "com.example"
    assert not g.tensors["h"].is_static  # nobody can infer a custom op's shape
    onnx.checker.check_model(model)  # the model itself is valid
