"""FLOP rules against values worked out by hand."""

from __future__ import annotations

import pytest

from passes.analysis.flops import OpShapes, broadcast_shape, flops_for


def f(op: str, inputs, outputs, **attrs) -> tuple[int, int]:
    result = flops_for(op, "", OpShapes(inputs, outputs, attrs))
    assert result is not None
    return result


def test_broadcast_shape():
    assert broadcast_shape((2, 1, 4), (3, 1)) == (2, 3, 4)
    assert broadcast_shape((), (5,)) == (5,)


def test_matmul_2d():
    # [4,3] @ [3,5]: 4*5 outputs, each 3 multiply-adds -> 2*4*3*5 = 120
    assert f("MatMul", [(4, 3), (3, 5)], [(4, 5)]) == (120, 1)


def test_matmul_batched_broadcast():
    # [2,1,4,3] @ [6,3,5]: batch broadcast (2,6) = 12; 2*12*4*3*5 = 1440
    assert f("MatMul", [(2, 1, 4, 3), (6, 3, 5)], [(2, 6, 4, 5)]) == (1440, 1)


def test_matmul_vector_operands():
    # [3] @ [3,5] -> [5]: M=1 -> 2*1*3*5 = 30 ; [4,3] @ [3] -> [4]: N=1 -> 2*4*3 = 24
    assert f("MatMul", [(3,), (3, 5)], [(5,)]) == (30, 1)
    assert f("MatMul", [(4, 3), (3,)], [(4,)]) == (24, 1)


def test_gemm_with_transposes_and_bias():
    # A^T where A is [3,4] -> M=4, K=3; B^T where B is [5,3] -> N=5
    # 2*4*3*5 = 120, bias adds M*N = 20 -> 140
    assert f("Gemm", [(3, 4), (5, 3), (5,)], [(4, 5)], transA=1, transB=1) == (140, 1)
    assert f("Gemm", [(4, 3), (3, 5), None], [(4, 5)]) == (120, 1)


def test_conv_groups_and_bias():
    # x [1,8,10,10], w [16, 8/2=4, 3,3], group 2 -> y [1,16,8,8] = 1024 outputs
    # per output 2 * 4 * 9 = 72 -> 73728, bias +1024 -> 74752
    y = (1, 16, 8, 8)
    assert f("Conv", [(1, 8, 10, 10), (16, 4, 3, 3), (16,)], [y], group=2) == (74752, 1)


def test_conv_depthwise():
    # depthwise: w [32,1,3,3], y [1,32,5,5] = 800 outputs * 2*1*9 = 14400
    assert f("Conv", [(1, 32, 5, 5), (32, 1, 3, 3)], [(1, 32, 5, 5)], group=32) == (14400, 1)


def test_conv_transpose():
    # x [1,4,3,3] = 36 elements; w [4, 6/2=3, 2,2] group 2; each input does 3*4 MACs
    # 36 * 2 * 3 * 4 = 864 ; bias: y [1,6,6,6] = 216 -> 1080
    assert f("ConvTranspose", [(1, 4, 3, 3), (4, 3, 2, 2), (6,)], [(1, 6, 6, 6)], group=2) == (
        1080,
        1,
    )


def test_einsum_two_operands():
    # bhqd,bhkd->bhqk with b=2,h=3,q=4,k=5,d=8: 2 * (2*3*4*5*8=960) = 1920
    assert f(
        "Einsum", [(2, 3, 4, 8), (2, 3, 5, 8)], [(2, 3, 4, 5)], equation="bhqd,bhkd->bhqk"
    ) == (
        1920,
        1,
    )


def test_einsum_ellipsis_and_single_operand():
    # ...ij,...jk with batch (2,) i=3 j=4 k=5 -> 2 * 2*3*4*5 = 240
    assert f("Einsum", [(2, 3, 4), (2, 4, 5)], [(2, 3, 5)], equation="...ij,...jk->...ik") == (
        240,
        1,
    )
    # trace ii-> of 6x6: one add per visited index combo = 6
    assert f("Einsum", [(6, 6)], [()], equation="ii->") == (6, 0)


def test_attention_4d_gqa_with_past():
    # Q [1, 8, 1, 64], K/V [1, 2, 1, 64], past_key [1,2,15,64] -> kv_len 16
    # scores = 1*8*1*16 = 128; QK: 2*128*64 = 16384; AV: 2*128*64 = 16384
    # elementwise per score: scale 1 + mask (causal) 1 + softmax 5 = 7 -> 896
    q, kv, past = (1, 8, 1, 64), (1, 2, 1, 64), (1, 2, 15, 64)
    got = f("Attention", [q, kv, kv, None, past, past], [q], is_causal=1)
    assert got == (16384 + 16384 + 896, 2)


