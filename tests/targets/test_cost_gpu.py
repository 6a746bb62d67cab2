"""GPU op and transfer times, stage memory and LLM figures, worked by hand."""

from __future__ import annotations

import pytest

from targets import (
    HOST,
    CostModel,
    GpuCostModel,
    GpuTarget,
    TargetError,
    WaferCostModel,
    get_preset,
    joules_per_token,
    pipelined_tokens_per_s,
    stage_memory_bytes,
    to_int_units,
    tokens_per_s,
    usd_per_token,
)
from tests.targets.builders import round_gpu


def test_cost_model_dispatches_on_target_kind(gpu4: GpuTarget) -> None:
    assert type(CostModel(gpu4)) is GpuCostModel
    assert type(CostModel(get_preset("wse3"))) is WaferCostModel
    assert CostModel(gpu4).target is gpu4
    with pytest.raises(TargetError, match="not a target"):
        CostModel("h100x8")  # type: ignore[arg-type]


def test_op_time_compute_bound(gpu4: GpuTarget) -> None:
    # compute: 1e12 / (100e12 * 0.5) = 0.02 s; memory: 1e9 / (1e12 * 0.8) = 0.00125 s
    # max = 0.02, plus one 5 µs launch = 0.020005 s
    cost = CostModel(gpu4)
    assert cost.op_time_s(1e12, 1e9, "bfloat16") == pytest.approx(0.020005, rel=1e-12)


def test_op_time_memory_bound(gpu4: GpuTarget) -> None:
    # compute: 1e9 / 50e12 = 2e-5 s; memory: 8e9 / 0.8e12 = 0.01 s -> 0.01 + 5e-6
    cost = CostModel(gpu4)
    assert cost.op_time_s(1e9, 8e9, "bfloat16") == pytest.approx(0.010005, rel=1e-12)


def test_a_device_that_does_not_overlap_compute_and_memory_pays_both(gpu4: GpuTarget) -> None:
    import dataclasses

    from targets.loader import target_from_dict

    # compute: 1e12 / 50e12 = 0.02 s; memory: 1e9 / 0.8e12 = 0.00125 s; in turn: their sum
    cpu = dataclasses.replace(gpu4.devices[0], compute_memory_overlap=False)
    target = dataclasses.replace(gpu4, devices=(cpu,) * len(gpu4.devices))
    parts = CostModel(target).op_time_parts(1e12, 1e9, "bfloat16")
    assert not parts.overlap and parts.total_s == pytest.approx(0.021255, rel=1e-12)
    assert CostModel(gpu4).op_time_s(1e12, 1e9, "bfloat16") == pytest.approx(0.020005, rel=1e-12)
    # written only when false, so the GPU presets' specs (and plans' hashes) stay as they were
    assert "compute_memory_overlap" not in gpu4.devices[0].to_dict()
    spec = target.to_dict()
    assert spec["devices"][0]["compute_memory_overlap"] is False
    assert target_from_dict(spec).devices[0].compute_memory_overlap is False
    with pytest.raises(TargetError, match="compute_memory_overlap"):
        dataclasses.replace(gpu4.devices[0], compute_memory_overlap="no")


def test_op_time_counts_each_kernel_launch(gpu4: GpuTarget) -> None:
    cost = CostModel(gpu4)
    # 8e9 bytes -> 0.01 s; 3 launches -> +15 µs; 0 launches (a Reshape) -> +0
    assert cost.op_time_s(0, 8e9, "bfloat16", kernels=3) == pytest.approx(0.010015, rel=1e-12)
    assert cost.op_time_s(0, 8e9, "bfloat16", kernels=0) == pytest.approx(0.01, rel=1e-12)


def test_op_time_uses_device_spec() -> None:
    slow = round_gpu(name="slow", peak_flops_per_s={"bfloat16": 10e12})
    target = GpuTarget(
        "mixed",
        (round_gpu(), slow),
        2,
        get_preset("h100x8").intra_node_link,
        get_preset("h100x8").inter_node_link,
        get_preset("h100x8").host_link,
    )
    cost = CostModel(target)
    # device 1: 1e12 / (10e12 * 0.5) = 0.2 s, + 5 µs
    assert cost.op_time_s(1e12, 0, "bfloat16", device=1) == pytest.approx(0.200005)
    assert cost.op_time_s(1e12, 0, "bfloat16", device=0) == pytest.approx(0.020005)
    with pytest.raises(ValueError, match="device 2"):
        cost.op_time_s(1, 1, "bfloat16", device=2)


