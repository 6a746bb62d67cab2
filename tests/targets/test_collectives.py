"""Collective costs (tensor parallelism): the ring formulas and `GpuCostModel`'s group pricing.

Every expected value is worked out by hand in the comment beside it.
"""

from __future__ import annotations

import math

import pytest

from targets import (
    COLLECTIVE_KINDS,
    CostModel,
    GpuCostModel,
    GpuTarget,
    Link,
    all_gather_s,
    all_reduce_s,
    collective_bytes_sent,
    collective_s,
    get_preset,
    reduce_scatter_s,
)
from targets import cost as cost_module

# busbw 80 GB/s, 10 µs per call (the point-to-point figures play no part)
RING = Link("ring", 100e9, 1.0, 0.0, 80e9, 10e-6)
MB8 = 8e6


def test_the_formulas_are_re_exported_by_targets_cost() -> None:
    for name in (
        "all_reduce_s",
        "all_gather_s",
        "reduce_scatter_s",
        "collective_s",
        "collective_bytes_sent",
    ):
        assert getattr(cost_module, name) is globals()[name]
    assert cost_module.COLLECTIVE_KINDS == COLLECTIVE_KINDS
    assert COLLECTIVE_KINDS == ("all_reduce", "all_gather", "reduce_scatter")


def test_all_reduce_by_hand() -> None:
    # n=4: 2·3/4 = 1.5; 1.5 × 8e6 B = 12e6 B; / 80e9 B/s = 150 µs; + 10 µs = 160 µs
    assert all_reduce_s(MB8, 4, RING) == pytest.approx(160e-6, rel=1e-12)
    # n=2: 2·1/2 = 1; 8e6 / 80e9 = 100 µs; + 10 µs = 110 µs
    assert all_reduce_s(MB8, 2, RING) == pytest.approx(110e-6, rel=1e-12)
    # n=8: 2·7/8 = 1.75; 14e6 / 80e9 = 175 µs; + 10 µs = 185 µs
    assert all_reduce_s(MB8, 8, RING) == pytest.approx(185e-6, rel=1e-12)


def test_all_gather_and_reduce_scatter_by_hand() -> None:
    # n=4: 3/4 × 8e6 B = 6e6 B; / 80e9 = 75 µs; + 10 µs = 85 µs
    assert all_gather_s(MB8, 4, RING) == pytest.approx(85e-6, rel=1e-12)
    assert reduce_scatter_s(MB8, 4, RING) == pytest.approx(85e-6, rel=1e-12)
    # n=8: 7/8 × 8e6 = 7e6 B; / 80e9 = 87.5 µs; + 10 µs = 97.5 µs
    assert all_gather_s(MB8, 8, RING) == pytest.approx(97.5e-6, rel=1e-12)
    assert reduce_scatter_s(MB8, 8, RING) == pytest.approx(97.5e-6, rel=1e-12)


def test_an_all_reduce_is_a_reduce_scatter_then_an_all_gather() -> None:
    # same bus bytes (2 × 3/4 × 8e6 = 12e6), but one call's latency instead of two:
    # 150 µs + 10 µs = 160 µs against (75 + 10) + (75 + 10) = 170 µs
    split_s = reduce_scatter_s(MB8, 4, RING) + all_gather_s(MB8, 4, RING)
    assert split_s - all_reduce_s(MB8, 4, RING) == pytest.approx(10e-6, rel=1e-9)


def test_the_busbw_is_what_nccl_tests_report() -> None:
    # nccl-tests: algbw = size / time, busbw = algbw × 2(n−1)/n for an all-reduce.
    # Feeding a time from the formula (latency 0) back gives the link's busbw.
    link = Link("l", 450e9, 1.0, 0.0, 370e9, 0.0)
    size_bytes, n = 1 << 30, 8
    time_s = all_reduce_s(size_bytes, n, link)
    assert size_bytes / time_s * 2 * (n - 1) / n == pytest.approx(370e9, rel=1e-12)
    time_s = all_gather_s(size_bytes, n, link)
    assert size_bytes / time_s * (n - 1) / n == pytest.approx(370e9, rel=1e-12)


def test_bytes_each_device_sends_by_hand() -> None:
    # all-reduce over 4: 2·3/4 × 8e6 B = 12e6 B; over 2: 2·1/2 × 1,000 B = 1,000 B
    assert collective_bytes_sent("all_reduce", MB8, 4) == pytest.approx(12e6, rel=1e-12)
    assert collective_bytes_sent("all_reduce", 1_000, 2) == 1_000
    # all-gather and reduce-scatter over 8: 7/8 × 8e6 B = 7e6 B
    assert collective_bytes_sent("all_gather", MB8, 8) == pytest.approx(7e6, rel=1e-12)
    assert collective_bytes_sent("reduce_scatter", MB8, 8) == pytest.approx(7e6, rel=1e-12)
    # one device sends nothing; neither does an empty tensor
    assert collective_bytes_sent("all_reduce", MB8, 1) == 0.0
    assert collective_bytes_sent("all_gather", 0, 4) == 0.0