def test_attention_3d_inputs():
    # Q [2, 4, 6*8] with q_num_heads 6, K/V [2, 5, 2*8] kv_num_heads 2, no mask
    # scores 2*6*4*5 = 240 ; QK 2*240*8 = 3840 ; AV 3840 ; elementwise 240*(1+5) = 1440
    got = f(
        "Attention",
        [(2, 4, 48), (2, 5, 16), (2, 5, 16)],
        [(2, 4, 48)],
        q_num_heads=6,
        kv_num_heads=2,
    )
    assert got == (3840 + 3840 + 1440, 2)


@pytest.mark.parametrize(
    "op,per",
    [("Softmax", 5), ("LogSoftmax", 5), ("BatchNormalization", 4), ("InstanceNormalization", 7)],
)
def test_per_element_rules(op, per):
    assert f(op, [(2, 3, 4, 5)], [(2, 3, 4, 5)]) == (per * 120, 0)


def test_layer_norm_with_and_without_bias():
    # 6 per element, +1 with bias: [2,10,16] = 320 elements
    assert f("LayerNormalization", [(2, 10, 16), (16,), (16,)], [(2, 10, 16)]) == (7 * 320, 0)
    assert f("LayerNormalization", [(2, 10, 16), (16,)], [(2, 10, 16)]) == (6 * 320, 0)
    assert f("RMSNormalization", [(2, 10, 16), (16,)], [(2, 10, 16)]) == (4 * 320, 0)


def test_elementwise_and_variadic():
    # Add with broadcast: output [4,5] = 20 elements -> 20
    assert f("Add", [(4, 5), (5,)], [(4, 5)]) == (20, 0)
    # Sum of 3 inputs: 2 adds per output element; Mean: 3 per element
    assert f("Sum", [(4,), (4,), (4,)], [(4,)]) == (8, 0)
    assert f("Mean", [(4,), (4,), (4,)], [(4,)]) == (12, 0)


def test_pools_and_reductions():
    # MaxPool 3x3 on output [1,2,4,4] = 32 outputs * 9 = 288
    assert f("MaxPool", [(1, 2, 9, 9)], [(1, 2, 4, 4)], kernel_shape=[3, 3]) == (288, 0)
    # GlobalAveragePool over [1,2,7,7] = 98
    assert f("GlobalAveragePool", [(1, 2, 7, 7)], [(1, 2, 1, 1)]) == (98, 0)
    # ReduceMean over [3,4] -> [3]: 12 adds + 3 divides = 15
    assert f("ReduceMean", [(3, 4)], [(3,)]) == (15, 0)
    assert f("ReduceSumSquare", [(3, 4)], [(3,)]) == (24, 0)


def test_lrn():
    # size 5: (2*5 + 3) = 13 per element, [1,4,2,2] = 16 -> 208
    assert f("LRN", [(1, 4, 2, 2)], [(1, 4, 2, 2)], size=5) == (208, 0)


def test_resize_linear_2d():
    # [1,1,2,2] -> [1,1,4,4]: 2 resized axes -> 4 taps; 16 outputs * 2 * 4 = 128
    assert f("Resize", [(1, 1, 2, 2), None, None, None], [(1, 1, 4, 4)], mode="linear") == (128, 0)
    assert f("Resize", [(1, 1, 2, 2)], [(1, 1, 4, 4)], mode="nearest") == (0, 0)


def test_lstm():
    # seq 3, batch 2, input 4, hidden 5, 1 direction: W [1, 20, 4]
    # per step: 2*2*20*(4+5) = 720 + 8*2*5*4 = 320 -> 1040 ; x3 steps = 3120
    assert f("LSTM", [(3, 2, 4), (1, 20, 5), (1, 20, 5)], [(3, 1, 2, 5)]) == (3120, 6)


def test_data_movement_is_known_zero():
    assert f("Transpose", [(2, 3)], [(3, 2)]) == (0, 0)
    assert f("Gather", [(10, 4), (3,)], [(3, 4)]) == (0, 0)


def test_unknown_op_has_no_rule():
    assert flops_for("MyCustomOp", "", OpShapes([(2,)], [(2,)], {})) is None
    assert flops_for("Add", "com.example", OpShapes([(2,)], [(2,)], {})) is None
