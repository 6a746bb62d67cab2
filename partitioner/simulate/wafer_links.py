"""The links a wafer plan's transfers load, and how long each is busy per item.

- An on-wafer transfer is spread over `targets.fabric.transfer_paths`, each
  path carrying a whole-byte share (`split_bytes`) routed X then Y; per-link
  bytes add up (`mesh_link_loads`) and a link is busy
  `WaferCostModel.link_time_s` per item.
- A transfer between wafers keeps the sending wafer's inter-wafer link busy
  `inter_wafer_busy_s`, host I/O the wafer's host link `host_busy_s` (one link
  per direction; bytes over bandwidth: a transfer's latency delays it but does
  not occupy the link).

`simulate_wafer` puts these together with the regions' compute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from partitioner.plan import HOST, Region, Transfer
from partitioner.simulate.common import SimulateError, check_transfer_ends, utilisation
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
from targets.wafer import WaferTarget

__all__ = [
    "TOP_LINKS",
    "LinkLoad",
    "WaferTraffic",
    "bounding_links",
    "gather_traffic",
    "link_loads",
    "mesh_loads",
    "with_utilisation",
]

TOP_LINKS = 5
_MAX_LINK_BYTES = 2**63 - 1
"""Link loads are int64: every load is at most the sum over a wafer's flows, which stays below."""


@dataclass(frozen=True)
class LinkLoad:
    """Bytes and busy seconds per item of one link.

    Attributes:
        kind: ``"fabric"`` (a link between two cores), ``"inter-wafer"`` (the
            sending wafer's link to the others), ``"host-in"`` or ``"host-out"``.
        wafer: The wafer the link belongs to.
        utilisation: ``busy_s`` / the pipeline period (0 until `with_utilisation`).
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


def _rect(r: Region) -> Rect:
    return (r.x, r.y, r.w, r.h)


@dataclass
class WaferTraffic:
    """Per-item traffic gathered from the transfers (mutable while `gather_traffic` fills it).

    Attributes:
        flows: Per wafer, the on-wafer paths' sources, destinations and byte shares.
        off_wafer: ``(link kind, wafer)`` -> ``[bytes, busy_s]`` of inter-wafer and host links.
        byte_hops: Σ bytes × hops over the on-wafer transfers.
    """

    flows: dict[int, tuple[list, list, list]] = field(default_factory=dict)
    off_wafer: dict[tuple[str, int], list] = field(default_factory=dict)
    byte_hops: int = 0

    def add_off_wafer(self, kind: str, wafer: int, nbytes: int, busy_s: float) -> None:
        entry = self.off_wafer.setdefault((kind, wafer), [0, 0.0])
        entry[0] += nbytes
        entry[1] += busy_s


def gather_traffic(
    transfers: Sequence[Transfer],
    regions: Sequence[Region],
    position: Mapping[int, int],
    cost: WaferCostModel,
) -> WaferTraffic:
    """Each transfer's bytes on the links it takes (rules in the module doc).

    Raises:
        SimulateError: A transfer names a missing partition.
    """
    traffic = WaferTraffic()
    for t in transfers:
        check_transfer_ends(t, position)
        if t.src == HOST:
            wafer = regions[position[t.dst]].wafer
            traffic.add_off_wafer("host-in", wafer, t.bytes, cost.host_busy_s(t.bytes))
            continue
        a = regions[position[t.src]]
        if t.dst == HOST:
            traffic.add_off_wafer("host-out", a.wafer, t.bytes, cost.host_busy_s(t.bytes))
            continue
        b = regions[position[t.dst]]
        if a.wafer != b.wafer:
            busy_s = cost.inter_wafer_busy_s(t.bytes)
            traffic.add_off_wafer("inter-wafer", a.wafer, t.bytes, busy_s)
            continue
        paths = transfer_paths(_rect(a), _rect(b))
        src, dst, shares = traffic.flows.setdefault(a.wafer, ([], [], []))
        src.extend(s for s, _ in paths)
        dst.extend(d for _, d in paths)
        shares.extend(split_bytes(t.bytes, len(paths)))
        hops = t.hops if t.hops is not None else center_hops(_rect(a), _rect(b))
        traffic.byte_hops += t.bytes * hops
    return traffic


def mesh_loads(target: WaferTarget, wafer: int, flows: tuple[list, list, list]) -> MeshLinkLoads:
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


def link_loads(
    mesh: Mapping[int, MeshLinkLoads], traffic: WaferTraffic, cost: WaferCostModel
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


def bounding_links(
    mesh: Mapping[int, MeshLinkLoads], fabric: Sequence[LinkLoad], off: Sequence[LinkLoad]
) -> list[LinkLoad]:
    """The links that may bound throughput: each loaded wafer's busiest fabric link, then ``off``.

    A wafer's other fabric links are no busier than its busiest, so they never bound it.
    """
    heads = [next(link for link in fabric if link.wafer == w) for w in mesh if mesh[w].max_bytes()]
    return heads + list(off)


def with_utilisation(links: Sequence[LinkLoad], period_s: float) -> list[LinkLoad]:
    """The links with their busy seconds over the pipeline period."""
    return [replace(link, utilisation=utilisation(link.busy_s, period_s)) for link in links]
