"""Link loads of a GPU plan: transfers per device pair, and each GPU's traffic per link class.

Point-to-point transfers load the link between the first devices of their two
partitions (or a GPU's host link), for their ``time_s``. A tensor-parallel
collective loads every device of its partition's group: each sends its ring
share (`targets.formulas.collective_bytes_sent`) over the group's link
(`GpuCostModel.group_link`: NVLink inside a node, the network across) and is
busy for the collective's ``time_s``. Utilisation is busy seconds over the
pipeline period, so a GPU whose NVLink is busy most of a step shows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from partitioner.plan import HOST, Collective, Partition, Transfer
from partitioner.simulate.common import SimulateError, utilisation
from targets.cost import GpuCostModel
from targets.formulas import collective_bytes_sent
from targets.gpu import GpuTarget

__all__ = ["LINK_CLASSES", "DeviceLinkLoad", "GpuLinkLoad", "LinkClassLoad", "link_loads"]

#: Link classes in report order.
LINK_CLASSES = ("intra-node", "inter-node", "host")


@dataclass(frozen=True)
class DeviceLinkLoad:
    """Point-to-point traffic per item from one device to another (-1 = the host).

    Attributes:
        link_class: ``"intra-node"``, ``"inter-node"`` or ``"host"``.
        link_name: The target's name for that link (``"NVLink4"``, ``"PCIe Gen5"``).
        busy_s: Σ ``time_s`` of the transfers that take it.
        utilisation: ``busy_s`` / the pipeline period.
    """

    src_device: int
    dst_device: int
    link_class: str
    link_name: str
    bytes: int
    busy_s: float
    utilisation: float
    transfers: int


@dataclass(frozen=True)
class GpuLinkLoad:
    """What one GPU sends per item over one class of link, collectives included.

    On the host link a GPU's input and output both count: it is that GPU's own link.

    Attributes:
        bytes: Bytes sent: its transfers' bytes plus its ring share of each collective
            (rounded to whole bytes).
        busy_s: Σ ``time_s`` of its transfers and of its collectives.
        utilisation: ``busy_s`` / the pipeline period.
        collective_bytes: The part of ``bytes`` the collectives send.
        collective_busy_s: The part of ``busy_s`` the collectives take.
        transfers: Point-to-point transfers it sends (or, on the host link, takes).
        collectives: Collective calls it takes part in.
    """

    device: int
    link_class: str
    link_name: str
    bytes: int
    busy_s: float
    utilisation: float
    collective_bytes: int
    collective_busy_s: float
    transfers: int
    collectives: int


@dataclass(frozen=True)
class LinkClassLoad:
    """Traffic per item over every link of one class, summed over the GPUs.

    Attributes:
        bytes: Σ bytes the GPUs send over this class (transfers and collective shares).
        busy_s: Σ busy seconds of the GPUs' links of this class (two GPUs busy 1 s: 2 s).
        transfers: Point-to-point transfers over this class.
        collectives: Collective calls over this class (one per call, not per GPU).
        utilisation: The busiest GPU's link of this class: its ``busy_s`` / the period.
    """

    link_class: str
    link_name: str
    bytes: int
    busy_s: float
    transfers: int
    collectives: int
    utilisation: float


@dataclass
class _Tally:
    """A running total while adding up; mutable because it never leaves this module."""

    link_name: str
    bytes: float = 0.0
    busy_s: float = 0.0
    collective_bytes: float = 0.0
    collective_busy_s: float = 0.0
    transfers: int = 0
    collectives: int = 0


def _link_class(target: GpuTarget, a: int, b: int) -> str:
    if HOST in (a, b):
        return "host"
    return "intra-node" if target.node_of(a) == target.node_of(b) else "inter-node"


def _add_transfers(
    partitions: Sequence[Partition],
    transfers: Sequence[Transfer],
    position: Mapping[int, int],
    target: GpuTarget,
    pairs: dict[tuple[int, int, str], _Tally],
) -> None:
    """Each transfer onto its (src, dst, class) pair; the pair's first devices stand for it."""
    for t in transfers:
        a = HOST if t.src == HOST else partitions[position[t.src]].devices[0]
        b = HOST if t.dst == HOST else partitions[position[t.dst]].devices[0]
        try:
            link = target.link_between(a, b)
        except ValueError as err:
            raise SimulateError(
                f"transfer of '{t.tensor}': {err}; run `partition validate`"
            ) from None
        if link is None:
            continue  # same device: nothing crosses a link
        tally = pairs.setdefault((a, b, _link_class(target, a, b)), _Tally(link.name))
        tally.bytes += t.bytes
        tally.busy_s += t.time_s
        tally.transfers += 1


