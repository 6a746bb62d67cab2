"""Simulate a GPU pipeline plan: per-stage times, the pipeline estimate and link loads.

Every second comes from the plan (each partition's ``compute_s`` and each
transfer's ``time_s``, both made by the target's `CostModel`) and is added up
by `targets.pipeline.pipeline_estimate`, the formula the planner uses, so a
plan's recorded estimate and this simulation agree exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from partitioner.plan import HOST, Bottleneck, Collective, Partition, Transfer
from partitioner.simulate.common import (
    SimulateError,
    check_transfer_ends,
    partition_positions,
    utilisation,
)
from partitioner.simulate.report import report_dict
from targets.gpu import GpuTarget
from targets.pipeline import PipelineEstimate, StageBottleneck, pipeline_estimate, stage_recv_s

__all__ = [
    "DeviceLinkLoad",
    "LinkClassLoad",
    "PipelineReport",
    "StageLoad",
    "pipeline_bottleneck_where",
    "simulate_gpu",
]


@dataclass(frozen=True)
class StageLoad:
    """Seconds per item one pipeline stage spends on each kind of work.

    ``recv_s`` is what the stage before sends (`targets.pipeline.stage_recv_s`);
    ``collective_s`` is the tensor-parallel collectives' time, on top of ``compute_s``.
    """

    partition: int
    device: int
    compute_s: float
    collective_s: float
    recv_s: float
    send_s: float
    host_s: float
    period_s: float


@dataclass(frozen=True)
class DeviceLinkLoad:
    """Traffic per item from one device to another (-1 = the host).

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
class LinkClassLoad:
    """Traffic per item over every link of one class."""

    link_class: str
    link_name: str
    bytes: int
    busy_s: float
    transfers: int


@dataclass(frozen=True)
class PipelineReport:
    """A simulated GPU pipeline (a `SimulationReport`).

    Attributes:
        stages: One entry per partition, in plan order.
        estimate: Latency, throughput, period and the stage bottleneck (`pipeline_estimate`).
        overlap_transfers: Whether transfers overlap compute.
        links: Directed device pairs that carry traffic, busiest first.
        link_classes: The same traffic per link class.
        bottleneck: The estimate's bottleneck as the plan records it ("stage 2", ...).
        decode: LLM decode-step figures, for plans of decode steps.
    """

    stages: tuple[StageLoad, ...]
    estimate: PipelineEstimate
    overlap_transfers: bool
    links: tuple[DeviceLinkLoad, ...]
    link_classes: tuple[LinkClassLoad, ...]
    bottleneck: Bottleneck
    decode: Mapping[str, Any] | None = field(default=None)

    kind = "gpu"

    @property
    def latency_s(self) -> float:
        return self.estimate.latency_s

    @property
    def throughput_per_s(self) -> float:
        return self.estimate.throughput_per_s

    @property
    def period_s(self) -> float:
        return self.estimate.period_s

    def with_decode(self, figures: Mapping[str, Any]) -> PipelineReport:
        return replace(self, decode=figures)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (an infinite throughput is null)."""
        details = {
            "overlap_transfers": self.overlap_transfers,
            "stages": [asdict(s) for s in self.stages],
            "links": [asdict(link) for link in self.links],
            "link_classes": [asdict(c) for c in self.link_classes],
        }
        return report_dict(self, details)


def pipeline_bottleneck_where(bottleneck: StageBottleneck) -> str:
    """A readable place for a pipeline bottleneck ("stage 2", "host input", ...)."""
    b = bottleneck
    return {
        "compute": f"stage {b.index}",
        "transfer": f"stage {b.index} transfers" if b.index >= 0 else "host input",
        "host": f"stage {b.index} host I/O",
        "link": f"link {b.index}",
    }.get(b.kind, str(b.index))


def _link_loads(
    partitions: Sequence[Partition],
    transfers: Sequence[Transfer],
    position: Mapping[int, int],
    target: GpuTarget,
    period_s: float,
) -> tuple[tuple[DeviceLinkLoad, ...], tuple[LinkClassLoad, ...]]:
    pairs: dict[tuple[int, int], list] = {}  # (src, dst) -> [class, name, bytes, busy, count]
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
        if HOST in (a, b):
            role = "host"
        else:
            role = "intra-node" if target.node_of(a) == target.node_of(b) else "inter-node"
        entry = pairs.setdefault((a, b), [role, link.name, 0, 0.0, 0])
        entry[2] += t.bytes
        entry[3] += t.time_s
        entry[4] += 1
    links = [
        DeviceLinkLoad(a, b, role, name, nbytes, busy, utilisation(busy, period_s), count)
        for (a, b), (role, name, nbytes, busy, count) in pairs.items()
    ]
    links.sort(key=lambda link: (-link.busy_s, link.src_device, link.dst_device))
    classes: dict[str, list] = {}
    for link in sorted(links, key=lambda link: (link.src_device, link.dst_device)):
        entry = classes.setdefault(link.link_class, [link.link_name, 0, 0.0, 0])
        entry[1] += link.bytes
        entry[2] += link.busy_s
        entry[3] += link.transfers
    order = ("intra-node", "inter-node", "host")
    totals = tuple(LinkClassLoad(role, *classes[role]) for role in order if role in classes)
    return tuple(links), totals


def simulate_gpu(
    partitions: Sequence[Partition],
    transfers: Sequence[Transfer],
    target: GpuTarget,
    *,
    overlap_transfers: bool,
    collectives: Sequence[Collective] = (),
) -> PipelineReport:
    """Stage times, the pipeline estimate and link loads of a GPU plan.

    Stage ``i`` is the i-th partition in plan order. It computes for its
    ``compute_s``, sends for Σ ``time_s`` of its transfers to other
    partitions, and spends Σ ``time_s`` of the transfers from or to the host
    on host I/O, and runs its tensor-parallel collectives (nothing overlaps
    them: each sits between two ops); `pipeline_estimate` turns these into
    latency, throughput and the bottleneck.

    Raises:
        SimulateError: A transfer names a missing partition or device.
    """
    if not partitions:
        raise SimulateError("the plan has no partitions to simulate")
    position = partition_positions(partitions)
    send_s = [0.0] * len(partitions)
    host_s = [0.0] * len(partitions)
    for t in transfers:
        check_transfer_ends(t, position)
        if t.src != HOST and t.dst != HOST:
            send_s[position[t.src]] += t.time_s
        else:
            host_s[position[t.dst if t.src == HOST else t.src]] += t.time_s
    collective_s = [0.0] * len(partitions)
    for c in collectives:
        if c.partition not in position:
            raise SimulateError(f"a collective names partition {c.partition}, which does not exist")
        collective_s[position[c.partition]] += c.time_s
    busy_s = [p.compute_s + c for p, c in zip(partitions, collective_s, strict=True)]
    estimate = pipeline_estimate(busy_s, send_s, overlap_transfers, stage_host_s=host_s)
    recv_s = stage_recv_s(send_s)
    stages = tuple(
        StageLoad(p.id, p.devices[0], p.compute_s, c, r, s, h, period)
        for p, c, r, s, h, period in zip(
            partitions, collective_s, recv_s, send_s, host_s, estimate.stage_period_s, strict=True
        )
    )
    links, classes = _link_loads(partitions, transfers, position, target, estimate.period_s)
    return PipelineReport(
        stages=stages,
        estimate=estimate,
        overlap_transfers=overlap_transfers,
        links=links,
        link_classes=classes,
        bottleneck=Bottleneck(
            estimate.bottleneck.kind, pipeline_bottleneck_where(estimate.bottleneck)
        ),
    )
