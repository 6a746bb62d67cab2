"""Tricky kernels checked against onnxruntime on one-node models (and by hand where shown)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from tests.partitioner.executor.helpers import assert_matches_ort, run_ours, single_node_model

RNG = np.random.default_rng(0)
INT64_MAX = np.iinfo(np.int64).max


def test_gather_negative_indices() -> None:
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    indices = np.array([[-1, 0], [-3, 2]], dtype=np.int64)
    model = single_node_model("Gather", {"data": data, "indices": indices}, ["y"], axis=1)
    (y,) = assert_matches_ort(model, {"data": data, "indices": indices})
    # Row 0 of the result is data[:, [[-1, 0], [-3, 2]]][0] = [[3, 0], [1, 2]].
    np.testing.assert_array_equal(y[0], [[3, 0], [1, 2]])


def test_gather_elements_bert_position_ids() -> None:
    # BERT keeps position ids in a [1, 512] buffer and gathers a [1, seq] corner:
    # indices may be smaller than data on the non-gathered axes.
    data = np.arange(2 * 512, dtype=np.int64).reshape(2, 512)
    indices = np.array([[5, 0, 511, -1, 7, 7, 3]], dtype=np.int64)
    model = single_node_model("GatherElements", {"data": data, "indices": indices}, ["y"], axis=1)
    (y,) = assert_matches_ort(model, {"data": data, "indices": indices})
    np.testing.assert_array_equal(y, [[5, 0, 511, 511, 7, 7, 3]])


def test_gather_elements_indices_smaller_on_gathered_rows() -> None:
    # Indices shorter than data on axis 0: out[i][j] = data[i][idx[i][j]] for i < 2.
    data = np.arange(12, dtype=np.float32).reshape(4, 3)
    indices = np.array([[2, 0], [1, 1]], dtype=np.int64)
    model = single_node_model("GatherElements", {"data": data, "indices": indices}, ["y"], axis=1)
    (y,) = assert_matches_ort(model, {"data": data, "indices": indices})
    np.testing.assert_array_equal(y, [[2, 0], [4, 4]])


@pytest.mark.parametrize(
    ("starts", "ends", "axes", "steps"),
    [
        ([-1], [-INT64_MAX], [1], [-1]),  # whole axis reversed
        ([0, 1], [INT64_MAX, -1], [0, 1], [2, 1]),
        ([10], [-10], [0], [-3]),  # start clamps to dim-1, end to "before 0"
        ([-100], [100], [-1], [1]),
        ([3], [1], [1], [1]),  # empty
        ([2], [0], [1], [-1]),  # end 0 excluded
    ],
)
def test_slice_negative_steps_and_int_max(
    starts: list[int], ends: list[int], axes: list[int], steps: list[int]
) -> None:
    x = np.arange(5 * 6, dtype=np.float32).reshape(5, 6)
    consts = {
        "starts": np.array(starts, np.int64),
        "ends": np.array(ends, np.int64),
        "axes": np.array(axes, np.int64),
        "steps": np.array(steps, np.int64),
    }
    model = single_node_model("Slice", {"x": x}, ["y"], initializers=consts)
    assert_matches_ort(model, {"x": x})


def test_slice_reverse_by_hand() -> None:
    x = np.arange(4, dtype=np.int64)
    consts = {
        "starts": np.array([-1], np.int64),
        "ends": np.array([-INT64_MAX], np.int64),
        "axes": np.array([0], np.int64),
        "steps": np.array([-1], np.int64),
    }
    model = single_node_model("Slice", {"x": x}, ["y"], initializers=consts)
    np.testing.assert_array_equal(run_ours(model, {"x": x})[0], [3, 2, 1, 0])


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceSumSquare", "ReduceMax", "ReduceLogSum"])
@pytest.mark.parametrize("noop", [0, 1])
def test_reduce_empty_axes(op: str, noop: int) -> None:
    x = RNG.uniform(0.5, 2.0, (2, 3, 4)).astype(np.float32)
    consts = {"axes": np.array([], np.int64)}
    model = single_node_model(
        op, {"x": x}, ["y"], opset=18, initializers=consts, keepdims=0, noop_with_empty_axes=noop
    )
    (y,) = assert_matches_ort(model, {"x": x}, rtol=1e-5)
    assert y.shape == (x.shape if noop else ())


def test_reduce_sum_square_noop_squares() -> None:
    x = np.array([[1.0, -2.0], [3.0, 0.5]], np.float32)
    model = single_node_model("ReduceSumSquare", {"x": x}, ["y"], noop_with_empty_axes=1)
    # No axes and noop: a reduction over no axis, so just x*x = [[1, 4], [9, 0.25]].
    np.testing.assert_array_equal(run_ours(model, {"x": x})[0], [[1, 4], [9, 0.25]])


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceL2", "ReduceProd", "ReduceLogSumExp"])
def test_reduce_axes_attribute_form(op: str) -> None:
    x = RNG.uniform(0.5, 2.0, (2, 3, 4)).astype(np.float32)
    model = single_node_model(op, {"x": x}, ["y"], opset=13, axes=[0, -1], keepdims=1)
    assert_matches_ort(model, {"x": x}, rtol=1e-5)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_modes(mode: str) -> None:
    x = np.arange(3 * 4, dtype=np.float32).reshape(3, 4)
    consts = {"pads": np.array([1, 2, 2, 3], np.int64), "value": np.array(7.5, np.float32)}
    model = single_node_model("Pad", {"x": x}, ["y"], opset=19, initializers=consts, mode=mode)
    assert_matches_ort(model, {"x": x})


def test_pad_negative_and_axes() -> None:
    x = np.arange(2 * 5, dtype=np.int32).reshape(2, 5)
    consts = {
        "pads": np.array([-1, 2], np.int64),
        "value": np.array(0, np.int32),
        "axes": np.array([-1], np.int64),
    }
    model = single_node_model("Pad", {"x": x}, ["y"], opset=19, initializers=consts)
    (y,) = assert_matches_ort(model, {"x": x})
    # Columns 1..4 kept, then two zero columns: row 0 = [1, 2, 3, 4, 0, 0].
    np.testing.assert_array_equal(y[0], [1, 2, 3, 4, 0, 0])


@pytest.mark.parametrize(
    ("equation", "shapes"),
    [
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("ij->ji", [(3, 4)]),
        ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]),
        ("i,i", [(5,), (5,)]),
        ("...ij,...jk", [(2, 3, 4), (2, 4, 2)]),
        ("ii->i", [(3, 3)]),
        ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ],
)
def test_einsum(equation: str, shapes: list[tuple[int, ...]]) -> None:
    inputs = {f"x{i}": RNG.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}
    model = single_node_model("Einsum", inputs, ["y"], opset=12, equation=equation)
    assert_matches_ort(model, inputs, rtol=1e-5, atol=1e-6)


def test_topk_ties_lower_index_first() -> None:
    x = np.array([[3, 1, 3, 2, 3]], dtype=np.float32)
    consts = {"k": np.array([3], np.int64)}
    for largest in (1, 0):
        model = single_node_model(
            "TopK", {"x": x}, ["v", "i"], opset=11, initializers=consts, largest=largest
        )
        assert_matches_ort(model, {"x": x})
    model = single_node_model("TopK", {"x": x}, ["v", "i"], opset=11, initializers=consts)
    np.testing.assert_array_equal(run_ours(model, {"x": x})[1], [[0, 2, 4]])


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements_reductions(reduction: str) -> None:
    data = RNG.standard_normal((3, 4)).astype(np.float32)
    # Duplicate targets only where a reduction makes the order irrelevant.
    indices = np.array([[1, 1, -1], [0, 2, 3]] if reduction != "none" else [[1, 0, -1], [0, 2, 3]])
    updates = RNG.standard_normal((2, 3)).astype(np.float32)
    inputs = {"data": data, "indices": indices.astype(np.int64), "updates": updates}
    model = single_node_model(
        "ScatterElements", inputs, ["y"], opset=18, axis=1, reduction=reduction
    )
    assert_matches_ort(model, inputs, rtol=1e-6)


@pytest.mark.parametrize("reduction", ["none", "add", "max"])
def test_scatter_nd(reduction: str) -> None:
    data = RNG.standard_normal((4, 3, 2)).astype(np.float32)
    indices = np.array([[0, 1], [3, 2]] if reduction == "none" else [[0, 1], [0, 1]], np.int64)
    updates = RNG.standard_normal((2, 2)).astype(np.float32)
    inputs = {"data": data, "indices": indices, "updates": updates}
    model = single_node_model("ScatterND", inputs, ["y"], opset=18, reduction=reduction)
    assert_matches_ort(model, inputs)


def test_gather_nd_batch_dims() -> None:
    data = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    indices = np.array([[[1], [0]], [[2], [1]]], np.int64)
    inputs = {"data": data, "indices": indices}
    model = single_node_model("GatherND", inputs, ["y"], opset=13, batch_dims=1)
    (y,) = assert_matches_ort(model, inputs)
    np.testing.assert_array_equal(y[1, 0], data[1, 2])  # batch 1 takes its own row 2


def test_integer_div_truncates_toward_zero() -> None:
    a = np.array([7, -7, 7, -7, 0], np.int32)
    b = np.array([2, 2, -2, -2, 3], np.int32)
    model = single_node_model("Div", {"a": a, "b": b}, ["y"])
    (y,) = assert_matches_ort(model, {"a": a, "b": b})
    np.testing.assert_array_equal(y, [3, -3, -3, 3, 0])  # C division, not floor


@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_sign_conventions(fmod: int) -> None:
    a = np.array([7, -7, 7, -7], np.int64)
    b = np.array([3, 3, -3, -3], np.int64)
    model = single_node_model("Mod", {"a": a, "b": b}, ["y"], fmod=fmod)
    (y,) = assert_matches_ort(model, {"a": a, "b": b})
    # fmod=0 follows the divisor's sign (Python %), fmod=1 the dividend's.
    np.testing.assert_array_equal(y, [1, 2, -2, -1] if fmod == 0 else [1, -1, 1, -1])


def test_cumsum_exclusive_reverse() -> None:
    x = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    consts = {"axis": np.array(1, np.int64)}
    model = single_node_model(
        "CumSum", {"x": x}, ["y"], initializers=consts, exclusive=1, reverse=1
    )
    (y,) = assert_matches_ort(model, {"x": x})
    np.testing.assert_array_equal(y[0], [5, 3, 0])  # 2+3, 3, nothing


def test_split_num_outputs_uneven() -> None:
    x = np.arange(7, dtype=np.float32)
    model = single_node_model("Split", {"x": x}, ["a", "b", "c"], opset=18, num_outputs=3)
    outs = assert_matches_ort(model, {"x": x})
    assert [o.size for o in outs] == [3, 3, 1]  # ceil(7/3) = 3, last gets the rest


def test_range_float() -> None:
    consts = {
        "start": np.array(0.1, np.float32),
        "limit": np.array(1.0, np.float32),
        "delta": np.array(0.3, np.float32),
    }
    model = single_node_model("Range", {}, ["y"], opset=11, initializers=consts)
    assert_matches_ort(model, {})


@pytest.mark.parametrize("to", [TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2])
def test_cast_float8_saturates(to: int) -> None:
    x = np.array([1e6, -1e6, np.inf, 0.3, np.nan], np.float32)
    model = single_node_model("Cast", {"x": x}, ["y"], opset=19, to=to)
    (y,) = run_ours(model, {"x": x})
    as_float = y.astype(np.float32)
    top = 448.0 if to == TensorProto.FLOAT8E4M3FN else 57344.0  # largest finite value
    np.testing.assert_array_equal(as_float[:3], [top, -top, top])
    assert np.isnan(as_float[4])


def test_where_and_expand_broadcast() -> None:
    cond = np.array([[True], [False]])
    x = np.arange(3, dtype=np.float16)
    y = np.array(-1, np.float16)
    inputs = {"c": cond, "x": x, "y": y}
    model = single_node_model("Where", inputs, ["z"])
    (z,) = assert_matches_ort(model, inputs)
    assert z.dtype == np.float16


def test_onehot_negative_indices() -> None:
    indices = np.array([0, -1, 2, 5], np.int64)
    consts = {"depth": np.array(4, np.int64), "values": np.array([0.0, 1.0], np.float32)}
    model = single_node_model("OneHot", {"i": indices}, ["y"], opset=11, initializers=consts)
    (y,) = assert_matches_ort(model, {"i": indices})
    np.testing.assert_array_equal(y.argmax(axis=1), [0, 3, 2, 0])
    assert y[3].sum() == 0  # 5 is out of range: all off


def test_trilu_and_matmul_shapes() -> None:
    x = RNG.standard_normal((2, 4, 5)).astype(np.float32)
    consts = {"k": np.array(-1, np.int64)}
    model = single_node_model("Trilu", {"x": x}, ["y"], opset=14, initializers=consts, upper=0)
    assert_matches_ort(model, {"x": x})
    a = RNG.standard_normal((2, 1, 3, 4)).astype(np.float32)
    b = RNG.standard_normal((5, 4, 2)).astype(np.float32)
    model = single_node_model("MatMul", {"a": a, "b": b}, ["y"])
    assert_matches_ort(model, {"a": a, "b": b}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("trans_a", "trans_b"), [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm_transposes(trans_a: int, trans_b: int) -> None:
    a = RNG.standard_normal((3, 4) if not trans_a else (4, 3)).astype(np.float32)
    b = RNG.standard_normal((4, 5) if not trans_b else (5, 4)).astype(np.float32)
    c = RNG.standard_normal((5,)).astype(np.float32)
    inputs = {"a": a, "b": b, "c": c}
    model = single_node_model(
        "Gemm", inputs, ["y"], alpha=0.5, beta=2.0, transA=trans_a, transB=trans_b
    )
    assert_matches_ort(model, inputs, rtol=1e-5, atol=1e-6)


def test_quantize_dequantize_per_axis() -> None:
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    scale = np.array([0.02, 0.05, 0.1], np.float32)
    zero = np.array([0, 10, -5], np.int8)
    inputs = {"x": x}
    consts = {"s": scale, "z": zero}
    model = single_node_model("QuantizeLinear", inputs, ["q"], opset=19, initializers=consts)
    (q,) = assert_matches_ort(model, inputs)
    model = single_node_model("DequantizeLinear", {"q": q}, ["y"], opset=19, initializers=consts)
    assert_matches_ort(model, {"q": q})