def test_dtype_without_entry_is_an_error_unless_there_is_a_fallback(gpu4: GpuTarget) -> None:
    cost = CostModel(gpu4)
    with pytest.raises(TargetError, match=r"add 'peak_flops_per_s\.int64'"):
        cost.op_time_s(1e6, 0, "int64")
    # no FLOPs, no lookup: data movement needs no dtype entry
    assert cost.op_time_s(0, 8e9, "int64") == pytest.approx(0.010005)
    # with fallback float32 (10e12): 1e12 / (10e12 * 0.5) = 0.2 s
    device = round_gpu(fallback_peak_dtype="float32")
    assert device.peak_flops_for("int64") == 10e12
    assert device.peak_flops_for("bfloat16") == 100e12


def test_h100_bf16_matmul_runs_at_the_measured_788_tf() -> None:
    cost = CostModel(get_preset("h100x8"))
    flops = 2 * 8192**3  # 1.0995e12
    bytes_moved = 3 * 8192 * 8192 * 2  # A, B read and C written in bf16: 0.40 GB
    # compute: 1.0995e12 / (989e12 * 788/989) = 1.0995e12 / 788e12 = 1.3953 ms
    # memory: 0.4027e9 / (3.35e12 * 4.3/4.8) = 0.134 ms -> compute-bound, + 5 µs launch
    expected = flops / 788e12 + 5e-6
    assert cost.op_time_s(flops, bytes_moved, "bfloat16") == pytest.approx(expected, rel=1e-12)


def test_float8_variants_use_the_float8_rate() -> None:
    h100 = get_preset("h100x1").devices[0]
    assert h100.peak_flops_for("float8_e4m3fn") == h100.peak_flops_for("float8e5m2") == 1979e12
    assert h100.peak_flops_for("uint8") == h100.peak_flops_for("int8")
    # int64 has no tensor-core rate: GPU presets fall back to CUDA-core float32
    assert h100.peak_flops_for("int64") == h100.peak_flops_for("float32") == 67e12


def test_transfer_over_intra_inter_and_host_links(gpu4: GpuTarget) -> None:
    cost = CostModel(gpu4)
    # same node (0, 1): 1 µs + 1e9 / (100e9 * 0.5) = 0.02 s
    assert cost.transfer_time_s(1e9, 0, 1) == pytest.approx(0.020001, rel=1e-12)
    # across nodes (1, 2): 10 µs + 1e9 / 10e9 = 0.1 s
    assert cost.transfer_time_s(1e9, 1, 2) == pytest.approx(0.10001, rel=1e-12)
    # host to device 3 and back: 2 µs + 1e9 / (20e9 * 0.5) = 0.1 s
    assert cost.transfer_time_s(1e9, HOST, 3) == pytest.approx(0.100002, rel=1e-12)
    assert cost.transfer_time_s(1e9, 3, -1) == pytest.approx(0.100002, rel=1e-12)
    # same device, or nothing to send: free
    assert cost.transfer_time_s(1e9, 2, 2) == 0.0
    assert cost.transfer_time_s(0, 0, 3) == 0.0
    with pytest.raises(ValueError, match="device 4"):
        cost.transfer_time_s(1, 0, 4)


def test_transfer_nvlink_vs_network_vs_pcie_presets() -> None:
    gb = 1e9
    # NVLink4: 900 GB/s bidirectional -> 450 per direction, × 380/450 -> 380 GB/s; 5 µs
    nvlink = CostModel(get_preset("h100x8")).transfer_time_s(gb, 0, 7)
    assert nvlink == pytest.approx(5e-6 + gb / 380e9, rel=1e-12)
    # IB NDR: 50 GB/s × 380/450 = 42.22 GB/s; 10 µs (devices 7 and 8 are in different nodes)
    network = CostModel(get_preset("h100x16")).transfer_time_s(gb, 7, 8)
    assert network == pytest.approx(10e-6 + gb / (50e9 * 380 / 450), rel=1e-12)
    # PCIe Gen5: 64 GB/s × 380/450 = 54.04 GB/s; 10 µs
    pcie = CostModel(get_preset("h100x8-pcie")).transfer_time_s(gb, 0, 7)
    assert pcie == pytest.approx(10e-6 + gb / (64e9 * 380 / 450), rel=1e-12)
    # A100 host link is PCIe Gen4: 32 GB/s × 380/450
    host = CostModel(get_preset("a100x8")).transfer_time_s(gb, -1, 0)
    assert host == pytest.approx(10e-6 + gb / (32e9 * 380 / 450), rel=1e-12)
    assert nvlink < pcie < network


