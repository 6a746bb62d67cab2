"""Wafer plans built by hand on tiny targets, for simulator tests."""

from __future__ import annotations

from collections.abc import Sequence

from partitioner.plan import (
    Bottleneck,
    Estimate,
    ModelInfo,
    Parallelism,
    Partition,
    Plan,
    Provenance,
    Region,
    SolverInfo,
    TargetInfo,
    Transfer,
)
from targets import Link, WaferTarget
from tests.targets.builders import tiny_wafer

__all__ = ["hand_plan", "part", "tiny_target"]


def tiny_target(num_wafers: int = 1, **wafer: object) -> WaferTarget:
    """16×16 cores, 768 usable B/core, 1 GHz, 4 B/cycle links (a link moves 4e9 B/s), 1 ns hops.

    Inter-wafer 10 GB/s × 0.5 = 5 GB/s with 1 µs latency; host 1 GB/s, no latency.
    """
    return WaferTarget(
        name="tiny",
        wafer=tiny_wafer(**wafer),
        num_wafers=num_wafers,
        inter_wafer_link=Link("net", 10e9, 0.5, 1e-6),
        host_link=Link("host", 1e9, 1.0, 0.0),
    )


def part(
    pid: int, region: tuple[int, int, int, int], compute_s: float, wafer: int = 0, memory: int = 0
) -> Partition:
    x, y, w, h = region
    return Partition(
        id=pid,
        stage=wafer,
        devices=(wafer,),
        nodes=(pid,),
        param_bytes=memory,
        activation_bytes=0,
        kv_cache_bytes=0,
        memory_bytes=memory,
        capacity_bytes=w * h * 768,
        flops=0,
        compute_s=compute_s,
        region=Region(wafer, x, y, w, h),
    )


def hand_plan(
    target: WaferTarget,
    partitions: Sequence[Partition],
    transfers: Sequence[Transfer],
    estimate: Estimate | None = None,
) -> Plan:
    return Plan(
        model=ModelInfo("m.onnx", "0" * 64, 18, len(partitions), 0, 0, {}),
        target=TargetInfo(target.name, target.kind, target.sha256, target.to_dict()),
        solver=SolverInfo("hand", "HEURISTIC", 0.0, 0.0, 0.0, 0.0, 0, 1.0),
        parallelism=Parallelism(pp=len({p.stage for p in partitions}), overlap_transfers=True),
        partitions=tuple(partitions),
        transfers=tuple(transfers),
        estimate=estimate or Estimate(0.0, 0.0, Bottleneck("compute", "region 0 on wafer 0")),
        provenance=Provenance("partition", "test", "hand"),
    )
