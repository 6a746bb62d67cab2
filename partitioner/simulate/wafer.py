"""Simulate a wafer plan: region compute, fabric link loads, latency and throughput.

Layer-pipelined dataflow: every region holds its weights and works on its own
item while tensors stream between regions, so compute and communication
overlap. Every second comes from `targets`:

- region compute is the plan's ``compute_s`` (`WaferCostModel.region_compute_s`
  at planning time);
- an on-wafer transfer is spread over `targets.fabric.transfer_paths`, each
  path carrying a whole-byte share (`split_bytes`) routed X then Y;
  per-link bytes add up (`mesh_link_loads`) and a link is busy
  `WaferCostModel.link_time_s` per item;
- a transfer between wafers keeps the sending wafer's inter-wafer link busy
  `inter_wafer_busy_s`, host I/O the wafer's host link `host_busy_s` (bytes over
  bandwidth: a transfer's latency delays it but does not occupy the link)
  (one link per direction);
- the period is `pipeline_estimate` over the regions' compute with the busy
  links as shared links, and latency is the critical path through the
  partition DAG (compute plus each transfer's plan ``time_s``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from partitioner.plan import HOST, Partition, Region, Transfer
from partitioner.simulate.common import (
    SimulateError,
    check_transfer_ends,
    critical_path,
    partition_positions,
    utilisation,
)
from targets.cost import WaferCostModel
from targets.fabric import (
    Coord,
    MeshLinkLoads,
    Rect,
    center_hops,
    mesh_link_loads,
    split_bytes,
    transfer_paths,
)
from targets.pipeline import PipelineEstimate, pipeline_estimate
from targets.wafer import WaferTarget

__all__ = ["FabricReport", "LinkLoad", "RegionLoad", "estimate_fields", "simulate_wafer"]

TOP_LINKS = 5
_MAX_LINK_BYTES = 2**63 - 1
"""Link loads are int64: every load is at most the sum over a wafer's flows, which stays below."""


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


@dataclass(frozen=True)
class LinkLoad:
    """Bytes and busy seconds per item of one link.

    Attributes:
        kind: ``"fabric"`` (a link between two cores), ``"inter-wafer"`` (the
            sending wafer's link to the others), ``"host-in"`` or ``"host-out"``.
        wafer: The wafer the link belongs to.
        src: For a fabric link, the core it leaves.
        dst: For a fabric link, the core it enters.
    """

    kind: str
    wafer: int
    bytes: int
    busy_s: float
    utilisation: float
    src: Coord | None = None
    dst: Coord | None = None

    @property
    def where(self) -> str:
        """Readable name: ``"link (300,41)->(301,41) on wafer 0"``."""
        if self.kind == "fabric" and self.src is not None and self.dst is not None:
            (x0, y0), (x1, y1) = self.src, self.dst
            return f"link ({x0},{y0})->({x1},{y1}) on wafer {self.wafer}"
        return {
            "inter-wafer": f"inter-wafer link from wafer {self.wafer}",
            "host-in": f"host link to wafer {self.wafer}",
            "host-out": f"host link from wafer {self.wafer}",
        }[self.kind]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["src"] = list(self.src) if self.src is not None else None
        d["dst"] = list(self.dst) if self.dst is not None else None
        return {"where": self.where, **d}


@dataclass(frozen=True, eq=False)
class FabricReport:
    """A simulated wafer plan.

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
        bottleneck_kind: ``"compute"`` or ``"link"``.
        bottleneck_where: ``"region 12 on wafer 0"``, ``"link (300,41)->(301,41) on wafer 0"``, ...
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
    bottleneck_kind: str
    bottleneck_where: str
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (an infinite throughput is null)."""
        throughput = self.throughput_per_s if math.isfinite(self.throughput_per_s) else None
        return {
            "kind": self.kind,
            "latency_s": self.latency_s,
            "throughput_per_s": throughput,
            "period_s": self.period_s,
            "bottleneck": {"kind": self.bottleneck_kind, "where": self.bottleneck_where},
            "critical_path": list(self.critical_path),
            "byte_hops": self.byte_hops,
            "grid": list(self.grid),
            "usable_sram_bytes_per_core": self.usable_sram_bytes_per_core,
            "max_sram_bytes_per_core": self.max_sram_bytes_per_core,
            "regions": [asdict(r) for r in self.regions],
            "busiest_links": [link.to_dict() for link in self.busiest_links],
            "off_wafer_links": [link.to_dict() for link in self.off_wafer_links],
            "decode": dict(self.decode) if self.decode is not None else None,
        }


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


def _rect(r: Region) -> Rect:
    return (r.x, r.y, r.w, r.h)


@dataclass
class _Traffic:
    """Per-item traffic gathered from the transfers (mutable while it is being gathered)."""

    flows: dict[int, tuple[list, list, list]] = field(default_factory=dict)
    off_wafer: dict[tuple[str, int], list] = field(default_factory=dict)  # -> [bytes, busy_s]
    byte_hops: int = 0