def test_stage_memory() -> None:
    # 1000 params + 200 activation peak × 3 micro-batches + 50 buffers + 400 KV = 2050
    assert stage_memory_bytes(1000, 200, 3, 50, 400) == 2050
    assert stage_memory_bytes(1000, 200) == 1200
    assert CostModel(get_preset("h100x8")).stage_memory_bytes(1, 2, 2) == 5
    with pytest.raises(ValueError):
        stage_memory_bytes(1, 1, 0)
    with pytest.raises(ValueError):
        stage_memory_bytes(-1, 1)


def test_capacity_is_device_memory(gpu4: GpuTarget) -> None:
    assert CostModel(gpu4).capacity_bytes(3) == 10_000
    assert CostModel(get_preset("h200x8")).capacity_bytes(0) == 141_000_000_000


def test_llm_figures() -> None:
    # batch 8 every 20 ms -> 400 tokens/s
    assert tokens_per_s(8, 0.02) == pytest.approx(400.0)
    # $36/h at 400 tokens/s: 36 / 3600 / 400 = 2.5e-5 $/token
    assert usd_per_token(400.0, 36.0) == pytest.approx(2.5e-5)
    assert usd_per_token(400.0, None) is None
    # 5600 W at 400 tokens/s = 14 J/token
    assert joules_per_token(400.0, 5600.0) == pytest.approx(14.0)
    with pytest.raises(ValueError):
        tokens_per_s(8, 0.0)


def test_pipelined_decode_throughput() -> None:
    # a full pipeline finishing 50 steps/s of 8 tokens each makes 8 x 50 = 400 tokens/s
    assert pipelined_tokens_per_s(8, 50.0) == 400.0
    # one step every 0.3 s: the pipeline's throughput is 1/0.3 = 3.333... steps/s, and 3 tokens
    # a step make 3 x 3.3333333333333335 = 10.0 tokens/s, exactly what the plans record
    assert pipelined_tokens_per_s(3, 1 / 0.3) == 10.0
    # nothing finishes, nothing is made; a zero-period pipeline (inf steps/s) stays inf
    assert pipelined_tokens_per_s(8, 0.0) == 0.0
    assert pipelined_tokens_per_s(8, float("inf")) == float("inf")
    for batch, steps_per_s in ((-1, 1.0), (1, -1.0), (1, float("nan"))):
        with pytest.raises(ValueError):
            pipelined_tokens_per_s(batch, steps_per_s)


def test_price_and_power_of_devices(gpu4: GpuTarget) -> None:
    cost = CostModel(gpu4)
    # 4 × $2/h = $8/h; 2 devices = $4/h; 4 × 500 W = 2000 W
    assert cost.usd_per_hour() == pytest.approx(8.0)
    assert cost.usd_per_hour([0, 1]) == pytest.approx(4.0)
    assert cost.power_w() == pytest.approx(2000.0)
    # $8/h at 1000 tokens/s: 8 / 3600 / 1000
    assert cost.usd_per_token(1000.0) == pytest.approx(8 / 3600 / 1000)
    assert cost.joules_per_token(1000.0) == pytest.approx(2.0)
    # a preset without a sourced price has none: unknown, not invented
    assert CostModel(get_preset("h100x8-pcie")).usd_per_token(1000.0) is None
    assert CostModel(get_preset("h100x8")).power_w() == pytest.approx(8 * 700.0)


def test_to_int_units_rounds_up_but_ignores_float_noise() -> None:
    assert to_int_units(1.5e-6, 1e-6) == 2
    assert to_int_units(3e-6, 1e-6) == 3  # 3e-6 / 1e-6 = 2.9999999999999996
    assert to_int_units(0.1 + 0.2, 0.1) == 3  # 3.0000000000000004
    assert to_int_units(1e-9, 1e-6) == 1  # a positive cost stays positive
    assert to_int_units(0, 1e-6) == 0
    assert to_int_units(1025, 1024) == 2
    assert to_int_units(2048, 1024) == 2
    with pytest.raises(ValueError):
        to_int_units(1.0, 0)
