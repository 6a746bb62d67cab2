"""Costs as a fusing runtime runs the graph, worked out by hand."""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from passes.analysis import node_costs
from passes.analysis.fusion import fused_costs, fusion_groups
from passes.load import load
from tests.modelgen import init, make_model, save, vi
from tests.passes.test_analysis import _sdpa_like


def _chain(tmp_path):
    """x[4,8] -> Mul(s) -> Add(b) -> Relu -> MatMul(W[8,8]) -> y[4,8]."""
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("MatMul", ["r", "w"], ["y"]),
    ]
    inits = [
        init("s", np.array(2.0, np.float32)),
        init("b", np.ones(8, np.float32)),
        init("w", np.ones((8, 8), np.float32)),
    ]
    return load(
        save(make_model(nodes, [vi("x", [4, 8])], [vi("y", [4, 8])], inits), tmp_path / "c.onnx")
    )


def test_an_elementwise_chain_is_one_memory_pass(tmp_path):
    g = _chain(tmp_path)
    costs = node_costs(g)
    # one pass: x (128 B) + s (4 B) + b (32 B) in, r (128 B) out = 292 B;
    # eagerly Mul moved 128+4+128 = 260, Add 128+32+128 = 288, Relu 256: 804 B
    assert fusion_groups(g, costs) == [([0, 1, 2], 292)]
    assert [costs.nodes[i].bytes_moved for i in range(3)] == [260, 288, 256]
    fused = fused_costs(g, costs)
    shares = [fused.nodes[i].bytes_moved for i in range(3)]
    assert shares == [round(292 * 260 / 804), round(292 * 288 / 804), round(292 * 256 / 804)]
    assert [fused.nodes[i].kernels for i in range(4)] == [0, 0, 1, 1]  # one launch, on Relu
    assert fused.nodes[3] == costs.nodes[3]  # the MatMul is its own kernel
    assert fused.total_flops == costs.total_flops and fused.param_bytes == costs.param_bytes
    assert all(n.kernels == 0 for n in fused_costs(g, costs, cuda_graph=True).nodes)


def test_attention_reads_q_k_v_once_and_never_writes_scores(tmp_path):
    g = _sdpa_like(tmp_path, reshape=True, nan_guard=True)
    costs = node_costs(g)
    (members, moved), *rest = fusion_groups(g, costs)
    ops = sorted(g.nodes[i].op_type for i in members)
    # K's Transpose only feeds Q·Kᵀ: absorbed, so K is read as it is (256 B)
    assert ops == sorted(["Transpose", "MatMul", "Where", "Reshape", "Softmax", "IsNaN",
                          "Where", "MatMul"])  # fmt: skip
    # q, k, v [2,4,8] float32 = 256 B each, the boolean mask [2,4,4] = 32 B, out o 256 B
    assert moved == 3 * 256 + 32 + 256
    assert rest == []  # the mask's Not stays a kernel of its own
    eager = sum(costs.nodes[i].bytes_moved for i in members)
    assert eager > 2 * moved  # scores and probabilities were written and read again


