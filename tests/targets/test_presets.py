"""Presets: sourced numbers, derivations from HARDWARE.md, canonical form and hashes."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from targets import (
    ALIASES,
    GpuTarget,
    TargetError,
    WaferTarget,
    get_preset,
    list_presets,
    preset_names,
    target_from_dict,
)

ALL = preset_names()
GPU_FAMILIES = {
    # name: (HBM bytes, HBM B/s, dense bf16 FLOP/s, NVLink per direction B/s, host PCIe B/s, W)
    "a100": (80e9, 2.039e12, 312e12, 300e9, 32e9, 400),
    "h100": (80e9, 3.35e12, 989e12, 450e9, 64e9, 700),
    "h200": (141e9, 4.8e12, 989e12, 450e9, 64e9, 700),
    "b200": (180e9, 8e12, 2250e12, 900e9, 64e9, 1000),
}


def test_expected_presets_exist() -> None:
    for family in GPU_FAMILIES:
        for count in (1, 2, 4, 8, 16, 32):
            assert f"{family}x{count}" in ALL
    for name in ("h100x8-pcie", "wse2", "wse2x2", "wse2x4", "wse3", "wse3x2", "wse3x4", "wse3x8"):
        assert name in ALL
    assert len(ALL) == len(set(ALL))


@pytest.mark.parametrize("family", sorted(GPU_FAMILIES))
def test_gpu_datasheet_numbers(family: str) -> None:
    hbm, hbm_bw, bf16, nvlink, pcie, power = GPU_FAMILIES[family]
    target = get_preset(f"{family}x8")
    assert isinstance(target, GpuTarget)
    device = target.devices[0]
    assert device.hbm_bytes == hbm
    assert device.hbm_bandwidth_bytes_per_s == hbm_bw
    assert device.peak_flops_per_s["bfloat16"] == bf16
    assert device.power_w == power
    assert device.usd_per_hour is not None and 2 <= device.usd_per_hour <= 7  # the sourced range
    # NVLink is quoted bidirectional; the link holds half, per direction
    assert target.intra_node_link.bandwidth_bytes_per_s == nvlink
    assert target.host_link.bandwidth_bytes_per_s == pcie
    # IB NDR 400 Gb/s per GPU = 50 GB/s per direction
    assert target.inter_node_link.bandwidth_bytes_per_s == 50e9


def test_measured_efficiencies_apply_to_every_gpu() -> None:
    for name in ALL:
        target = get_preset(name)
        if isinstance(target, GpuTarget):
            for device in target.devices:
                assert device.eta_compute == pytest.approx(788 / 989)
                assert device.eta_memory == pytest.approx(4.3 / 4.8)
            for link in (target.intra_node_link, target.inter_node_link, target.host_link):
                assert link.efficiency == pytest.approx(380 / 450)
    # H100/H200: 989 TF × 788/989 = the 788 TF/s measured on the H200
    h200 = get_preset("h200x1").devices[0]
    assert h200.peak_flops_for("bfloat16") * h200.eta_compute == pytest.approx(788e12)
    # NVLink: 450 GB/s × 380/450 = the ~380 GB/s measured one-way
    assert get_preset("h100x8").intra_node_link.effective_bandwidth_bytes_per_s == pytest.approx(
        380e9
    )


def test_multi_node_presets() -> None:
    target = get_preset("h100x16")
    assert isinstance(target, GpuTarget)
    assert (target.num_devices, target.gpus_per_node, target.num_nodes) == (16, 8, 2)
    assert target.node_of(7) == 0 and target.node_of(8) == 1
    assert target.link_between(0, 7) is target.intra_node_link
    assert target.link_between(7, 8) is target.inter_node_link
    h100x32 = get_preset("h100x32")
    assert isinstance(h100x32, GpuTarget)
    assert h100x32.num_nodes == 4
    a100x4 = get_preset("a100x4")
    assert isinstance(a100x4, GpuTarget)
    assert (a100x4.num_devices, a100x4.num_nodes) == (4, 1)


def test_pcie_only_variant() -> None:
    target = get_preset("h100x8-pcie")
    assert isinstance(target, GpuTarget)
    assert target.intra_node_link.name.startswith("PCIe Gen5")
    assert target.intra_node_link.bandwidth_bytes_per_s == 64e9
    device = target.devices[0]
    # H100 PCIe datasheet: 1,513 TF bf16 with sparsity -> 756.5 dense; 2,000 GB/s; 350 W
    assert device.peak_flops_per_s["bfloat16"] == 756.5e12
    assert device.hbm_bandwidth_bytes_per_s == 2.0e12
    assert device.power_w == 350


def test_wafer_numbers() -> None:
    wse2, wse3 = get_preset("wse2"), get_preset("wse3")
    assert isinstance(wse2, WaferTarget) and isinstance(wse3, WaferTarget)
    assert (wse2.wafer.width_cores, wse2.wafer.height_cores) == (757, 996)
    assert (wse3.wafer.width_cores, wse3.wafer.height_cores) == (762, 1176)
    for target, lanes in ((wse2, 4), (wse3, 8)):
        wafer = target.wafer
        assert wafer.sram_bytes_per_core == 48 * 1024
        assert wafer.fmac_lanes_per_cycle == {"float16": lanes}
        assert wafer.clock_hz == 0.85e9
        assert (wafer.link_bytes_per_cycle, wafer.hop_latency_cycles) == (4, 1)
    # 12 × 100 GbE = 1.2 Tb/s = 150 GB/s between systems
    for name, count in (("wse3x2", 2), ("wse3x4", 4), ("wse3x8", 8), ("wse2x4", 4)):
        target = get_preset(name)
        assert isinstance(target, WaferTarget)
        assert target.num_wafers == count
        assert target.inter_wafer_link.bandwidth_bytes_per_s == 150e9


def test_fabric_bandwidth_derivation_matches_the_vendor_claims() -> None:
    # 850k PEs × 4 links × 32 bit × 2 directions × 1 GHz = 217.6 Pb/s ≈ 220 Pb/s claimed
    wse2 = get_preset("wse2")
    assert isinstance(wse2, WaferTarget)
    bits_per_link_cycle = wse2.wafer.link_bytes_per_cycle * 8
    assert 850_000 * 4 * bits_per_link_cycle * 2 * 1e9 == pytest.approx(217.6e15)
    # at the preset clock the derivation stays within 20% of the claims (220 and 214 Pb/s)
    for name, pes, claim in (("wse2", 850_000, 220e15), ("wse3", 900_000, 214e15)):
        target = get_preset(name)
        assert isinstance(target, WaferTarget)
        derived = pes * 4 * bits_per_link_cycle * 2 * target.wafer.clock_hz
        assert 0.8 * claim < derived < 1.2 * claim


def test_sram_totals_match_the_vendor_claims() -> None:
    # 850k × 48 KiB = 41.8 GB ≈ 40 GB [V]; 900k × 48 KiB = 44.2 GB ≈ 44 GB [V]
    wse2_sram_bytes, wse3_sram_bytes = 850_000 * 48 * 1024, 900_000 * 48 * 1024
    assert wse2_sram_bytes == pytest.approx(40e9, rel=0.05)
    assert wse3_sram_bytes == pytest.approx(44e9, rel=0.01)


def test_wse3_dense_fp16_peak_lands_in_the_derived_range() -> None:
    wse3 = get_preset("wse3")
    assert isinstance(wse3, WaferTarget)
    # 896,112 PEs × 8 lanes × 2 FLOP × 0.85 GHz = 12.19 PF, in the 12–16 PF range [D]
    peak = wse3.wafer.peak_flops_per_s("float16")
    assert peak == pytest.approx(896_112 * 8 * 2 * 0.85e9)
    assert 12e15 <= peak <= 16e15


def test_aliases() -> None:
    assert ALIASES == {"gpu": "h100x8", "wafer": "wse3"}
    assert get_preset("gpu") is get_preset("h100x8")
    assert get_preset("wafer") is get_preset("wse3")


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(TargetError) as raised:
        get_preset("h100x7")
    message = str(raised.value)
    assert "unknown target 'h100x7'" in message
    assert "h100x8" in message and "wse3x4" in message and "gpu -> h100x8" in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ALL)
def test_canonical_round_trip_and_hash(name: str) -> None:
    target = get_preset(name)
    canonical = target.to_dict()
    assert next(iter(canonical)) == "kind"
    text = json.dumps(canonical)  # JSON-able
    assert target_from_dict(json.loads(text)) == target
    assert type(target).from_dict(canonical) == target
    expected = hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert target.sha256 == expected
    assert target_from_dict(json.loads(text)).sha256 == expected


def test_canonical_form_is_pinned(tiny2: WaferTarget) -> None:
    # Plans store target.sha256, so the canonical form must not drift by accident.
    # Change this golden text (and the hash) only on purpose.
    golden = (
        '{"description":"","host_link":{"bandwidth_bytes_per_s":1000000000.0,"efficiency":1.0,'
        '"latency_s":0.0,"name":"host"},"inter_wafer_link":{"bandwidth_bytes_per_s":10000000000.0,'
        '"efficiency":0.5,"latency_s":1e-06,"name":"net"},"kind":"wafer","name":"tiny2",'
        '"num_wafers":2,"wafer":{"clock_hz":1000000000.0,"eta_compute":0.5,'
        '"fallback_lanes_dtype":null,"fmac_lanes_per_cycle":{"float16":4},"height_cores":16,'
        '"hop_latency_cycles":1.0,"link_bytes_per_cycle":4.0,"name":"tiny","power_w":null,'
        '"sram_bytes_per_core":1024,"sram_reserve_bytes_per_core":256,"usd_per_hour":null,'
        '"width_cores":16}}'
    )
    assert json.dumps(tiny2.to_dict(), sort_keys=True, separators=(",", ":")) == golden
    assert tiny2.sha256 == hashlib.sha256(golden.encode()).hexdigest()
    assert tiny2.sha256 == "981df1bd5c4b33521632104bce4efb6880f65e576533edbd9ef9508bb9dfc218"


def test_hash_changes_when_any_field_changes() -> None:
    wse3 = get_preset("wse3")
    assert isinstance(wse3, WaferTarget)
    faster = dataclasses.replace(wse3, wafer=dataclasses.replace(wse3.wafer, clock_hz=1.1e9))
    assert faster.sha256 != wse3.sha256
    h100 = get_preset("h100x8")
    assert isinstance(h100, GpuTarget)
    cheaper_link = dataclasses.replace(
        h100, host_link=dataclasses.replace(h100.host_link, latency_s=1e-6)
    )
    assert cheaper_link.sha256 != h100.sha256
    # same content, same hash, across separately built objects
    assert target_from_dict(h100.to_dict()).sha256 == h100.sha256
    assert len({get_preset(n).sha256 for n in ALL}) == len(ALL)


def test_list_presets() -> None:
    infos = list_presets()
    assert [info.name for info in infos] == ALL
    by_name = {info.name: info for info in infos}
    h100x8 = by_name["h100x8"]
    assert h100x8.kind == "gpu" and h100x8.aliases == ("gpu",)
    assert (h100x8.num_devices, h100x8.memory_per_device_bytes) == (8, 80e9)
    assert h100x8.total_memory_bytes == 640e9
    assert (h100x8.peak_dtype, h100x8.peak_flops_per_s) == ("bfloat16", 8 * 989e12)
    assert h100x8.memory_bandwidth_bytes_per_s == 3.35e12
    assert h100x8.interconnect_bytes_per_s == 450e9
    assert h100x8.sha256 == get_preset("h100x8").sha256
    wse3x4 = by_name["wse3x4"]
    # per wafer: 896,112 × 48 KiB of SRAM; the peak is fp16 FMAC, summed over 4 wafers
    assert wse3x4.memory_per_device_bytes == 896_112 * 48 * 1024
    assert wse3x4.total_memory_bytes == 4 * 896_112 * 48 * 1024
    assert wse3x4.peak_dtype == "float16"
    assert wse3x4.peak_flops_per_s == pytest.approx(4 * 896_112 * 8 * 2 * 0.85e9)
    assert wse3x4.memory_bandwidth_bytes_per_s is None
    assert wse3x4.interconnect_bytes_per_s == 150e9
    rows = json.loads(json.dumps([info.to_dict() for info in infos]))
    assert rows[0]["name"] == ALL[0] and isinstance(rows[0]["aliases"], list)
