"""Small GPU targets built in code, for planner tests."""

from __future__ import annotations

from collections.abc import Sequence

from targets import GpuDevice, GpuTarget, Link


def toy_gpu(capacity: int, name: str = "toy") -> GpuDevice:
    """1 TF/s fp32 at η 1, 1 GB/s HBM, 1 µs launches, ``capacity`` bytes of memory."""
    return GpuDevice(
        name=name,
        hbm_bytes=capacity,
        hbm_bandwidth_bytes_per_s=1e9,
        peak_flops_per_s={"float32": 1e12, "float16": 2e12, "bfloat16": 2e12},
        eta_compute=1.0,
        eta_memory=1.0,
        launch_overhead_s=1e-6,
    )


def toy_target(capacities: Sequence[int], gpus_per_node: int = 2, name: str = "toy") -> GpuTarget:
    link = Link("link", 1e9, 1.0, 1e-6)
    return GpuTarget(
        name=name,
        devices=tuple(toy_gpu(c, f"gpu{i}") for i, c in enumerate(capacities)),
        gpus_per_node=gpus_per_node,
        intra_node_link=link,
        inter_node_link=Link("net", 1e8, 1.0, 1e-5),
        host_link=Link("pcie", 1e9, 1.0, 1e-6),
    )
