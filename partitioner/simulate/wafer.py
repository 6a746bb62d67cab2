"""Simulate a wafer plan: region compute, fabric link loads, latency and throughput.

Layer-pipelined dataflow: every region holds its weights and works on its own
item while tensors stream between regions, so compute and communication
overlap. Every second comes from `targets`:

- region compute is the plan's ``compute_s`` (`WaferCostModel.region_compute_s`
  at planning time);
- the transfers load fabric, inter-wafer and host links (`wafer_links` says how);
- the period is `pipeline_estimate` over the regions' compute with the busy
  links as shared links, and latency is the critical path through the
  partition DAG (compute plus each transfer's plan ``time_s``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from partitioner.plan import Bottleneck, Partition, Region, Transfer
from partitioner.simulate.common import (
    SimulateError,
    critical_path,
    partition_positions,
    utilisation,
)
from partitioner.simulate.report import report_dict
from partitioner.simulate.wafer_links import (
    TOP_LINKS,
    LinkLoad,
    bounding_links,
    gather_traffic,
    link_loads,
    mesh_loads,
    with_utilisation,
)
from targets.cost import WaferCostModel
from targets.fabric import MeshLinkLoads
from targets.pipeline import PipelineEstimate, StageBottleneck, pipeline_estimate
from targets.wafer import WaferTarget

__all__ = ["FabricReport", "RegionLoad", "estimate_fields", "simulate_wafer"]


@dataclass(frozen=True)
class RegionLoad:
    """One partition's region: where it is, how long it computes, how full its SRAM is.

    Attributes:
        utilisation: ``compute_s`` / the pipeline period.
        sram_bytes_per_core: ``memory_bytes / (w·h)``.
        sram_fraction: That, over the usable SRAM per core.
    """

    partition: int
    wafer: int
    x: int
    y: int
    w: int
    h: int
    compute_s: float
    utilisation: float
    memory_bytes: int
    sram_bytes_per_core: float
    sram_fraction: float

    @property
    def cores(self) -> int:
        return self.w * self.h


@dataclass(frozen=True, eq=False)
class FabricReport:
    """A simulated wafer plan (a `SimulationReport`).

    Attributes:
        regions: One entry per partition, in plan order.
        usable_sram_bytes_per_core: SRAM per core left for weights and activations.
        grid: ``(width, height)`` of each wafer, in cores.
        num_wafers: Wafers of the target.
        mesh_loads: Per wafer with on-wafer traffic, the bytes on every link.
        busiest_links: The busiest links of every kind, busiest first (up to 5).
        off_wafer_links: Inter-wafer and host links that carry traffic.
        byte_hops: Σ bytes × hops over the on-wafer transfers.
        latency_s: Critical path through the partition DAG.
        critical_path: Partition ids along it.
        estimate: `pipeline_estimate` of the regions with the links as shared links.
        bottleneck: Kind ``"compute"`` or ``"link"``, where ``"region 12 on wafer 0"``,
            ``"link (300,41)->(301,41) on wafer 0"``, ..., as the plan records it.
        decode: LLM decode-step figures, for plans of decode steps.
    """

    regions: tuple[RegionLoad, ...]
    usable_sram_bytes_per_core: int
    grid: tuple[int, int]
    num_wafers: int
    mesh_loads: Mapping[int, MeshLinkLoads]
    busiest_links: tuple[LinkLoad, ...]
    off_wafer_links: tuple[LinkLoad, ...]
    byte_hops: int
    latency_s: float
    critical_path: tuple[int, ...]
    estimate: PipelineEstimate
    bottleneck: Bottleneck
    decode: Mapping[str, Any] | None = field(default=None)

    kind = "wafer"

    @property
    def throughput_per_s(self) -> float:
        return self.estimate.throughput_per_s

    @property
    def period_s(self) -> float:
        return self.estimate.period_s

    @property
    def busiest_link(self) -> LinkLoad | None:
        return self.busiest_links[0] if self.busiest_links else None

    @property
    def max_sram_bytes_per_core(self) -> float:
        return max(r.sram_bytes_per_core for r in self.regions)

    def with_decode(self, figures: Mapping[str, Any]) -> FabricReport:
        return replace(self, decode=figures)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (an infinite throughput is null)."""
        details = {
            "critical_path": list(self.critical_path),
            "byte_hops": self.byte_hops,
            "grid": list(self.grid),
            "usable_sram_bytes_per_core": self.usable_sram_bytes_per_core,
            "max_sram_bytes_per_core": self.max_sram_bytes_per_core,
            "regions": [asdict(r) for r in self.regions],
            "busiest_links": [link.to_dict() for link in self.busiest_links],
            "off_wafer_links": [link.to_dict() for link in self.off_wafer_links],
        }
        return report_dict(self, details)


