"""Per-node costs, parameter totals and activation liveness on hand-built graphs."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from passes.analysis import activation_liveness, cut_bytes, node_costs
from passes.load import load
from tests.modelgen import init, make_model, save, vi


def _chain(tmp_path):
    """x[2,8] -fc1(w1 8x16)-> h[2,16] -relu-> a -fc2(w2 16x4)-> y[2,4]; w1 also feeds a side Add."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("MatMul", ["a", "w2"], ["y"], name="fc2"),
    ]
    inits = [
        init("w1", np.ones((8, 16), np.float32)),
        init("w2", np.ones((16, 4), np.float16).astype(np.float32)),
    ]
    model = make_model(nodes, [vi("x", [2, 8])], [vi("y", [2, 4])], inits)
    return load(save(model, tmp_path / "chain.onnx"))


def test_node_costs_by_hand(tmp_path):
    g = _chain(tmp_path)
    r = node_costs(g)
    fc1, relu, fc2 = r.nodes
    # fc1: 2*2*8*16 = 512 FLOPs; reads x (2*8*4=64 B) + w1 (8*16*4=512 B); writes h 2*16*4 = 128 B
    assert (fc1.flops, fc1.bytes_read, fc1.bytes_written, fc1.param_bytes) == (512, 576, 128, 512)
    assert fc1.matmuls == 1 and fc1.dtype == "float32" and fc1.bytes_moved == 704
    # relu: 32 elements -> 32 FLOPs, reads 128 B, writes 128 B
    assert (relu.flops, relu.bytes_read, relu.bytes_written, relu.param_bytes) == (32, 128, 128, 0)
    # fc2: 2*2*16*4 = 256 FLOPs, w2 16*4*4 = 256 B
    assert (fc2.flops, fc2.param_bytes) == (256, 256)
    assert r.total_flops == 512 + 32 + 256
    assert r.param_bytes == 512 + 256 and r.param_count == 128 + 64
    assert r.num_unknown == 0


def test_shared_initializer_counted_once_in_totals(tmp_path):
    # Tied embedding: the same table feeds Gather and a MatMul (transposed at run time).
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"]),
        helper.make_node("Transpose", ["emb"], ["embT"], perm=[1, 0]),
        helper.make_node("MatMul", ["e", "embT"], ["logits"]),
    ]
    model = make_model(
        nodes,
        [vi("ids", [3], TensorProto.INT64)],
        [vi("logits", [3, 10])],
        [init("emb", np.zeros((10, 4), np.float32))],
    )
    g = load(save(model, tmp_path / "tied.onnx"))
    r = node_costs(g)
    # Transpose of an initializer is folded: embT is a resident copy (memory counts both),
    # but not a new parameter (param_count counts the table once, as torch does).
    assert g.nodes[1].folded
    assert r.nodes[0].param_bytes == 160 and r.nodes[2].param_bytes == 160
    assert r.param_bytes == 320
    assert r.param_count == 40


def test_unknown_ops_reported_not_zero(tmp_path):
    nodes = [
        helper.make_node("MyOp", ["x"], ["h"], domain="com.example", name="mystery"),
        helper.make_node("Relu", ["h"], ["y"], name="after"),
    ]
    model = make_model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])], extra_opsets={"com.example": 1})
    r = node_costs(load(save(model, tmp_path / "c.onnx")))
    assert not r.nodes[0].known and "com.example::MyOp" in r.nodes[0].reason
    assert not r.nodes[1].known and "unknown shape" in r.nodes[1].reason
    assert r.unknown == {"Relu": ("after",), "com.example::MyOp": ("mystery",)}


def test_liveness_chain(tmp_path):
    g = _chain(tmp_path)
    live = activation_liveness(g)
    # step fc1: x (64) + h (128) = 192 ; then x dies -> 128
    # step relu: h (128) + a (128) = 256 <- peak ; h dies -> 128
    # step fc2: a (128) + y (32) = 160 ; y kept (graph output)
    assert live.peak_bytes == 256 and live.peak_node == 1
    assert live.entry_bytes == 64 and live.exit_bytes == 32


