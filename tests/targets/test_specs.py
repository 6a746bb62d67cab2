"""Spec dataclasses: derived figures, topology, dtype lookup, validation, immutability."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from targets import (
    GpuTarget,
    Link,
    TargetError,
    WaferTarget,
    canonical_dtype,
    get_preset,
)
from targets._fields import FieldError
from tests.targets.builders import round_gpu, tiny_wafer


def test_link_effective_bandwidth() -> None:
    # 450 GB/s × 0.8 = 360 GB/s
    assert Link("l", 450e9, 0.8, 0.0).effective_bandwidth_bytes_per_s == pytest.approx(360e9)


def test_gpu_topology(gpu4: GpuTarget) -> None:
    assert (gpu4.num_devices, gpu4.num_nodes) == (4, 2)
    assert [gpu4.node_of(d) for d in range(4)] == [0, 0, 1, 1]
    assert gpu4.link_between(1, 1) is None
    assert gpu4.link_between(0, 1) is gpu4.intra_node_link
    assert gpu4.link_between(1, 2) is gpu4.inter_node_link
    assert gpu4.link_between(-1, 2) is gpu4.host_link
    assert gpu4.link_between(2, -1) is gpu4.host_link
    with pytest.raises(ValueError, match="device 4 is not in 0..3"):
        gpu4.node_of(4)
    with pytest.raises(ValueError):
        gpu4.link_between(-1, 9)


def test_partly_filled_last_node() -> None:
    link = Link("l", 1e9, 1.0, 0.0)
    target = GpuTarget("three", (round_gpu(),) * 3, 2, link, link, link)
    assert target.num_nodes == 2 and target.node_of(2) == 1


def test_heterogeneous_devices(gpu4: GpuTarget) -> None:
    big = round_gpu(name="big", hbm_bytes=20_000)
    mixed = dataclasses.replace(gpu4, devices=(round_gpu(), big))
    assert [d.hbm_bytes for d in mixed.devices] == [10_000, 20_000]
    assert GpuTarget.from_dict(mixed.to_dict()) == mixed


def test_canonical_dtype() -> None:
    assert canonical_dtype("float8_e4m3fn") == "float8"
    assert canonical_dtype("float8e5m2fnuz") == "float8"
    assert canonical_dtype("float4_e2m1fn") == "float4"
    assert canonical_dtype("uint8") == "int8"
    assert canonical_dtype(" BFloat16 ") == "bfloat16"
    assert canonical_dtype("float32") == "float32"


def test_rate_tables_are_canonical_sorted_and_read_only() -> None:
    device = round_gpu(peak_flops_per_s={"float8_e4m3fn": 2e12, "bfloat16": 1e12})
    assert list(device.peak_flops_per_s) == ["bfloat16", "float8"]
    with pytest.raises(TypeError, match="read-only"):
        device.peak_flops_per_s["bfloat16"] = 5.0  # type: ignore[index]
    with pytest.raises(FieldError, match=r"'peak_flops_per_s\.float8e5m2' repeats dtype 'float8'"):
        round_gpu(peak_flops_per_s={"float8_e4m3fn": 2e12, "float8e5m2": 2e12})
    with pytest.raises(FieldError, match="did you mean 'peak_flops_per_s.float16'"):
        round_gpu(peak_flops_per_s={"floatt16": 1e12})


def test_specs_are_hashable_picklable_and_copyable() -> None:
    for name in ("h100x16", "wse3x4"):
        target = get_preset(name)
        assert hash(target) == hash(copy.deepcopy(target))
        assert pickle.loads(pickle.dumps(target)) == target
        assert dataclasses.asdict(target)["name"] == name
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("wse3").name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"eta_compute": 1.5}, "field 'eta_compute' must be a number in (0, 1], got 1.5"),
        ({"hbm_bytes": 2.5}, "field 'hbm_bytes' must be a positive integer, got 2.5"),
        ({"hbm_bytes": True}, "field 'hbm_bytes' must be a positive integer, got true"),
        ({"launch_overhead_s": -1}, "field 'launch_overhead_s' must be a non-negative number"),
        ({"usd_per_hour": "2"}, "field 'usd_per_hour' must be a positive number, got '2'"),
        ({"name": ""}, "field 'name' must be a non-empty string"),
        ({"peak_flops_per_s": {}}, "field 'peak_flops_per_s' must have at least one dtype"),
        (
            {"fallback_peak_dtype": "int8"},
            "field 'fallback_peak_dtype' must be null or a dtype listed in the table, got 'int8'",
        ),
    ],
)
def test_device_validation_names_the_field(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(TargetError) as raised:
        round_gpu(**overrides)
    assert message in str(raised.value)


def test_wafer_validation() -> None:
    with pytest.raises(FieldError, match="must be less than sram_bytes_per_core"):
        tiny_wafer(sram_reserve_bytes_per_core=1024)
    with pytest.raises(FieldError, match="'clock_hz' must be a positive number, got -1"):
        tiny_wafer(clock_hz=-1)
    with pytest.raises(FieldError, match="'fmac_lanes_per_cycle.float16' must be a positive int"):
        tiny_wafer(fmac_lanes_per_cycle={"float16": 0.5})
    # YAML may give 1.0e9 for an integer field; an integral float is accepted
    assert tiny_wafer(width_cores=8.0).width_cores == 8


def test_target_validation(gpu4: GpuTarget, tiny2: WaferTarget) -> None:
    with pytest.raises(FieldError, match="'devices' must list at least one device"):
        dataclasses.replace(gpu4, devices=())
    with pytest.raises(FieldError, match="'gpus_per_node' must be a positive integer"):
        dataclasses.replace(gpu4, gpus_per_node=0)
    with pytest.raises(FieldError, match="'host_link' must be a Link"):
        dataclasses.replace(gpu4, host_link={"name": "x"})
    with pytest.raises(FieldError, match="'num_wafers' must be a positive integer"):
        dataclasses.replace(tiny2, num_wafers=0)


def test_from_dict_checks_the_kind(gpu4: GpuTarget, tiny2: WaferTarget) -> None:
    with pytest.raises(FieldError, match="field 'kind' must be 'gpu' here, got 'wafer'"):
        GpuTarget.from_dict({**gpu4.to_dict(), "kind": "wafer"})
    # kind may be left out when the class says it
    spec = tiny2.to_dict()
    del spec["kind"]
    assert WaferTarget.from_dict(spec) == tiny2


def test_wafer_derived_figures(tiny2: WaferTarget) -> None:
    wafer = tiny2.wafer
    assert wafer.num_cores == 256
    assert wafer.usable_sram_bytes_per_core == 768
    assert wafer.sram_bytes == 256 * 1024
    # 256 cores × 4 lanes × 2 FLOP × 1e9 Hz = 2.048e12 FLOP/s (no η in the peak)
    assert wafer.peak_flops_per_s("float16") == pytest.approx(2.048e12)
    assert tiny2.num_devices == 2
