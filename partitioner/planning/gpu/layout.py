"""Turn a pipeline answer (stage per block) into a Plan with exact figures.

The solver works on coarse, conservative numbers; the plan is computed again
exactly from the nodes: distinct parameters per partition, the activation
peak of the partition's own schedule (received tensors live from the start,
sent ones to the end), and tensors relayed through a stage as its transfer
buffers. Times come from the same `CostModel` the solver used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from partitioner.plan import (
    Bottleneck,
    Collective,
    Estimate,
    Partition,
    Shard,
    Transfer,
    transfer_order,
)
from partitioner.planning.common import decode_batch
from partitioner.planning.gpu.problem import PipelineSetup
from partitioner.planning.gpu.stages import stage_collectives, stage_partition, stage_shards
from partitioner.simulate import batches_in_flight, decode_figures, simulate_gpu
from passes.analysis.costs import CostReport
from passes.analysis.partition_io import tensor_flows
from passes.ir import Graph
from targets import HOST
from targets.cost import GpuCostModel
from targets.pipeline import PipelineEstimate

__all__ = ["PipelineLayout", "layout_pipeline", "llm_figures", "estimate_record"]


@dataclass(frozen=True)
class PipelineLayout:
    partitions: tuple[Partition, ...]
    transfers: tuple[Transfer, ...]
    estimate: PipelineEstimate
    bottleneck: Bottleneck
    stage_send_s: tuple[float, ...]
    stage_host_s: tuple[float, ...]
    shards: tuple[Shard, ...] = ()
    collectives: tuple[Collective, ...] = ()


def _partition_nodes(
    graph: Graph, setup: PipelineSetup, stage_of: Sequence[int]
) -> list[list[int]]:
    parts: list[list[int]] = [[] for _ in range(setup.problem.num_stages)]
    for b, block in enumerate(setup.blocks.blocks):  # blocks are in topological order
        parts[stage_of[b]].extend(block.nodes)
    return parts


def _transfers(
    graph: Graph, owner: Mapping[int, int], devices: Sequence[int], cost_model: GpuCostModel
) -> list[Transfer]:
    """Model inputs go to each reader; activations are relayed stage to stage up to
    their last reader; outputs go back to the host."""
    out: list[Transfer] = []
    for f in tensor_flows(graph, owner):
        if f.src == HOST:
            for s in f.readers:
                time_s = cost_model.transfer_time_s(f.bytes, HOST, devices[s])
                out.append(Transfer(f.tensor, f.bytes, HOST, s, time_s))
            continue
        for s in range(f.src, max(f.readers, default=f.src)):
            time_s = cost_model.transfer_time_s(f.bytes, devices[s], devices[s + 1])
            out.append(Transfer(f.tensor, f.bytes, s, s + 1, time_s))
        if f.to_host:
            time_s = cost_model.transfer_time_s(f.bytes, devices[f.src], HOST)
            out.append(Transfer(f.tensor, f.bytes, f.src, HOST, time_s))
    return sorted(out, key=transfer_order)


def _relay_buffers(
    graph: Graph, owner: Mapping[int, int], transfers: Sequence[Transfer], k_stages: int
) -> list[int]:
    """Bytes each stage relays: tensors it neither makes nor reads, held as transfer buffers."""
    relay_through = [0] * k_stages
    for t in transfers:
        if t.src != HOST and t.dst != HOST:
            t_info = graph.tensors[t.tensor]
            if t.src != owner[t_info.producer] and not any(
                owner[c] == t.src for c in t_info.consumers if not graph.nodes[c].folded
            ):
                relay_through[t.src] += t.bytes
    return relay_through


def layout_pipeline(
    graph: Graph,
    costs: CostReport,
    cost_model: GpuCostModel,
    setup: PipelineSetup,
    stage_of: Sequence[int],
) -> PipelineLayout:
    """Partitions, transfers and the pipeline estimate of an answer, computed exactly."""
    parts = _partition_nodes(graph, setup, stage_of)
    owner = {n: k for k, nodes in enumerate(parts) for n in nodes}
    transfers = _transfers(graph, owner, setup.devices, cost_model)
    relay = _relay_buffers(graph, owner, transfers, setup.problem.num_stages)
    partitions = [
        stage_partition(
            graph,
            costs,
            cost_model,
            setup,
            k,
            nodes,
            relay[k],
            {t.tensor for t in transfers if t.src == k},
        )  # fmt: skip
        for k, nodes in enumerate(parts)
    ]
    shards = tuple(s for p in partitions for s in stage_shards(graph, setup, p))
    collectives = tuple(
        c for p in partitions for c in stage_collectives(cost_model, setup, owner, p)
    )
    # The simulator adds the seconds up, so a plan and `partition simulate` agree.
    report = simulate_gpu(
        partitions,
        transfers,
        cost_model.target,
        overlap_transfers=setup.problem.overlap_transfers,
        collectives=collectives,
    )
    return PipelineLayout(
        tuple(partitions),
        tuple(transfers),
        report.estimate,
        report.bottleneck,
        tuple(stage.send_s for stage in report.stages),
        tuple(stage.host_s for stage in report.stages),
        shards,
        collectives,
    )


def llm_figures(
    graph: Graph,
    estimate: PipelineEstimate,
    cost_model: GpuCostModel,
    devices: Sequence[int],
    partitions: Sequence[Partition],
    replicas: int = 1,
) -> dict:
    """Decode-step figures for graphs with KV-cache inputs (empty for other graphs),
    the batches in flight capped by the KV caches the stages' memory holds."""
    batch = decode_batch(graph)
    if batch is None:
        return {}
    e = estimate
    in_flight = batches_in_flight(partitions, batch, e.latency_s, e.throughput_per_s, replicas)
    return decode_figures(batch, e.latency_s, e.throughput_per_s, cost_model, devices, in_flight)


def estimate_record(layout: PipelineLayout, extra: Mapping[str, object]) -> Estimate:
    """The plan's ``estimate`` section."""
    e = layout.estimate
    return Estimate(
        latency_s=e.latency_s,
        throughput_per_s=e.throughput_per_s,
        bottleneck=layout.bottleneck,
        extra={"period_s": e.period_s, "stage_period_s": list(e.stage_period_s), **extra},
    )
