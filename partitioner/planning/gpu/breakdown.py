"""Where a GPU plan's time goes: per stage, compute, HBM traffic, launches, collectives,
pipeline transfers; and which of them dominates one step.

Every second is a term of the one cost model: an op's roofline time is
``max(compute, memory) + launch`` (`GpuCostModel.op_time_parts`), so an op
counts as compute-bound or memory-bound by its larger term (on a device that
computes and moves memory in turn, a CPU thread, every op counts in both, and
the breakdown says so with ``in_turn``), and a collective's
seconds split into its per-call latency and its bytes over the link's bus
bandwidth. A stage's fixed cost a step (the target's ``step_overhead_s``: a
CUDA-graph replay's launch, a ``session.run`` call) counts as a launch. The
buckets of a stage add up to its busy time, and the buckets of all stages to
the plan's latency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from partitioner.plan import Collective, Partition, Transfer
from partitioner.planning.gpu.problem import PipelineSetup
from partitioner.planning.gpu.tensor_parallel import node_time
from partitioner.simulate.breakdown import (
    BREAKDOWN_LABELS,
    breakdown_label,
    breakdown_lines,
    breakdown_link,
)
from passes.analysis.costs import CostReport
from passes.ir import Graph
from targets import HOST
from targets.cost import GpuCostModel

__all__ = ["StageTime", "stage_times", "time_breakdown", "breakdown_lines"]


@dataclass(frozen=True)
class StageTime:
    """Seconds of one stage per step, by what they are spent on."""

    stage: int
    compute_bound_s: float
    memory_bound_s: float
    launch_s: float
    collective_latency_s: float
    collective_bandwidth_s: float
    transfer_s: float
    link: str

    @property
    def total_s(self) -> float:
        return (
            self.compute_bound_s
            + self.memory_bound_s
            + self.launch_s
            + self.collective_latency_s
            + self.collective_bandwidth_s
            + self.transfer_s
        )


def _op_buckets(
    graph: Graph, costs: CostReport, cost_model: GpuCostModel, setup: PipelineSetup, part: Partition
) -> tuple[float, float, float]:
    compute = memory = launch = 0.0
    for n in part.nodes:
        if graph.nodes[n].folded:
            continue
        t = node_time(graph, costs, cost_model, setup.sharding, part.devices, n)
        if not t.overlap:  # one CPU thread: it pays both, in turn
            compute += t.compute_s
            memory += t.memory_s
        elif t.bound == "compute":
            compute += t.compute_s
        else:
            memory += t.memory_s
        launch += t.launch_s
    return compute, memory, launch


def stage_times(
    graph: Graph,
    costs: CostReport,
    cost_model: GpuCostModel,
    setup: PipelineSetup,
    partitions: Sequence[Partition],
    transfers: Sequence[Transfer],
    collectives: Sequence[Collective],
) -> list[StageTime]:
    """Each stage's seconds by bucket (transfers: what it sends and its host I/O)."""
    out = []
    fixed = setup.problem.stage_overhead_s
    for p in partitions:
        compute, memory, launch = _op_buckets(graph, costs, cost_model, setup, p)
        launch += fixed[p.stage] if fixed else 0.0  # the stage's one call a step
        link = cost_model.group_link(p.devices) if len(p.devices) > 1 else None
        mine = [c for c in collectives if c.partition == p.id]
        latency = len(mine) * link.collective_latency_s if link is not None else 0.0
        collective = sum(c.time_s for c in mine)
        moved = sum(
            t.time_s for t in transfers if t.src == p.id or (t.src == HOST and t.dst == p.id)
        )
        out.append(
            StageTime(
                p.stage,
                compute,
                memory,
                launch,
                min(latency, collective),
                max(collective - latency, 0.0),
                moved,
                link.name if link is not None else "",
            )
        )
    return out


def time_breakdown(stages: Sequence[StageTime], in_turn: bool = False) -> dict[str, Any]:
    """The plan's ``estimate.time_breakdown``: per stage, per step, and the largest share.

    ``dominant`` reads like "kernel launches: 74% of the step". ``in_turn``: the devices
    compute and move memory in turn (``compute_memory_overlap: false``), so every op's
    FLOPs and bytes are both counted; recorded as ``"in_turn": true``, and only then.
    """
    keys = list(BREAKDOWN_LABELS)
    step = {k: sum(getattr(s, k) for s in stages) for k in keys}
    total = sum(step.values())
    shares = {k: (v / total if total > 0 else 0.0) for k, v in step.items()}
    top = max(keys, key=lambda k: (step[k], -keys.index(k)))
    doc: dict[str, Any] = {"stages": [asdict(s) for s in stages], "step": step, "shares": shares}
    if in_turn:
        doc["in_turn"] = True
    label = breakdown_label(top, breakdown_link(doc), in_turn)
    doc["dominant"] = f"{label}: {100 * shares[top]:.0f}% of the step"
    return doc