def _gather(
    transfers: Sequence[Transfer],
    regions: Sequence[Region],
    position: Mapping[int, int],
    cost: WaferCostModel,
) -> _Traffic:
    traffic = _Traffic()

    def off_wafer(kind: str, wafer: int, nbytes: int, busy_s: float) -> None:
        entry = traffic.off_wafer.setdefault((kind, wafer), [0, 0.0])
        entry[0] += nbytes
        entry[1] += busy_s

    for t in transfers:
        check_transfer_ends(t, position)
        if t.src == HOST:
            off_wafer("host-in", regions[position[t.dst]].wafer, t.bytes, cost.host_busy_s(t.bytes))
            continue
        a = regions[position[t.src]]
        if t.dst == HOST:
            off_wafer("host-out", a.wafer, t.bytes, cost.host_busy_s(t.bytes))
            continue
        b = regions[position[t.dst]]
        if a.wafer != b.wafer:
            off_wafer("inter-wafer", a.wafer, t.bytes, cost.inter_wafer_busy_s(t.bytes))
            continue
        paths = transfer_paths(_rect(a), _rect(b))
        src, dst, shares = traffic.flows.setdefault(a.wafer, ([], [], []))
        src.extend(s for s, _ in paths)
        dst.extend(d for _, d in paths)
        shares.extend(split_bytes(t.bytes, len(paths)))
        hops = t.hops if t.hops is not None else center_hops(_rect(a), _rect(b))
        traffic.byte_hops += t.bytes * hops
    return traffic


def _mesh(target: WaferTarget, wafer: int, flows: tuple[list, list, list]) -> MeshLinkLoads:
    """The load on every link of one wafer (its flows' bytes must add up to less than 2**63)."""
    src, dst, shares = flows
    total = sum(shares)
    if total > _MAX_LINK_BYTES:
        raise SimulateError(
            f"the transfers on wafer {wafer} move {total:,} bytes per item in all, more than "
            "link loads hold (2**63 - 1); check the bytes of the plan's transfers"
        )
    spec = target.wafer
    return mesh_link_loads(spec.width_cores, spec.height_cores, src, dst, shares)


def _link_loads(
    mesh: Mapping[int, MeshLinkLoads], traffic: _Traffic, cost: WaferCostModel
) -> tuple[list[LinkLoad], list[LinkLoad]]:
    """Each wafer's busiest fabric links, then the off-wafer links (utilisation not yet known)."""
    fabric = [
        LinkLoad("fabric", w, nbytes, cost.link_time_s(nbytes), 0.0, src, dst)
        for w, loads in mesh.items()
        for (src, dst), nbytes in loads.busiest(TOP_LINKS)
    ]
    off = [
        LinkLoad(kind, w, nbytes, busy_s, 0.0)
        for (kind, w), (nbytes, busy_s) in sorted(
            traffic.off_wafer.items(), key=lambda item: (item[0][1], item[0][0])
        )
    ]
    return fabric, off


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
    traffic = _gather(transfers, regions, position, cost)
    latency_s, critical = critical_path(partitions, transfers, position)
    mesh = {w: _mesh(target, w, traffic.flows[w]) for w in sorted(traffic.flows)}
    fabric, off = _link_loads(mesh, traffic, cost)
    # Only each wafer's busiest fabric link can bound throughput, so only those
    # (with the off-wafer links) enter pipeline_estimate as shared links.
    heads = [next(link for link in fabric if link.wafer == w) for w in mesh if mesh[w].max_bytes()]
    bounding = heads + off
    estimate = pipeline_estimate(
        [p.compute_s for p in partitions],
        [0.0] * len(partitions),
        True,
        link_busy_s=[link.busy_s for link in bounding],
    )
    b, period = estimate.bottleneck, estimate.period_s
    if b.kind == "link":
        kind, where = "link", bounding[b.index].where
    else:
        kind, where = (
            "compute",
            f"region {partitions[b.index].id} on wafer {regions[b.index].wafer}",
        )

    def settled(links: list[LinkLoad]) -> list[LinkLoad]:
        return [replace(link, utilisation=utilisation(link.busy_s, period)) for link in links]

    busiest = sorted(settled(fabric + off), key=lambda link: -link.busy_s)[:TOP_LINKS]
    return FabricReport(
        regions=_region_loads(partitions, regions, period, spec.usable_sram_bytes_per_core),
        usable_sram_bytes_per_core=spec.usable_sram_bytes_per_core,
        grid=(spec.width_cores, spec.height_cores),
        num_wafers=target.num_wafers,
        mesh_loads=mesh,
        busiest_links=tuple(busiest),
        off_wafer_links=tuple(settled(off)),
        byte_hops=traffic.byte_hops,
        latency_s=latency_s,
        critical_path=critical,
        estimate=estimate,
        bottleneck_kind=kind,
        bottleneck_where=where,
    )


def estimate_fields(report: FabricReport) -> dict[str, Any]:
    """What a wafer planner writes into a plan's ``estimate``.

    Returns:
        ``{"latency_s", "throughput_per_s", "bottleneck": {"kind", "where"},
        "extra": {...}}``; ``extra`` holds the period, critical path, busiest
        link, Σ bytes × hops, SRAM per core and off-wafer link loads, all
        JSON-ready, plus ``report.decode`` when set (for decode steps, set it
        with ``dataclasses.replace(report, decode=decode_figures(...))``).
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
        "bottleneck": {"kind": report.bottleneck_kind, "where": report.bottleneck_where},
        "extra": extra,
    }