def _decode_attention(tmp_path):
    """present_k = Concat(past_k [1,2,3,4], k [1,2,1,4]) (likewise v), both graph outputs;
    o = Softmax(q [1,2,1,4] · present_kᵀ) · present_v: one head group's decode step."""
    nodes = [
        helper.make_node("Concat", ["past_k", "k"], ["present_k"], axis=2),
        helper.make_node("Concat", ["past_v", "v"], ["present_v"], axis=2),
        helper.make_node("Transpose", ["present_k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "present_v"], ["o"]),
    ]
    inputs = [vi("past_k", [1, 2, 3, 4]), vi("past_v", [1, 2, 3, 4])]
    inputs += [vi(n, [1, 2, 1, 4]) for n in ("q", "k", "v")]
    outputs = [vi("o", [1, 2, 1, 4]), vi("present_k", [1, 2, 4, 4]), vi("present_v", [1, 2, 4, 4])]
    return load(save(make_model(nodes, inputs, outputs, []), tmp_path / "decode.onnx"))


def test_a_cache_append_is_written_in_place_and_read_once(tmp_path):
    """Paged attention reads the cache where it lies and writes only the new rows; an
    eager runtime copies past and the new rows into present, then reads present."""
    g = _decode_attention(tmp_path)
    costs = node_costs(g)
    (members, moved), *rest = fusion_groups(g, costs)
    assert members == [0, 1, 2, 3, 4, 5] and rest == []
    # float32: past 96 B each, new rows 32 B each (read, then written into the cache),
    # q 32 B, o 32 B: 32 + 2 * (96 + 2 * 32) + 32
    assert moved == 384
    # eagerly each Concat alone moved past + rows + present = 96 + 32 + 128
    assert costs.nodes[0].bytes_moved == costs.nodes[1].bytes_moved == 256


def _qdq_matmul(tmp_path):
    """y [4,8] = DQ(Q(x [4,8] f32)) @ DQ(w8 [8,8] float8e4m3fn, 0.5): W8A8 in QDQ form."""
    import ml_dtypes
    from onnx import TensorProto

    w8 = numpy_helper.from_array(np.ones((8, 8), ml_dtypes.float8_e4m3fn), "w8")
    assert w8.data_type == TensorProto.FLOAT8E4M3FN
    inits = [
        w8,
        init("w_scale", np.array(0.5, np.float32)),
        init("x_scale", np.array(1.0, np.float32)),
        init("zero8", np.array(0, ml_dtypes.float8_e4m3fn)),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w8", "w_scale"], ["w"]),
        helper.make_node("QuantizeLinear", ["x", "x_scale", "zero8"], ["x8"]),
        helper.make_node("DequantizeLinear", ["x8", "x_scale", "zero8"], ["xq"]),
        helper.make_node("MatMul", ["xq", "w"], ["y"]),
    ]
    model = make_model(nodes, [vi("x", [4, 8])], [vi("y", [4, 8])], inits, opset=21)
    return load(save(model, tmp_path / "qdq.onnx"))


def test_a_qdq_gemm_reads_its_stored_operands_on_fp8_tensor_cores(tmp_path):
    g = _qdq_matmul(tmp_path)
    assert g.nodes[0].folded and g.tensors["w"].nbytes == 64  # stored: 64 float8 bytes
    costs = node_costs(g)
    # resident: w as stored (64 B), and the activation's scale and zero point (4 + 1 B)
    assert costs.param_bytes == 64 + 5
    # eagerly the MatMul reads the dequantised x (128 B) and w (64 B), writes y (128 B)
    assert (costs.nodes[3].bytes_read, costs.nodes[3].bytes_written) == (192, 128)
    assert costs.nodes[3].dtype == "float32"
    fused = fused_costs(g, costs)
    # fused: x read as its 32 float8 bytes, w as stored; the DequantizeLinear is no kernel
    assert (fused.nodes[3].bytes_read, fused.nodes[3].dtype) == (96, "float8_e4m3fn")
    assert fused.nodes[2].bytes_moved == 0 and fused.nodes[2].kernels == 0
    assert fused.nodes[1] == costs.nodes[1]  # the QuantizeLinear alone: its own pass


def test_a_fused_runtime_holds_no_memory_for_its_cache_appends(tmp_path):
    """present_k and present_v are the new rows written into the resident cache: with them
    in place the peak drops by their 128 B each, which an eager runtime does allocate."""
    from passes.analysis.fusion import in_place_outputs
    from passes.analysis.liveness import activation_liveness

    g = _decode_attention(tmp_path)
    assert in_place_outputs(g, "fused") == {"present_k", "present_v"}
    assert in_place_outputs(g, "eager") == frozenset()  # an eager runtime copies the cache
    eager = activation_liveness(g).peak_bytes
    fused = activation_liveness(g, in_place=in_place_outputs(g, "fused")).peak_bytes
    assert eager - fused == 2 * 128


def _fp8_cache_attention(tmp_path):
    """`_decode_attention` with the cache kept in float8: past8 [1,2,3,4] float8e4m3fn is
    dequantised, appended to, and the appended cache quantised back to present8."""
    import ml_dtypes
    from onnx import TensorProto

    nodes, inputs, outputs = [], [vi("q", [1, 2, 1, 4])], [vi("o", [1, 2, 1, 4])]
    for part in ("k", "v"):
        nodes += [
            helper.make_node("DequantizeLinear", [f"past8_{part}", "s", "z"], [f"past_{part}"]),
            helper.make_node("Concat", [f"past_{part}", part], [f"cache_{part}"], axis=2),
            helper.make_node("QuantizeLinear", [f"cache_{part}", "s", "z"], [f"present8_{part}"]),
        ]
        fp8 = TensorProto.FLOAT8E4M3FN
        inputs += [helper.make_tensor_value_info(f"past8_{part}", fp8, [1, 2, 3, 4])]
        inputs += [vi(part, [1, 2, 1, 4])]
        outputs += [helper.make_tensor_value_info(f"present8_{part}", fp8, [1, 2, 4, 4])]
    nodes += [
        helper.make_node("Transpose", ["cache_k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "cache_v"], ["o"]),
    ]
    inits = [init("s", np.array(1.0, np.float32)),
             init("z", np.array(0, ml_dtypes.float8_e4m3fn))]  # fmt: skip
    model = make_model(nodes, inputs, outputs, inits, opset=21)
    return load(save(model, tmp_path / "decode8.onnx"))


def test_an_fp8_cache_is_read_as_stored_and_appended_in_place(tmp_path):
    from passes.analysis.fusion import in_place_outputs

    g = _fp8_cache_attention(tmp_path)
    (members, moved), *rest = fusion_groups(g, node_costs(g))
    assert len(members) == 10 and rest == []  # 2 x (DQ, Concat, Q) and the attention's 4
    # q 32 B, each cache 24 float8 bytes as stored plus its new rows read and written
    # (2 x 32 B), o 32 B: 32 + 2 * (24 + 64) + 32
    assert moved == 240
    copies = {f"{v}_{p}" for v in ("past", "cache", "present8") for p in ("k", "v")}
    assert in_place_outputs(g, "fused") == copies


def test_a_causal_prompt_computes_half_its_scores_and_a_decode_row_all(tmp_path):
    """By hand: a prompt of s = 16 tokens has 16·17/2 = 136 of its 256 scores unmasked, so
    Q·Kᵀ, the softmax and ·V each cost 136/256 of their eager FLOPs fused; the decode
    step's one row sees every key (share 1). The model's total stays the eager one."""
    from examples import llama
    from passes.analysis.causal import causal_share
    from passes.analysis.patterns import attention_patterns
    from passes.load import load

    assert causal_share(16, 16) == 136 / 256 and causal_share(1, 16) == 1.0
    assert causal_share(4, 10) == (4 * 6 + 10) / 40  # a chunk of 4 after 6 cached
    for kind, dims, share in (("prefill", {"batch": 1, "seq": 16}, 136 / 256),
                              ("decode", {"batch": 1, "past": 15}, 1.0)):  # fmt: skip
        path = llama.build(tmp_path / f"{kind}.onnx", "tiny", kind=kind)
        g = load(path, dims)
        eager = node_costs(g)
        fused = fused_costs(g, eager)
        members = [i for p in attention_patterns(g, eager) for i in p.nodes]
        assert members and all(
            p.causal == (kind == "prefill") for p in attention_patterns(g, eager)
        )
        for i in members:
            assert fused.nodes[i].flops == round(eager.nodes[i].flops * share)
        assert fused.total_flops == eager.total_flops