def _add_collectives(
    partitions: Sequence[Partition],
    collectives: Sequence[Collective],
    position: Mapping[int, int],
    target: GpuTarget,
    gpus: dict[tuple[int, str], _Tally],
) -> dict[str, int]:
    """Each collective onto every device of its group; returns the calls per link class."""
    cost = GpuCostModel(target)
    calls: dict[str, int] = {}
    for c in collectives:
        group = partitions[position[c.partition]].devices
        if len(group) < 2:
            continue  # one device makes no call
        try:
            link = cost.group_link(group)
            nodes = {target.node_of(d) for d in group}
            sent = collective_bytes_sent(c.kind, c.bytes, len(group))
        except ValueError as err:
            raise SimulateError(
                f"collective on '{c.tensor}': {err}; run `partition validate`"
            ) from None
        role = "intra-node" if len(nodes) == 1 else "inter-node"
        calls[role] = calls.get(role, 0) + 1
        for device in group:
            tally = gpus.setdefault((device, role), _Tally(link.name))
            tally.bytes += sent
            tally.busy_s += c.time_s
            tally.collective_bytes += sent
            tally.collective_busy_s += c.time_s
            tally.collectives += 1
    return calls


def _gpu_tallies(pairs: Mapping[tuple[int, int, str], _Tally]) -> dict[tuple[int, str], _Tally]:
    """Pairs folded onto GPUs: the sender's, or on the host link the GPU end's."""
    gpus: dict[tuple[int, str], _Tally] = {}
    for (a, b, role), pair in pairs.items():
        device = b if a == HOST else a
        tally = gpus.setdefault((device, role), _Tally(pair.link_name))
        tally.bytes += pair.bytes
        tally.busy_s += pair.busy_s
        tally.transfers += pair.transfers
    return gpus


def _class_totals(gpus: Sequence[GpuLinkLoad], calls: Mapping[str, int]) -> list[LinkClassLoad]:
    out = []
    for role in LINK_CLASSES:
        mine = [g for g in gpus if g.link_class == role]
        if mine:
            out.append(
                LinkClassLoad(
                    role,
                    mine[0].link_name,
                    sum(g.bytes for g in mine),
                    sum(g.busy_s for g in mine),
                    sum(g.transfers for g in mine),
                    calls.get(role, 0),
                    max(g.utilisation for g in mine),
                )
            )
    return out


def link_loads(
    partitions: Sequence[Partition],
    transfers: Sequence[Transfer],
    collectives: Sequence[Collective],
    position: Mapping[int, int],
    target: GpuTarget,
    period_s: float,
) -> tuple[tuple[DeviceLinkLoad, ...], tuple[GpuLinkLoad, ...], tuple[LinkClassLoad, ...]]:
    """Transfers per device pair (busiest first), each GPU's load per class, and class totals.

    Raises:
        SimulateError: A transfer or collective names a device the target does not have.
    """
    pairs: dict[tuple[int, int, str], _Tally] = {}
    _add_transfers(partitions, transfers, position, target, pairs)
    links = [
        DeviceLinkLoad(
            src_device=a,
            dst_device=b,
            link_class=role,
            link_name=t.link_name,
            bytes=round(t.bytes),
            busy_s=t.busy_s,
            utilisation=utilisation(t.busy_s, period_s),
            transfers=t.transfers,
        )
        for (a, b, role), t in pairs.items()
    ]
    links.sort(key=lambda link: (-link.busy_s, link.src_device, link.dst_device))
    tallies = _gpu_tallies(pairs)
    calls = _add_collectives(partitions, collectives, position, target, tallies)
    order = {role: i for i, role in enumerate(LINK_CLASSES)}
    gpus = [
        GpuLinkLoad(
            device=device,
            link_class=role,
            link_name=t.link_name,
            bytes=round(t.bytes),
            busy_s=t.busy_s,
            utilisation=utilisation(t.busy_s, period_s),
            collective_bytes=round(t.collective_bytes),
            collective_busy_s=t.collective_busy_s,
            transfers=t.transfers,
            collectives=t.collectives,
        )
        for (device, role), t in sorted(tallies.items(), key=lambda kv: (kv[0][0], order[kv[0][1]]))
    ]
    return tuple(links), tuple(gpus), tuple(_class_totals(gpus, calls))