def test_liveness_of_a_stage_keeps_tensors_that_leave(tmp_path):
    g = _chain(tmp_path)
    # Stage = [fc1] alone: x enters (64); h leaves the stage, so it stays live -> 192
    live = activation_liveness(g, [0])
    assert (live.peak_bytes, live.entry_bytes, live.exit_bytes) == (192, 64, 128)


def test_liveness_branches(tmp_path):
    # x[4] (16 B) -> a=Relu(x), b=Neg(x), c=Add(a,b): peak at Add: a + b + c = 48 (x died after Neg)
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Neg", ["x"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["c"]),
    ]
    g = load(save(make_model(nodes, [vi("x", [4])], [vi("c", [4])]), tmp_path / "b.onnx"))
    live = activation_liveness(g)
    # Relu step: x + a = 32 ; Neg step: x + a + b = 48 ; then x dies ; Add: a + b + c = 48
    assert live.peak_bytes == 48 and live.peak_node == 1


def test_cut_bytes_excludes_params(tmp_path):
    g = _chain(tmp_path)
    sizes = cut_bytes(g).bytes_by_tensor
    assert sizes == {"x": 64, "h": 128, "a": 128, "y": 32}


def test_attention_subgraph_found_with_its_flops(tmp_path):
    from passes.analysis import attention_patterns

    # scores = (q @ kT) * 0.125 + mask ; probs = softmax(scores) ; out = probs @ v
    # q [2,4,8], kT [2,8,6], v [2,6,8]: QK 2*2*4*8*6 = 768, Mul 48, Add 48, Softmax 5*48 = 240,
    # AV 2*2*4*6*8 = 768 -> 1872
    nodes = [
        helper.make_node("MatMul", ["q", "kT"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["s2"]),
        helper.make_node("Add", ["s2", "mask"], ["s3"]),
        helper.make_node("Softmax", ["s3"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["o"]),
    ]
    inits = [init("scale", np.array(0.125, np.float32)), init("mask", np.zeros((4, 6), np.float32))]
    model = make_model(
        nodes,
        [vi("q", [2, 4, 8]), vi("kT", [2, 8, 6]), vi("v", [2, 6, 8])],
        [vi("o", [2, 4, 8])],
        inits,
    )
    g = load(save(model, tmp_path / "attn.onnx"))
    (p,) = attention_patterns(g, node_costs(g))
    assert p.nodes == (0, 1, 2, 3, 4)
    assert p.flops == 768 + 48 + 48 + 240 + 768
    assert (p.q_len, p.kv_len, p.fused) == (4, 6, False)


def test_softmax_over_weights_is_not_attention(tmp_path):
    from passes.analysis import attention_patterns

    # x @ W (a weight) -> softmax -> @ v : the first contraction reads a parameter
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["s"]),
        helper.make_node("Softmax", ["s"], ["p"]),
        helper.make_node("MatMul", ["p", "v"], ["o"]),
    ]
    model = make_model(
        nodes,
        [vi("x", [4, 8]), vi("v", [6, 8])],
        [vi("o", [4, 8])],
        [init("w", np.ones((8, 6), np.float32))],
    )
    g = load(save(model, tmp_path / "cls.onnx"))
    assert attention_patterns(g, node_costs(g)) == ()


def test_a_gather_reads_the_rows_it_gathers_not_the_table(tmp_path):
    # table [1000, 64] float32 = 256,000 B; ids [2, 3] int64 = 48 B; out [2, 3, 64] = 1,536 B
    nodes = [helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0)]
    inits = [init("table", np.ones((1000, 64), np.float32))]
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3])
    model = make_model(nodes, [ids], [vi("rows", [2, 3, 64])], inits)
    (gather,) = node_costs(load(save(model, tmp_path / "gather.onnx"))).nodes
    assert (gather.bytes_read, gather.bytes_written) == (1_536 + 48, 1_536)
    assert gather.param_bytes == 256_000  # the table is still resident whole