def _regions(partitions: Sequence[Partition], target: WaferTarget) -> list[Region]:
    wafer = target.wafer
    out = []
    for p in partitions:
        r = p.region
        if r is None:
            raise SimulateError(
                f"partition {p.id} has no region; a wafer plan gives every partition a rectangle of cores"
            )
        if not 0 <= r.wafer < target.num_wafers:
            raise SimulateError(
                f"partition {p.id} is on wafer {r.wafer}; target {target.name} has {target.num_wafers}"
            )
        if r.x + r.w > wafer.width_cores or r.y + r.h > wafer.height_cores:
            raise SimulateError(
                f"partition {p.id} region x={r.x} y={r.y} w={r.w} h={r.h} leaves the "
                f"{wafer.width_cores}x{wafer.height_cores} grid; run `partition validate`"
            )
        out.append(r)
    return out


def _region_loads(
    partitions: Sequence[Partition], regions: Sequence[Region], period_s: float, usable: int
) -> tuple[RegionLoad, ...]:
    out = []
    for p, r in zip(partitions, regions, strict=True):
        per_core = p.memory_bytes / (r.w * r.h)
        out.append(
            RegionLoad(
                p.id, r.wafer, r.x, r.y, r.w, r.h, p.compute_s,
                utilisation(p.compute_s, period_s), p.memory_bytes, per_core, per_core / usable,
            )
        )  # fmt: skip
    return tuple(out)


def _bottleneck(
    b: StageBottleneck,
    bounding: Sequence[LinkLoad],
    partitions: Sequence[Partition],
    regions: Sequence[Region],
) -> Bottleneck:
    """The estimate's bottleneck as the plan records it: a busy link, or a region's compute."""
    if b.kind == "link":
        return Bottleneck("link", bounding[b.index].where)
    return Bottleneck(
        "compute", f"region {partitions[b.index].id} on wafer {regions[b.index].wafer}"
    )


def simulate_wafer(
    partitions: Sequence[Partition], transfers: Sequence[Transfer], target: WaferTarget
) -> FabricReport:
    """Link loads, utilisation, latency and throughput of a wafer plan (rules in the module doc).

    Raises:
        SimulateError: A partition without a region or off the grid, a transfer
            naming a missing partition or going backwards in plan order.
    """
    if not partitions:
        raise SimulateError("the plan has no partitions to simulate")
    cost = WaferCostModel(target)
    spec = target.wafer
    position = partition_positions(partitions)
    regions = _regions(partitions, target)
    traffic = gather_traffic(transfers, regions, position, cost)
    latency_s, critical = critical_path(partitions, transfers, position)
    mesh = {w: mesh_loads(target, w, traffic.flows[w]) for w in sorted(traffic.flows)}
    fabric, off = link_loads(mesh, traffic, cost)
    bounding = bounding_links(mesh, fabric, off)
    estimate = pipeline_estimate(
        [p.compute_s for p in partitions],
        [0.0] * len(partitions),
        True,
        link_busy_s=[link.busy_s for link in bounding],
    )
    period = estimate.period_s
    busiest = sorted(with_utilisation(fabric + off, period), key=lambda link: -link.busy_s)
    return FabricReport(
        regions=_region_loads(partitions, regions, period, spec.usable_sram_bytes_per_core),
        usable_sram_bytes_per_core=spec.usable_sram_bytes_per_core,
        grid=(spec.width_cores, spec.height_cores),
        num_wafers=target.num_wafers,
        mesh_loads=mesh,
        busiest_links=tuple(busiest[:TOP_LINKS]),
        off_wafer_links=tuple(with_utilisation(off, period)),
        byte_hops=traffic.byte_hops,
        latency_s=latency_s,
        critical_path=critical,
        estimate=estimate,
        bottleneck=_bottleneck(estimate.bottleneck, bounding, partitions, regions),
    )


def estimate_fields(report: FabricReport) -> dict[str, Any]:
    """What a wafer planner writes into a plan's ``estimate``.

    Returns:
        ``{"latency_s", "throughput_per_s", "bottleneck": {"kind", "where"},
        "extra": {...}}``; ``extra`` holds the period, critical path, busiest
        link, Σ bytes × hops, SRAM per core and off-wafer link loads, all
        JSON-ready, plus ``report.decode`` when set (for decode steps, set it
        with ``report.with_decode(decode_figures(...))``).
        ``Estimate(bottleneck=Bottleneck(**f["bottleneck"]), ...)`` builds the
        plan's record from it.
    """
    busiest = report.busiest_link
    extra: dict[str, Any] = {
        "period_s": report.period_s,
        "critical_path": list(report.critical_path),
        "byte_hops": report.byte_hops,
        "busiest_link": busiest.to_dict() if busiest is not None else None,
        "max_sram_bytes_per_core": report.max_sram_bytes_per_core,
        "usable_sram_bytes_per_core": report.usable_sram_bytes_per_core,
        "mean_region_utilisation": sum(r.utilisation for r in report.regions) / len(report.regions),
        "off_wafer_links": [link.to_dict() for link in report.off_wafer_links],
        **(report.decode or {}),
    }
    return {
        "latency_s": report.latency_s,
        "throughput_per_s": report.throughput_per_s,
        "bottleneck": asdict(report.bottleneck),
        "extra": extra,
    }
