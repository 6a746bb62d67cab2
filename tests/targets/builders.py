"""Spec builders with round numbers, so expected costs can be worked out by hand."""

from __future__ import annotations

from targets import GpuDevice, WaferSpec

__all__ = ["round_gpu", "tiny_wafer"]


def round_gpu(**overrides: object) -> GpuDevice:
    """100 TF/s bf16 at η 0.5 (50 TF/s achieved), 1 TB/s HBM at η 0.8, 5 µs launches."""
    fields: dict[str, object] = {
        "name": "round-gpu",
        "hbm_bytes": 10_000,
        "hbm_bandwidth_bytes_per_s": 1e12,
        "peak_flops_per_s": {"bfloat16": 100e12, "float32": 10e12},
        "eta_compute": 0.5,
        "eta_memory": 0.8,
        "launch_overhead_s": 5e-6,
        "power_w": 500.0,
        "usd_per_hour": 2.0,
    }
    fields.update(overrides)
    return GpuDevice(**fields)  # type: ignore[arg-type]


def tiny_wafer(**overrides: object) -> WaferSpec:
    """16×16 cores, 1 KiB SRAM (256 B reserved), 4 fp16 lanes, 1 GHz, 4 B/cycle links, η 0.5."""
    fields: dict[str, object] = {
        "name": "tiny",
        "width_cores": 16,
        "height_cores": 16,
        "sram_bytes_per_core": 1024,
        "sram_reserve_bytes_per_core": 256,
        "fmac_lanes_per_cycle": {"float16": 4},
        "clock_hz": 1e9,
        "link_bytes_per_cycle": 4,
        "hop_latency_cycles": 1,
        "eta_compute": 0.5,
    }
    fields.update(overrides)
    return WaferSpec(**fields)  # type: ignore[arg-type]
