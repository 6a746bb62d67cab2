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
from partitioner.simulate.common import SimulateError, check_transfer_ends, partition_positions
from partitioner.simulate.gpu_links import DeviceLinkLoad, GpuLinkLoad, LinkClassLoad, link_loads
from partitioner.simulate.report import report_dict
from targets.gpu import GpuTarget
from targets.pipeline import PipelineEstimate, StageBottleneck, pipeline_estimate, stage_recv_s

__all__ = [
    "DeviceLinkLoad",
    "GpuLinkLoad",
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
    ``device`` is the first of the stage's ``devices`` (its tensor-parallel group).
    """

    partition: int
    device: int
    compute_s: float
    collective_s: float
    recv_s: float
    send_s: float
    host_s: float
    period_s: float
    devices: tuple[int, ...] = ()


@dataclass(frozen=True)
class PipelineReport:
    """A simulated GPU pipeline (a `SimulationReport`).

    Attributes:
        stages: One entry per partition, in plan order.
        estimate: Latency, throughput, period and the stage bottleneck (`pipeline_estimate`).
        overlap_transfers: Whether transfers overlap compute.
        links: Directed device pairs that carry point-to-point transfers, busiest first.
        gpu_links: Each GPU's traffic per link class, collectives included, by device.
        link_classes: Every GPU's traffic per link class, summed.
        bottleneck: The estimate's bottleneck as the plan records it ("stage 2", ...).
        decode: LLM decode-step figures, for plans of decode steps.
        replicas: data-parallel copies of the pipeline (``parallelism.dp``); each
            serves its own requests, so the throughput is theirs together.
    """

    stages: tuple[StageLoad, ...]
    estimate: PipelineEstimate
    overlap_transfers: bool
    links: tuple[DeviceLinkLoad, ...]
    gpu_links: tuple[GpuLinkLoad, ...]
    link_classes: tuple[LinkClassLoad, ...]
    bottleneck: Bottleneck
    decode: Mapping[str, Any] | None = field(default=None)
    replicas: int = 1

    kind = "gpu"

    @property
    def latency_s(self) -> float:
        return self.estimate.latency_s

    @property
    def throughput_per_s(self) -> float:
        return self.estimate.throughput_per_s * self.replicas

    @property
    def period_s(self) -> float:
        return self.estimate.period_s

    def with_decode(self, figures: Mapping[str, Any]) -> PipelineReport:
        return replace(self, decode=figures)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (an infinite throughput is null)."""
        details = {
            "overlap_transfers": self.overlap_transfers,
            "replicas": self.replicas,
            "stages": [asdict(s) for s in self.stages],
            "links": [asdict(link) for link in self.links],
            "gpu_links": [asdict(g) for g in self.gpu_links],
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


def _stage_seconds(
    transfers: Sequence[Transfer], collectives: Sequence[Collective], position: Mapping[int, int]
) -> tuple[list[float], list[float], list[float]]:
    """Per stage: seconds sending to other stages, on host I/O, and in collectives."""
    send_s = [0.0] * len(position)
    host_s = [0.0] * len(position)
    for t in transfers:
        check_transfer_ends(t, position)
        if t.src != HOST and t.dst != HOST:
            send_s[position[t.src]] += t.time_s
        else:
            host_s[position[t.dst if t.src == HOST else t.src]] += t.time_s
    collective_s = [0.0] * len(position)
    for c in collectives:
        if c.partition not in position:
            raise SimulateError(f"a collective names partition {c.partition}, which does not exist")
        collective_s[position[c.partition]] += c.time_s
    return send_s, host_s, collective_s


def simulate_gpu(
    partitions: Sequence[Partition],
    transfers: Sequence[Transfer],
    target: GpuTarget,
    *,
    overlap_transfers: bool,
    collectives: Sequence[Collective] = (),
    replicas: int = 1,
) -> PipelineReport:
    """Stage times, the pipeline estimate and link loads of a GPU plan.

    Stage ``i`` is the i-th partition in plan order. It computes for its
    ``compute_s``, sends for Σ ``time_s`` of its transfers to other
    partitions, and spends Σ ``time_s`` of the transfers from or to the host
    on host I/O, and runs its tensor-parallel collectives (nothing overlaps
    them: each sits between two ops); `pipeline_estimate` turns these into
    latency, throughput and the bottleneck; `gpu_links.link_loads` the
    link loads, each collective's ring traffic on every GPU of its group.

    Raises:
        SimulateError: A transfer names a missing partition or device.
    """
    if not partitions:
        raise SimulateError("the plan has no partitions to simulate")
    position = partition_positions(partitions)
    send_s, host_s, collective_s = _stage_seconds(transfers, collectives, position)
    busy_s = [p.compute_s + c for p, c in zip(partitions, collective_s, strict=True)]
    estimate = pipeline_estimate(busy_s, send_s, overlap_transfers, stage_host_s=host_s)
    recv_s = stage_recv_s(send_s)
    stages = tuple(
        StageLoad(p.id, p.devices[0], p.compute_s, c, r, s, h, period, tuple(p.devices))
        for p, c, r, s, h, period in zip(
            partitions, collective_s, recv_s, send_s, host_s, estimate.stage_period_s, strict=True
        )
    )
    links, gpu_links, classes = link_loads(
        partitions, transfers, collectives, position, target, estimate.period_s
    )
    return PipelineReport(
        stages=stages,
        estimate=estimate,
        overlap_transfers=overlap_transfers,
        links=links,
        gpu_links=gpu_links,
        link_classes=classes,
        bottleneck=Bottleneck(
            estimate.bottleneck.kind, pipeline_bottleneck_where(estimate.bottleneck)
        ),
        replicas=replicas,
    )