def test_a_slice_reads_what_it_keeps(tmp_path):
    # x [8, 16] float32 = 512 B; keep rows 0..2 -> [2, 16] = 128 B; starts/ends/axes 3 x 8 B
    nodes = [helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"])]
    inits = [init(n, np.array([v], np.int64)) for n, v in (("starts", 0), ("ends", 2), ("axes", 0))]
    model = make_model(nodes, [vi("x", [8, 16])], [vi("y", [2, 16])], inits)
    (cut,) = node_costs(load(save(model, tmp_path / "slice.onnx"))).nodes
    assert (cut.bytes_read, cut.bytes_written) == (128 + 24, 128)


def test_liveness_holds_a_received_tensor_the_stage_sends_on(tmp_path):
    g = _chain(tmp_path)
    # Stage = [relu, fc2] receives h (128 B). Freed after relu: peak at relu h + a = 256.
    assert activation_liveness(g, [1, 2]).peak_bytes == 256
    # Sent on to a later stage too, h stays to the end: at fc2 h + a + y = 128+128+32 = 288
    assert activation_liveness(g, [1, 2], sent={"h"}).peak_bytes == 288


def _sdpa_like(tmp_path, *, reshape: bool, nan_guard: bool):
    """q [2,4,8] · kᵀ [2,8,4] -> scores [2,4,4] -> Where(mask, -inf, scores) [-> Reshape]
    -> Softmax [-> Where(IsNaN(p), 0, p)] -> · v [2,4,8]: torch's decomposition."""
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Not", ["keep"], ["masked"]),
        helper.make_node("Where", ["masked", "neg_inf", "scores"], ["filled"]),
    ]
    scores = "filled"
    if reshape:  # BLOOM: batched scores viewed per head before the softmax
        nodes.append(helper.make_node("Reshape", ["filled", "shape"], ["per_head"]))
        scores = "per_head"
    nodes.append(helper.make_node("Softmax", [scores], ["p"], axis=-1))
    probs = "p"
    if nan_guard:
        nodes += [
            helper.make_node("IsNaN", ["p"], ["nan"]),
            helper.make_node("Where", ["nan", "zero", "p"], ["p_safe"]),
        ]
        probs = "p_safe"
    nodes.append(helper.make_node("MatMul", [probs, "v"], ["o"]))
    inputs = [vi("q", [2, 4, 8]), vi("k", [2, 4, 8]), vi("v", [2, 4, 8])]
    inputs.append(helper.make_tensor_value_info("keep", TensorProto.BOOL, [2, 4, 4]))
    inits = [
        init("neg_inf", np.array(-np.inf, np.float32)),
        init("zero", np.array(0.0, np.float32)),
        init("shape", np.array([2, 4, 4], np.int64)),
    ]
    model = make_model(nodes, inputs, [vi("o", [2, 4, 8])], inits)
    return load(save(model, tmp_path / "sdpa.onnx"))


@pytest.mark.parametrize(("reshape", "nan_guard"), [(False, False), (False, True), (True, True)])
def test_attention_through_a_boolean_mask_a_view_and_a_nan_guard(tmp_path, reshape, nan_guard):
    from passes.analysis import attention_patterns

    g = _sdpa_like(tmp_path, reshape=reshape, nan_guard=nan_guard)
    (found,) = attention_patterns(g, node_costs(g))
    ops = [g.nodes[i].op_type for i in found.nodes]
    # the mask's Not is not part of it; the scores' Where, the view and the guard are
    assert "Not" not in ops and ops.count("MatMul") == 2 and "Softmax" in ops
    assert ("IsNaN" in ops) == nan_guard and ("Reshape" in ops) == reshape
    assert (found.q_len, found.kv_len) == (4, 4)
