"""Small targets with round numbers, so expected costs can be worked out by hand."""

from __future__ import annotations

import pytest

from targets import GpuTarget, Link, WaferTarget
from tests.targets.builders import round_gpu, tiny_wafer


@pytest.fixture
def gpu4() -> GpuTarget:
    """4 round GPUs, 2 per node.

    intra: 100 GB/s × 0.5 = 50 GB/s, 1 µs; inter: 10 GB/s × 1.0, 10 µs;
    host: 20 GB/s × 0.5 = 10 GB/s, 2 µs.
    """
    return GpuTarget(
        name="gpu4",
        devices=(round_gpu(),) * 4,
        gpus_per_node=2,
        intra_node_link=Link("intra", 100e9, 0.5, 1e-6),
        inter_node_link=Link("inter", 10e9, 1.0, 10e-6),
        host_link=Link("host", 20e9, 0.5, 2e-6),
    )


@pytest.fixture
def tiny2() -> WaferTarget:
    """Two tiny wafers; inter-wafer 10 GB/s × 0.5, 1 µs; host 1 GB/s × 1.0, 0 µs."""
    return WaferTarget(
        name="tiny2",
        wafer=tiny_wafer(),
        num_wafers=2,
        inter_wafer_link=Link("net", 10e9, 0.5, 1e-6),
        host_link=Link("host", 1e9, 1.0, 0.0),
    )
