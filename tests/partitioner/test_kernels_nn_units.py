"""NN kernel formulas on tiny inputs worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from partitioner.executor.kernels.nn_attention import attention_v23
from partitioner.executor.kernels.nn_common import erf, pool_output_shape, spatial_pads
from partitioner.executor.kernels.nn_conv import conv, conv_transpose
from partitioner.executor.kernels.nn_norm import (
    group_normalization,
    group_normalization_v18,
    layer_normalization,
)
from partitioner.executor.kernels.nn_pool import average_pool, max_pool
from partitioner.executor.kernels.nn_resize import resize
from partitioner.executor.kernels.nn_softmax import dropout, hardmax_v1, softmax


def test_conv_1d_with_pads() -> None:
    # padded x = [0, 1, 2, 3, 4, 0]; y[i] = xp[i] - xp[i + 2] = [0-2, 1-3, 2-4, 3-0]
    x = np.array([[[1, 2, 3, 4]]], np.float32)
    w = np.array([[[1, 0, -1]]], np.float32)
    np.testing.assert_array_equal(conv(x, w, pads=[1, 1])[0], [[[-2, -2, -2, 3]]])


def test_conv_depthwise_keeps_channels_apart() -> None:
    # channel 0 summed by a 2-tap ones kernel, channel 1 doubled by a [0, 2] kernel
    x = np.array([[[1, 2, 3], [10, 20, 30]]], np.float32)
    w = np.array([[[1, 1]], [[0, 2]]], np.float32)
    np.testing.assert_array_equal(conv(x, w, group=2)[0], [[[3, 5], [40, 60]]])


def test_conv_transpose_stride_2_overlaps_add() -> None:
    # x0 spreads [1, 1, 1] over 0..2, x1 = 2 spreads [2, 2, 2] over 2..4 -> [1, 1, 3, 2, 2]
    x = np.array([[[1, 2]]], np.float32)
    w = np.array([[[1, 1, 1]]], np.float32)
    np.testing.assert_array_equal(conv_transpose(x, w, strides=[2])[0], [[[1, 1, 3, 2, 2]]])
    # output_padding appends one more (zero) position at the end
    np.testing.assert_array_equal(
        conv_transpose(x, w, strides=[2], output_padding=[1])[0], [[[1, 1, 3, 2, 2, 0]]]
    )


def test_same_upper_and_lower_pads() -> None:
    # in 5, k 4, stride 2 -> out ceil(5/2) = 3, total pad (3-1)*2 + 4 - 5 = 3
    assert spatial_pads([5], [4], [2], [1], None, "SAME_UPPER") == ([1], [2])
    assert spatial_pads([5], [4], [2], [1], None, "SAME_LOWER") == ([2], [1])


def test_ceil_mode_drops_window_starting_in_pad() -> None:
    # in 4, k 2, s 2, end pad 1: floor((4+1-2)/2)+1 = 2; ceil gives 3 but window 2 starts at
    # 4 >= in + begin = 4 (in the pad), so it is dropped -> 2
    assert pool_output_shape([4], [2], [2], [1], [0], [1], ceil_mode=1) == [2]
    assert pool_output_shape([5], [2], [2], [1], [0], [0], ceil_mode=1) == [3]


@pytest.mark.parametrize(
    "include, expected", [(0, [[1, 2], [3, 4]]), (1, [[0.25, 0.5], [0.75, 1]])]
)
def test_average_pool_count_include_pad(include, expected) -> None:
    # each 2x2 window (stride 2, pad 1) holds one real value and three pads
    x = np.array([[[[1, 2], [3, 4]]]], np.float32)
    (y,) = average_pool(
        x, kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=include
    )
    np.testing.assert_allclose(y[0, 0], expected)


def test_max_pool_indices_row_and_column_major() -> None:
    # max 7 sits at (h=1, w=0): row-major 1*2 + 0 = 2, column-major 1 + 0*2 = 1
    x = np.array([[[[1, 5], [7, 3]]]], np.float32)
    y, idx = max_pool(x, kernel_shape=[2, 2])
    assert y.item() == 7 and idx.item() == 2
    assert max_pool(x, kernel_shape=[2, 2], storage_order=1)[1].item() == 1


def test_max_pool_first_maximum_wins_ties() -> None:
    x = np.array([[[4, 4, 1]]], np.float32)
    _, idx = max_pool(x, kernel_shape=[2], strides=[1])
    np.testing.assert_array_equal(idx, [[[0, 1]]])  # window [4, 4] -> 0, window [4, 1] -> 1


def test_layer_normalization_by_hand() -> None:
    # mean 2, variance (1 + 0 + 1)/3 = 2/3, y = (x - 2) / sqrt(2/3 + eps)
    x = np.array([[1, 2, 3]], np.float32)
    y, mean, inv_std = layer_normalization(x, np.ones(3, np.float32), np.zeros(3, np.float32))
    inv = 1 / math.sqrt(2 / 3 + 1e-5)
    np.testing.assert_allclose(y, [[-inv, 0, inv]], rtol=1e-6)
    np.testing.assert_allclose(mean, [[2]])
    np.testing.assert_allclose(inv_std, [[inv]], rtol=1e-6)


def test_group_normalization_scale_per_group_v18_vs_per_channel_v21() -> None:
    # one group of channels [1, 3]: mean 2, var 1 -> normalised [-1, 1] (eps 0)
    x = np.array([[[1.0], [3.0]]], np.float32)
    y18 = group_normalization_v18(
        x, np.array([2.0], np.float32), np.array([0.5], np.float32), epsilon=0.0
    )
    np.testing.assert_allclose(y18[0][:, :, 0], [[-1.5, 2.5]])  # both channels use scale 2, bias .5
    y21 = group_normalization(
        x, np.array([2.0, 3.0], np.float32), np.zeros(2, np.float32), epsilon=0.0
    )
    np.testing.assert_allclose(y21[0][:, :, 0], [[-2.0, 3.0]])


def test_softmax_by_hand() -> None:
    # exp(0) : exp(ln 3) = 1 : 3
    np.testing.assert_allclose(softmax(np.array([0.0, math.log(3)]))[0], [0.25, 0.75])


def test_hardmax_v1_coerces_to_2d() -> None:
    # axis=1 on (1, 2, 2): one row of 4 values -> a single one at the overall maximum
    x = np.array([[[1, 9], [3, 4]]], np.float32)
    np.testing.assert_array_equal(hardmax_v1(x)[0], [[[0, 1], [0, 0]]])


def test_resize_linear_half_pixel_by_hand() -> None:
    # source coords (x + 0.5)/2 - 0.5 = [-0.25, 0.25, 0.75, 1.25], clamped at the edges
    x = np.array([[0.0, 10.0]], np.float32)
    (y,) = resize(x, None, np.array([1, 2], np.float32), None, mode="linear")
    np.testing.assert_allclose(y, [[0, 2.5, 7.5, 10]])


def test_resize_nearest_round_prefer_floor() -> None:
    # asymmetric coords x / 2 = [0, .5, 1, 1.5]; .5 rounds down, 1.5 rounds down -> [0, 0, 1, 1]
    x = np.array([[5.0, 7.0]], np.float32)
    (y,) = resize(
        x, None, np.array([1, 2], np.float32), None, coordinate_transformation_mode="asymmetric"
    )
    np.testing.assert_array_equal(y, [[5, 5, 7, 7]])


def test_attention_by_hand() -> None:
    # scale 1/sqrt(2): scores [0, ln 3] -> probs [1/4, 3/4] -> y = 4/4 + 3*8/4 = 7
    q = np.array([[[[1.0, 0.0]]]], np.float32)
    k = np.array([[[[0.0, 0.0], [math.log(3) * math.sqrt(2), 0.0]]]], np.float32)
    v = np.array([[[[4.0], [8.0]]]], np.float32)
    np.testing.assert_allclose(attention_v23(q, k, v)[0], [[[[7.0]]]], rtol=1e-6)
    # causal with one query and no past: only key 0 is visible -> y = 4
    np.testing.assert_allclose(attention_v23(q, k, v, is_causal=1)[0], [[[[4.0]]]])
    # an all-false boolean mask row gives zeros, not NaN
    mask = np.zeros((1, 2), dtype=bool)
    np.testing.assert_array_equal(attention_v23(q, k, v, mask)[0], [[[[0.0]]]])


def test_erf_matches_math_erf() -> None:
    x = np.array([-4.0, -1.0, 0.0, 0.5, 1.0, 2.4, 2.6, 3.0, 7.0])
    np.testing.assert_allclose(erf(x), [math.erf(v) for v in x], rtol=1e-14, atol=1e-15)


def test_dropout_inference_is_identity_with_true_mask() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y, mask = dropout(x, np.float32(0.3))
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == bool and mask.all()


def test_dropout_training_scales_kept_values() -> None:
    x = np.ones((1000,), np.float32)
    y, mask = dropout(x, np.float32(0.25), np.bool_(True), seed=3)
    np.testing.assert_allclose(y[mask], 1 / 0.75)
    assert not y[~mask].any() and 0.65 < mask.mean() < 0.85


def test_activations_at_infinities_and_nan() -> None:
    from partitioner.executor.kernels.nn_activation import celu, elu, leaky_relu, prelu, relu, selu

    x = np.array([-np.inf, -1.0, 0.0, 2.0, np.inf, np.nan], np.float32)
    e1 = math.expm1(-1.0)
    np.testing.assert_array_equal(relu(x)[0], [0, 0, 0, 2, np.inf, np.nan])
    np.testing.assert_allclose(leaky_relu(x, alpha=0.1)[0], [-np.inf, -0.1, 0, 2, np.inf, np.nan])
    np.testing.assert_allclose(
        prelu(x, np.float32([0.5]))[0], [-np.inf, -0.5, 0, 2, np.inf, np.nan]
    )
    np.testing.assert_allclose(elu(x, alpha=2.0)[0], [-2, 2 * e1, 0, 2, np.inf, np.nan], rtol=1e-6)
    np.testing.assert_allclose(celu(x, alpha=1.0)[0], [-1, e1, 0, 2, np.inf, np.nan], rtol=1e-6)
    gamma_alpha = 1.05070102214813232421875 * 1.67326319217681884765625
    np.testing.assert_allclose(
        selu(x)[0], [-gamma_alpha, gamma_alpha * e1, 0, 2 * 1.0507010221, np.inf, np.nan], rtol=1e-6
    )


def test_relu_keeps_integer_dtype() -> None:
    from partitioner.executor.kernels.nn_activation import relu

    (y,) = relu(np.array([-3, 0, 5], np.int8))
    assert y.dtype == np.int8
    np.testing.assert_array_equal(y, [0, 0, 5])


def test_max_pool_skips_indices_when_the_node_has_one_output() -> None:
    from types import SimpleNamespace

    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    one = max_pool(x, kernel_shape=[2, 2], strides=[2, 2], ctx=SimpleNamespace(num_outputs=1))
    both = max_pool(x, kernel_shape=[2, 2], strides=[2, 2], ctx=SimpleNamespace(num_outputs=2))
    assert len(one) == 1 and len(both) == 2
    np.testing.assert_array_equal(one[0], [[[[5, 7], [13, 15]]]])  # bottom-right of each 2x2
    np.testing.assert_array_equal(both[1], [[[[5, 7], [13, 15]]]])  # = their flat indices
