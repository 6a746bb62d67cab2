"""The runner: attribute defaults, freeing, sub-graphs with outer scope, errors, dtypes."""

from __future__ import annotations

import math
import weakref

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from partitioner.executor.attributes import node_attributes
from partitioner.executor.errors import (
    FeedError,
    KernelError,
    MissingValueError,
    UnsupportedOpError,
)
from partitioner.executor.kernels.elementwise import erf
from partitioner.executor.registry import kernel
from partitioner.executor.runtime import missing_kernels, prepare_model, run_model, run_nodes
from targets.errors import PartitionError
from tests.partitioner.executor.helpers import run_ort, single_node_model


def _f32(*shape: int) -> np.ndarray:
    return np.arange(math.prod(shape), dtype=np.float32).reshape(shape)


def test_schema_defaults_fill_missing_attributes() -> None:
    node = helper.make_node("Gemm", ["a", "b"], ["y"], transB=1)
    assert node_attributes(node, 17) == {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}


def test_run_nodes_keeps_only_requested_and_leaves_input_untouched() -> None:
    nodes = [
        helper.make_node("Add", ["x", "x"], ["two_x"]),
        helper.make_node("Mul", ["two_x", "x"], ["y"]),
        helper.make_node("Neg", ["x"], ["unused"]),
    ]
    values = {"x": np.array([1.0, 2.0], np.float32)}
    env = run_nodes(nodes, values, {"": 17}, keep={"y"})
    assert set(env) == {"y"}
    np.testing.assert_array_equal(env["y"], [2.0, 8.0])  # (x + x) * x
    assert set(values) == {"x"}
    full = run_nodes(nodes, values, 17)
    assert set(full) == {"x", "two_x", "y", "unused"}


def test_missing_kernels_lists_every_node_before_running() -> None:
    then_graph = helper.make_graph(
        [helper.make_node("NoSuchOp", [], ["t"], name="inner")],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [])],
    )
    nodes = [
        helper.make_node("Add", ["x", "x"], ["y"], name="ok"),
        helper.make_node("FancyOp", ["y"], ["z"], name="fancy"),
        helper.make_node(
            "If", ["c"], ["w"], name="branch", then_branch=then_graph, else_branch=then_graph
        ),
        helper.make_node("Custom", ["z"], ["v"], domain="com.example", name="custom"),
    ]
    assert missing_kernels(nodes, {"": 18, "com.example": 1}) == [
        ("fancy", "FancyOp"),
        ("branch/inner", "NoSuchOp"),
        ("branch/inner", "NoSuchOp"),
        ("custom", "com.example::Custom"),
    ]
    with pytest.raises(UnsupportedOpError) as info:
        run_nodes(nodes, {"x": np.ones(2, np.float32)}, {"": 18, "com.example": 1})
    assert isinstance(info.value, PartitionError)
    assert "\n" not in str(info.value) and "FancyOp" in str(info.value)


def test_opset_too_old_for_any_kernel_is_unsupported() -> None:
    # Add's first broadcasting version is 7; opset 6 Add has legacy attributes.
    assert missing_kernels([helper.make_node("Add", ["a", "b"], ["c"])], 6) == [("<Add #0>", "Add")]


def test_kernel_failure_names_node_op_and_shapes() -> None:
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="bad_reshape")]
    values = {"x": _f32(2, 3), "shape": np.array([4, 2], np.int64)}
    with pytest.raises(KernelError) as info:
        run_nodes(nodes, values, 17)
    message = str(info.value)
    assert "bad_reshape" in message and "Reshape" in message and "float32[2,3]" in message
    assert not isinstance(info.value, PartitionError)  # a kernel failure is a bug, not input
    assert isinstance(info.value.__cause__, ValueError)


def test_missing_value_is_user_error() -> None:
    nodes = [helper.make_node("Relu6", ["x"], ["y"])]  # irrelevant op: the check comes first
    with pytest.raises(UnsupportedOpError):
        run_nodes(nodes, {}, 17)
    nodes = [helper.make_node("Neg", ["ghost"], ["y"], name="n")]
    with pytest.raises(MissingValueError, match="ghost"):
        run_nodes(nodes, {}, 17)


def _add_model() -> onnx.ModelProto:
    return single_node_model(
        "Add", {"a": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}, ["y"]
    )


@pytest.mark.parametrize(
    ("feeds", "fragment"),
    [
        ({"a": np.zeros((2, 3), np.float32)}, "'b' is not fed"),
        ({"a": np.zeros((2, 3), np.float64), "b": np.zeros(3, np.float32)}, "dtype float32"),
        ({"a": np.zeros((3, 3), np.float32), "b": np.zeros(3, np.float32)}, "shape [2,3]"),
        ({"a": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32), "c": 1}, "'c'"),
    ],
)
def test_bad_feeds_are_feed_errors(feeds: dict, fragment: str) -> None:
    with pytest.raises(FeedError, match=fragment.replace("[", r"\[")):
        run_model(_add_model(), feeds)


