"""Wafer region compute, SRAM and fabric times, worked by hand on a tiny grid."""

from __future__ import annotations

import dataclasses

import pytest

from targets import CostModel, TargetError, WaferTarget, get_preset
from tests.targets.builders import tiny_wafer


def test_region_compute_with_mesh_term(tiny2: WaferTarget) -> None:
    cost = CostModel(tiny2)
    # 8×4 = 32 cores × 4 lanes × 2 FLOP × 1e9 Hz × η 0.5 = 128e9 FLOP/s
    # 1.28e6 FLOP / 128e9 = 1e-5 s
    # mesh: 2 matmuls × (8 + 4) hops × 1 cycle / 1e9 Hz = 24e-9 s
    assert cost.region_compute_s(1.28e6, 8, 4, "float16", num_matmuls=2) == pytest.approx(
        1.0024e-5, rel=1e-12
    )
    assert cost.region_compute_s(1.28e6, 8, 4, "float16") == pytest.approx(1e-5, rel=1e-12)
    # the mesh term alone, for a region with nothing to compute
    assert cost.region_compute_s(0, 16, 16, "float16", num_matmuls=1) == pytest.approx(32e-9)


def test_more_cores_less_compute_but_more_mesh_latency(tiny2: WaferTarget) -> None:
    cost = CostModel(tiny2)
    # 2×2: 1.28e6 / (4×4×2×1e9×0.5 = 16e9) = 8e-5, + (2+2)e-9
    # 16×16: 1.28e6 / (256×4e9 = 1.024e12) = 1.25e-6, + 32e-9
    assert cost.region_compute_s(1.28e6, 2, 2, "float16", 1) == pytest.approx(8e-5 + 4e-9)
    assert cost.region_compute_s(1.28e6, 16, 16, "float16", 1) == pytest.approx(1.25e-6 + 32e-9)


def test_region_must_fit_the_grid(tiny2: WaferTarget) -> None:
    cost = CostModel(tiny2)
    with pytest.raises(ValueError, match="17x1"):
        cost.region_compute_s(1.0, 17, 1, "float16")
    with pytest.raises(ValueError):
        cost.region_sram_bytes(0, 4)


def test_dtype_without_lanes_is_an_error_unless_a_fallback_is_named(tiny2: WaferTarget) -> None:
    cost = CostModel(tiny2)
    with pytest.raises(TargetError, match=r"wafer 'tiny' has no rate for dtype 'float32'"):
        cost.region_compute_s(1.0, 1, 1, "float32")
    fallback = dataclasses.replace(tiny2, wafer=tiny_wafer(fallback_lanes_dtype="float16"))
    assert CostModel(fallback).region_compute_s(1.28e6, 8, 4, "float32") == pytest.approx(1e-5)


def test_sram_and_cores_needed(tiny2: WaferTarget) -> None:
    cost = CostModel(tiny2)
    # usable per core: 1024 − 256 = 768 B; 8×4 region: 32 × 768 = 24576 B
    assert cost.region_sram_bytes(8, 4) == 24576
    assert cost.cores_needed(24576) == 32
    assert cost.cores_needed(24577) == 33
    assert cost.cores_needed(1) == 1
    assert cost.cores_needed(0) == 0
    # a whole wafer: 256 × 768
    assert cost.capacity_bytes(1) == 196608


def test_fabric_link_and_transfer_times(tiny2: WaferTarget) -> None:
    cost = CostModel(tiny2)
    # one link moves 4 B/cycle × 1e9 Hz = 4e9 B/s: 4000 B in 1e-6 s
    assert cost.link_time_s(4000) == pytest.approx(1e-6)
    # 3 hops × 1 cycle / 1e9 + 4000 B / (4 links × 4e9 B/s) = 3e-9 + 2.5e-7
    assert cost.fabric_transfer_s(4000, hops=3, boundary_links=4) == pytest.approx(2.53e-7)
    assert cost.fabric_transfer_s(0, hops=3, boundary_links=4) == 0.0
    assert cost.hop_latency_s(3) == pytest.approx(3e-9)  # the latency part alone
    with pytest.raises(ValueError):
        cost.fabric_transfer_s(4000, hops=3, boundary_links=0)


def test_inter_wafer_and_host_transfers(tiny2: WaferTarget) -> None:
    cost = CostModel(tiny2)
    # 1 µs + 1e9 B / (10e9 × 0.5) = 0.2 s
    assert cost.inter_wafer_transfer_s(1e9) == pytest.approx(0.200001, rel=1e-12)
    # 0 µs + 1e9 / 1e9 = 1 s
    assert cost.host_transfer_s(1e9) == pytest.approx(1.0)


def test_wse3_presets_use_12x100gbe_between_systems() -> None:
    cost = CostModel(get_preset("wse3x4"))
    # 150 GB/s × 380/450 = 126.67 GB/s; 1.5e9 B -> 11.84 ms, + 10 µs
    assert cost.inter_wafer_transfer_s(1.5e9) == pytest.approx(10e-6 + 1.5e9 / (150e9 * 380 / 450))


def test_wse3_whole_wafer_region() -> None:
    cost = CostModel(get_preset("wse3"))
    # 762 × 1176 = 896,112 cores × 8 lanes × 2 × 0.85e9 Hz × (788/989) = 9.71e15 FLOP/s
    rate = 896_112 * 8 * 2 * 0.85e9 * 788 / 989
    # one matmul across the wafer: (762 + 1176) cycles / 0.85e9 Hz = 2.28 µs
    mesh = (762 + 1176) / 0.85e9
    assert cost.region_compute_s(1e15, 762, 1176, "float16", 1) == pytest.approx(1e15 / rate + mesh)
    # bfloat16 has no published lane count: the preset's fallback uses the float16 lanes
    assert cost.region_compute_s(1e15, 762, 1176, "bfloat16", 1) == pytest.approx(
        1e15 / rate + mesh
    )
    # usable SRAM: 896,112 × (48 KiB − 6 KiB reserve)
    assert cost.capacity_bytes(0) == 896_112 * 42 * 1024


def test_route_helpers_are_exposed_on_the_model(tiny2: WaferTarget) -> None:
    cost = CostModel(tiny2)
    assert cost.manhattan_hops((0, 0), (2, 1)) == 3
    assert cost.xy_route((0, 0), (1, 0)) == [((0, 0), (1, 0))]


def test_price_unknown_without_one_known_when_set(tiny2: WaferTarget) -> None:
    assert CostModel(get_preset("wse2x2")).usd_per_token(100.0) is None  # no CS-2 price
    priced = dataclasses.replace(tiny2, wafer=tiny_wafer(usd_per_hour=36.0, power_w=20_000.0))
    cost = CostModel(priced)
    # 2 wafers × $36/h = $72/h at 1000 tokens/s: 72 / 3600 / 1000 = 2e-5
    assert cost.usd_per_token(1000.0) == pytest.approx(2e-5)
    assert cost.usd_per_hour([1]) == pytest.approx(36.0)
    # 2 × 20 kW at 1000 tokens/s = 40 J/token
    assert cost.joules_per_token(1000.0) == pytest.approx(40.0)


def test_link_busy_excludes_latency() -> None:
    from targets.cost import link_busy_s
    from targets.gpu import Link

    # 1 GB over 100 GB/s at 0.5 efficiency = 1e9 / 5e10 = 0.02 s, whatever the latency
    link = Link("l", 100e9, 0.5, 1e-3)
    assert link_busy_s(1e9, link) == pytest.approx(0.02)