def test_the_bytes_sent_are_what_the_time_divides_by_the_busbw() -> None:
    # all-reduce over 4: (160 µs − 10 µs latency) × 80 GB/s = 12e6 B, the bytes sent
    for kind in COLLECTIVE_KINDS:
        bandwidth_s = collective_s(kind, MB8, 4, RING) - RING.collective_latency_s
        assert collective_bytes_sent(kind, MB8, 4) == pytest.approx(bandwidth_s * 80e9)


@pytest.mark.parametrize(
    ("kind", "nbytes", "n", "match"),
    [
        ("all_to_all", MB8, 4, "unknown collective kind 'all_to_all'"),
        ("all_reduce", MB8, 0, "n must be a whole number of devices >= 1"),
        ("all_reduce", -1.0, 4, "nbytes must be a finite number >= 0"),
    ],
)
def test_bytes_sent_refuses_bad_input(kind: str, nbytes: float, n: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        collective_bytes_sent(kind, nbytes, n)


def test_one_device_or_no_bytes_costs_nothing() -> None:
    for formula in (all_reduce_s, all_gather_s, reduce_scatter_s):
        assert formula(MB8, 1, RING) == 0.0  # one device: no call
        assert formula(0, 4, RING) == 0.0  # nothing to send: no call


@pytest.mark.parametrize("n", [0, -2, 1.5, True, "4"])
def test_bad_device_counts_are_refused(n: object) -> None:
    with pytest.raises(ValueError, match="n must be a whole number of devices >= 1"):
        all_reduce_s(MB8, n, RING)  # type: ignore[arg-type]


@pytest.mark.parametrize("nbytes", [-1.0, math.nan, math.inf])
def test_bad_byte_counts_are_refused(nbytes: float) -> None:
    with pytest.raises(ValueError, match="nbytes must be a finite number >= 0"):
        all_gather_s(nbytes, 4, RING)


def test_collective_s_dispatches_on_kind() -> None:
    assert collective_s("all_reduce", MB8, 4, RING) == all_reduce_s(MB8, 4, RING)
    assert collective_s("all_gather", MB8, 4, RING) == all_gather_s(MB8, 4, RING)
    assert collective_s("reduce_scatter", MB8, 4, RING) == reduce_scatter_s(MB8, 4, RING)
    for kind in ("all_to_all", "allreduce", "", None):
        with pytest.raises(ValueError) as raised:
            collective_s(kind, MB8, 4, RING)  # type: ignore[arg-type]
        assert "all_reduce, all_gather, reduce_scatter" in str(raised.value)


def test_group_link_is_nvlink_in_a_node_else_the_network(gpu4: GpuTarget) -> None:
    # gpu4: 2 GPUs a node -> devices 0,1 in node 0 and 2,3 in node 1
    cost = CostModel(gpu4)
    assert isinstance(cost, GpuCostModel)
    assert cost.group_link([0, 1]) is gpu4.intra_node_link
    assert cost.group_link([3, 2]) is gpu4.intra_node_link
    assert cost.group_link([2]) is gpu4.intra_node_link
    assert cost.group_link([1, 2]) is gpu4.inter_node_link
    assert cost.group_link(range(4)) is gpu4.inter_node_link


def test_collective_time_inside_one_node_by_hand(gpu4: GpuTarget) -> None:
    # gpu4's intra link gives no collective fields: busbw = 100 GB/s × 0.5 = 50 GB/s, 1 µs.
    cost = CostModel(gpu4)
    # all-reduce of 1 MB over 2: 2·1/2 × 1e6 = 1e6 B; / 50e9 = 20 µs; + 1 µs = 21 µs
    assert cost.collective_time_s("all_reduce", 1e6, [0, 1]) == pytest.approx(21e-6, rel=1e-12)
    # all-gather: 1/2 × 1e6 = 0.5e6 B; / 50e9 = 10 µs; + 1 µs = 11 µs
    assert cost.collective_time_s("all_gather", 1e6, [2, 3]) == pytest.approx(11e-6, rel=1e-12)
    assert cost.collective_time_s("reduce_scatter", 1e6, (3, 2)) == pytest.approx(11e-6)
    assert cost.collective_time_s("all_reduce", 1e6, [3]) == 0.0  # one GPU: no call


def test_collective_time_of_a_group_spanning_two_nodes_by_hand(gpu4: GpuTarget) -> None:
    # The ring crosses the network, inter: 10 GB/s × 1.0, 10 µs (derived collective fields).
    cost = CostModel(gpu4)
    # all-reduce of 1 MB over 4: 2·3/4 × 1e6 = 1.5e6 B; / 10e9 = 150 µs; + 10 µs = 160 µs
    assert cost.collective_time_s("all_reduce", 1e6, range(4)) == pytest.approx(160e-6)
    # all-gather over 4: 3/4 × 1e6 = 0.75e6 B; / 10e9 = 75 µs; + 10 µs = 85 µs
    assert cost.collective_time_s("all_gather", 1e6, [0, 1, 2, 3]) == pytest.approx(85e-6)
    # reduce-scatter over 2 in different nodes: 1/2 × 1e6 / 10e9 = 50 µs; + 10 µs = 60 µs
    assert cost.collective_time_s("reduce_scatter", 1e6, [1, 2]) == pytest.approx(60e-6)
    # the same pair inside one node pays 10 µs + 1 µs = 11 µs: the network bounds the ring
    assert cost.collective_time_s("reduce_scatter", 1e6, [0, 1]) == pytest.approx(11e-6)


def test_unknown_kind_names_the_kinds(gpu4: GpuTarget) -> None:
    with pytest.raises(ValueError) as raised:
        CostModel(gpu4).collective_time_s("all_to_all", 1e6, [0, 1])
    message = str(raised.value)
    assert "'all_to_all'" in message
    assert "all_reduce, all_gather, reduce_scatter" in message


@pytest.mark.parametrize(
    ("devices", "match"),
    [
        ([], "at least one device"),
        ([0, 0], "devices must differ"),
        ([0, 4], "device 4 is not in 0..3"),
        ([-1, 0], "device -1 is not in 0..3"),
    ],
)
def test_bad_groups_are_refused(gpu4: GpuTarget, devices: list[int], match: str) -> None:
    cost = CostModel(gpu4)
    assert isinstance(cost, GpuCostModel)
    with pytest.raises(ValueError, match=match):
        cost.collective_time_s("all_reduce", 1e6, devices)
    with pytest.raises(ValueError, match=match):
        cost.group_link(devices)


def test_h100_presets_by_hand() -> None:
    # h100x8, NVLink4: busbw 370 GB/s, 33 µs. 1 GiB all-reduce over 8:
    # 2·7/8 × 2^30 B = 1,879,048,192 B; / 370e9 = 5.0785 ms; + 33 µs = 5.1115 ms
    h100x8 = CostModel(get_preset("h100x8"))
    expected_s = 1.75 * 2**30 / 370e9 + 33e-6
    assert expected_s == pytest.approx(5.1115e-3, rel=1e-4)
    assert h100x8.collective_time_s("all_reduce", 2**30, range(8)) == pytest.approx(expected_s)
    # h100x16, TP16 across both nodes, over IB: busbw 50 GB/s × 380/450 = 42.22 GB/s, 33 µs.
    # 16 KiB all-reduce: 2·15/16 × 16,384 B = 30,720 B; / 42.22e9 = 0.7276 µs; + 33 µs
    h100x16 = CostModel(get_preset("h100x16"))
    expected_s = 30_720 / (50e9 * 380 / 450) + 33e-6
    assert expected_s == pytest.approx(33.7276e-6, rel=1e-5)
    assert h100x16.collective_time_s("all_reduce", 16_384, range(16)) == pytest.approx(expected_s)
    # the same call inside one node: 2·7/8 × 16,384 = 28,672 B; / 370e9 = 0.0775 µs; + 33 µs
    assert h100x16.collective_time_s("all_reduce", 16_384, range(8, 16)) == pytest.approx(
        33.0775e-6, rel=1e-5
    )


def test_megatron_decode_is_latency_bound_on_h100x8_tp8() -> None:
    """Llama-70B-like decode at batch 1 on h100x8, TP8: 80 layers × 2 all-reduces a token.

    Each all-reduce carries batch · seq · hidden · bytes = 1 · 1 · 8192 · 2 = 16,384 B.
    """
    target = get_preset("h100x8")
    assert isinstance(target, GpuTarget)
    cost = CostModel(target)
    assert isinstance(cost, GpuCostModel)
    layers, all_reduces_per_layer, call_bytes = 80, 2, 1 * 1 * 8192 * 2
    calls = layers * all_reduces_per_layer
    assert (calls, call_bytes) == (160, 16 * 1024)
    per_call_s = cost.collective_time_s("all_reduce", call_bytes, range(8))
    per_token_s = calls * per_call_s
    # per call: 2·7/8 × 16,384 B = 28,672 B; / 370e9 B/s = 0.077492 µs; + 33 µs = 33.077492 µs
    assert per_call_s == pytest.approx(33.077492e-6, rel=1e-7)
    # per token: 160 × 33.077492 µs = 5,292.3987 µs ≈ 5.29 ms
    assert per_token_s == pytest.approx(5.2923987e-3, rel=1e-7)
    # the floor: 160 × 33 µs = 5.28 ms, whatever the bandwidth
    latency_s = target.intra_node_link.collective_latency_s
    assert latency_s == 33e-6
    floor_s = calls * latency_s
    assert floor_s == pytest.approx(5.28e-3)
    assert per_token_s >= floor_s
    # bandwidth adds 160 × 0.0775 µs = 12.4 µs, 0.23% of the total: the latency is the cost
    assert (per_token_s - floor_s) / per_token_s == pytest.approx(0.0023427, rel=1e-3)