def test_external_data_not_loaded_is_reported(tmp_path) -> None:  # noqa: ANN001
    weight = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, path, save_as_external_data=True, size_threshold=0)
    lazy = onnx.load(path, load_external_data=False)
    with pytest.raises(PartitionError, match="external"):
        run_model(lazy, {"x": np.ones((1, 64), np.float32)})
    loaded = onnx.load(path)
    (y,) = run_model(loaded, {"x": np.ones((1, 64), np.float32)}).values()
    assert y[0, 0] == 64.0  # sum of 64 ones


def _control_flow_model() -> onnx.ModelProto:
    """If reading an outer value, and a Loop that accumulates it and scans its steps."""
    f = TensorProto.FLOAT
    then_g = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["t"])],  # x, scale: outer scope
        "then",
        [],
        [helper.make_tensor_value_info("t", f, [3])],
    )
    else_g = helper.make_graph(
        [helper.make_node("Sub", ["x", "scale"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", f, [3])],
    )
    body = helper.make_graph(
        [
            helper.make_node("Add", ["acc_in", "branch_out"], ["acc_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Cast", ["i"], ["i_f"], to=f),
            helper.make_node("Mul", ["acc_out", "i_f"], ["scanned"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", f, [3]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", f, [3]),
            helper.make_tensor_value_info("scanned", f, [3]),
        ],
    )
    nodes = [
        helper.make_node("Mul", ["x0", "x0"], ["x"]),  # x is read only inside sub-graphs
        helper.make_node("If", ["flag"], ["branch_out"], then_branch=then_g, else_branch=else_g),
        helper.make_node("Loop", ["trips", "", "acc0"], ["acc", "steps"], body=body),
    ]
    graph = helper.make_graph(
        nodes,
        "control",
        [
            helper.make_tensor_value_info("x0", f, [3]),
            helper.make_tensor_value_info("scale", f, []),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
            helper.make_tensor_value_info("trips", TensorProto.INT64, []),
            helper.make_tensor_value_info("acc0", f, [3]),
        ],
        [
            helper.make_tensor_value_info("acc", f, [3]),
            helper.make_tensor_value_info("steps", f, [None, 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


@pytest.mark.parametrize("flag", [True, False])
def test_if_and_loop_with_outer_scope_match_ort(flag: bool) -> None:
    feeds = {
        "x0": np.array([1.0, 2.0, 3.0], np.float32),
        "scale": np.array(2.0, np.float32),
        "flag": np.array(flag),
        "trips": np.array(3, np.int64),
        "acc0": np.zeros(3, np.float32),
    }
    model = _control_flow_model()
    ours = list(run_model(model, feeds).values())
    for mine, ref in zip(ours, run_ort(model, feeds), strict=True):
        np.testing.assert_array_equal(mine, ref)
    # flag: branch = x*scale = [2, 8, 18]; three trips accumulate 3 * branch.
    branch = np.array([2.0, 8.0, 18.0]) if flag else np.array([-1.0, 2.0, 7.0])
    np.testing.assert_array_equal(ours[0], 3 * branch)
    assert ours[1].shape == (3, 3)


def test_loop_zero_trips_gives_empty_scan_output() -> None:
    feeds = {
        "x0": np.ones(3, np.float32),
        "scale": np.array(1.0, np.float32),
        "flag": np.array(True),
        "trips": np.array(0, np.int64),
        "acc0": np.full(3, 5.0, np.float32),
    }
    acc, steps = run_model(_control_flow_model(), feeds).values()
    np.testing.assert_array_equal(acc, [5.0, 5.0, 5.0])
    assert steps.shape == (0, 3) and steps.dtype == np.float32


def test_scan_running_sum_matches_ort() -> None:
    f = TensorProto.FLOAT
    body = helper.make_graph(
        [
            helper.make_node("Add", ["s_in", "x_t"], ["s_out"]),
            helper.make_node("Identity", ["s_out"], ["y_t"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("s_in", f, [2]),
            helper.make_tensor_value_info("x_t", f, [2]),
        ],
        [
            helper.make_tensor_value_info("s_out", f, [2]),
            helper.make_tensor_value_info("y_t", f, [2]),
        ],
    )
    graph = helper.make_graph(
        [
            helper.make_node(
                "Scan",
                ["init", "xs"],
                ["final", "ys"],
                body=body,
                num_scan_inputs=1,
                scan_input_directions=[1],
            )
        ],
        "scan",
        [
            helper.make_tensor_value_info("init", f, [2]),
            helper.make_tensor_value_info("xs", f, [4, 2]),
        ],
        [
            helper.make_tensor_value_info("final", f, [2]),
            helper.make_tensor_value_info("ys", f, [4, 2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    feeds = {"init": np.zeros(2, np.float32), "xs": _f32(4, 2)}
    ours = list(run_model(model, feeds).values())
    for mine, ref in zip(ours, run_ort(model, feeds), strict=True):
        np.testing.assert_array_equal(mine, ref)
    # Reversed scan: the first step sees row 3 = [6, 7]; the total is [12, 16].
    np.testing.assert_array_equal(ours[1][0], [6.0, 7.0])
    np.testing.assert_array_equal(ours[0], [12.0, 16.0])


def test_bfloat16_round_trip_through_cast_add_matmul() -> None:
    bf16 = np.dtype(ml_dtypes.bfloat16)
    nodes = [
        helper.make_node("Cast", ["x"], ["xb"], to=TensorProto.BFLOAT16),
        helper.make_node("Add", ["xb", "xb"], ["doubled"]),
        helper.make_node("MatMul", ["doubled", "w"], ["prod"]),
        helper.make_node("Cast", ["prod"], ["y"], to=TensorProto.FLOAT),
    ]
    # 1 + 2^-9 is not a bfloat16 (8 significant bits): it rounds to 1.0.
    x = np.array([[1.0 + 2.0**-9, 3.0]], np.float32)
    w = np.array([[1.0], [0.5]], dtype=bf16)
    env = run_nodes(nodes, {"x": x, "w": w}, 18)
    assert env["xb"].dtype == bf16 and env["doubled"].dtype == bf16 and env["prod"].dtype == bf16
    np.testing.assert_array_equal(env["xb"].astype(np.float32), [[1.0, 3.0]])
    # doubled = [2, 6]; prod = 2*1 + 6*0.5 = 5.
    assert env["y"].dtype == np.float32 and env["y"][0, 0] == 5.0


def test_float16_stays_float16() -> None:
    nodes = [
        helper.make_node("MatMul", ["a", "a"], ["m"]),
        helper.make_node("ReduceSum", ["m"], ["s"], keepdims=0),
        helper.make_node("Sqrt", ["s"], ["r"]),
    ]
    a = np.full((4, 4), 0.5, np.float16)
    env = run_nodes(nodes, {"a": a}, 13)
    assert {v.dtype for v in env.values()} == {np.dtype(np.float16)}
    assert env["r"] == np.float16(4.0)  # m = 4 * 0.25 = 1 everywhere, s = 16, sqrt = 4


def test_erf_matches_math_erf() -> None:
    points = np.concatenate([np.linspace(-7, 7, 2001), [1e-300, -1e-8, 0.0, 5.999, 6.0]])
    expected = np.array([math.erf(v) for v in points])
    np.testing.assert_allclose(erf(points), expected, rtol=1e-13, atol=0)
    assert np.isnan(erf(np.array([np.nan])))[0]


def test_prepared_model_runs_twice_and_protects_initializers() -> None:
    weight = numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["w"], ["w_out"]),
            helper.make_node("Div", ["x", "zero"], ["ratio"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [
            helper.make_tensor_value_info("w_out", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("ratio", TensorProto.FLOAT, [2]),
        ],
        initializer=[weight, numpy_helper.from_array(np.zeros(2, np.float32), "zero")],
    )
    prepared = prepare_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    first = prepared.run({"x": np.array([1.0, -1.0], np.float32)})
    with pytest.raises(ValueError, match="read-only"):
        first["w_out"][0] = 5.0  # a view of the initializer must not be writable
    second = prepared.run({"x": np.array([0.0, 1.0], np.float32)})
    np.testing.assert_array_equal(second["w_out"], [1.0, 2.0])
    # IEEE division by zero: 0/0 = nan, 1/0 = inf (and no warning is raised).
    assert np.isnan(second["ratio"][0]) and second["ratio"][1] == np.inf


_PROBES: list[weakref.ref] = []


@kernel("RecordInput", domain="test.executor")
def _record_input(x: np.ndarray) -> tuple[np.ndarray]:
    _PROBES.append(weakref.ref(x))
    return (np.array(1.0, np.float32),)


@kernel("RecordedIsAlive", domain="test.executor")
def _recorded_is_alive(_: np.ndarray) -> tuple[np.ndarray]:
    return (np.array(_PROBES[-1]() is not None),)


@pytest.mark.parametrize(("keep", "alive"), [({"alive"}, False), (None, True)])
def test_values_are_freed_after_last_use(keep: set[str] | None, alive: bool) -> None:
    nodes = [
        helper.make_node("Neg", ["x"], ["big"]),
        helper.make_node("RecordInput", ["big"], ["token"], domain="test.executor"),
        helper.make_node("RecordedIsAlive", ["token"], ["alive"], domain="test.executor"),
    ]
    env = run_nodes(
        nodes, {"x": np.ones(1000, np.float32)}, {"": 17, "test.executor": 1}, keep=keep
    )
    # With `keep`, "big" is dropped right after its last reader (RecordInput).
    assert bool(env["alive"]) is alive
