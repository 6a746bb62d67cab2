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

from partitioner.pipeline import PipelineSetup
from partitioner.plan import Bottleneck, Estimate, Partition, Transfer, transfer_order
from partitioner.simulate import decode_figures, pipeline_bottleneck_where, simulate_gpu
from passes.analysis.costs import CostReport
from passes.analysis.edges import transfer_bytes, unsized_tensors
from passes.analysis.liveness import activation_liveness
from passes.ir import Graph
from targets import HOST
from targets.cost import GpuCostModel, stage_memory_bytes
from targets.pipeline import PipelineEstimate

__all__ = ["PipelineLayout", "layout_pipeline", "llm_figures", "decode_batch", "unsized_extra"]


@dataclass(frozen=True)
class PipelineLayout:
    partitions: tuple[Partition, ...]
    transfers: tuple[Transfer, ...]
    estimate: PipelineEstimate
    stage_send_s: tuple[float, ...]
    stage_host_s: tuple[float, ...]


def _partition_nodes(
    graph: Graph, setup: PipelineSetup, stage_of: Sequence[int]
) -> list[list[int]]:
    parts: list[list[int]] = [[] for _ in range(setup.problem.num_stages)]
    for b, block in enumerate(setup.blocks.blocks):  # blocks are in topological order
        parts[stage_of[b]].extend(block.nodes)
    return parts


def _transfers(
    graph: Graph, owner: Mapping[int, int], devices: Sequence[int], cost: GpuCostModel
) -> list[Transfer]:
    out: list[Transfer] = []
    for t in graph.iter_tensors():
        if t.is_param:
            continue
        # A tensor of unknown size moves all the same (see passes.analysis.edges).
        size = transfer_bytes(t)
        readers = sorted({owner[c] for c in t.consumers if not graph.nodes[c].folded})
        if t.kind == "input":
            if t.is_kv_cache:
                continue  # resident on the stage that reads it
            for s in readers:
                time_s = cost.transfer_time_s(size, HOST, devices[s])
                out.append(Transfer(t.name, size, HOST, s, time_s))
            continue
        src = owner[t.producer]
        last = max([r for r in readers if r != src], default=src)
        for s in range(src, last):  # relayed stage to stage
            time_s = cost.transfer_time_s(size, devices[s], devices[s + 1])
            out.append(Transfer(t.name, size, s, s + 1, time_s))
        if t.is_graph_output and not t.is_kv_cache_output:
            time_s = cost.transfer_time_s(size, devices[src], HOST)
            out.append(Transfer(t.name, size, src, HOST, time_s))
    return sorted(out, key=transfer_order)


def layout_pipeline(
    graph: Graph,
    costs: CostReport,
    cost: GpuCostModel,
    setup: PipelineSetup,
    stage_of: Sequence[int],
) -> PipelineLayout:
    """Partitions, transfers and the pipeline estimate of an answer, computed exactly."""
    k_stages = setup.problem.num_stages
    parts = _partition_nodes(graph, setup, stage_of)
    owner = {n: k for k, nodes in enumerate(parts) for n in nodes}
    transfers = _transfers(graph, owner, setup.devices, cost)
    relay_through = [0] * k_stages
    for t in transfers:
        # A relay stage holds a tensor it neither makes nor reads: a transfer buffer.
        if t.src != HOST and t.dst != HOST:
            t_info = graph.tensors[t.tensor]
            if t.src != owner[t_info.producer] and not any(
                owner[c] == t.src for c in t_info.consumers if not graph.nodes[c].folded
            ):
                relay_through[t.src] += t.bytes
    partitions = []
    for k, nodes in enumerate(parts):
        runtime = [n for n in nodes if not graph.nodes[n].folded]
        params: dict[str, int] = {}
        kv: dict[str, int] = {}
        for n in runtime:
            for name in graph.nodes[n].present_inputs:
                t = graph.tensors.get(name)
                if t is not None and t.is_static and t.is_param:
                    params[name] = t.nbytes
                elif t is not None and t.is_static and t.is_kv_cache:
                    kv[name] = t.nbytes
        peak = activation_liveness(graph, runtime).peak_bytes if runtime else 0
        device = setup.devices[k]
        memory = stage_memory_bytes(
            sum(params.values()),
            peak,
            setup.problem.microbatches_in_flight,
            relay_through[k],
            sum(kv.values()),
        )
        partitions.append(
            Partition(
                id=k,
                device=device,
                stage=k,
                nodes=tuple(nodes),
                param_bytes=sum(params.values()),
                activation_bytes=peak,
                memory_bytes=memory,
                capacity_bytes=cost.capacity_bytes(device),
                flops=sum(costs.nodes[n].flops for n in runtime),
                compute_s=sum(setup.node_time_s[k][n] for n in runtime),
            )
        )
    # The simulator adds the seconds up, so a plan and `partition simulate` agree.
    report = simulate_gpu(
        partitions, transfers, cost.target, overlap_transfers=setup.problem.overlap_transfers
    )
    return PipelineLayout(
        tuple(partitions),
        tuple(transfers),
        report.estimate,
        tuple(stage.send_s for stage in report.stages),
        tuple(stage.host_s for stage in report.stages),
    )


def decode_batch(graph: Graph) -> int | None:
    """Tokens one step of an LLM decode graph makes (its batch), or None for other graphs.

    A decode-step graph takes a KV cache as inputs; its batch is the leading dim
    of its first other input (the token ids).
    """
    if not any(t.is_kv_cache for t in graph.iter_tensors()):
        return None
    for name in graph.inputs:
        t = graph.tensors[name]
        if not t.is_kv_cache and t.is_static and t.shape:
            return int(t.shape[0])  # type: ignore[arg-type]
    return 1


def llm_figures(
    graph: Graph, estimate: PipelineEstimate, cost: GpuCostModel, devices: Sequence[int]
) -> dict:
    """Decode-step figures for graphs with KV-cache inputs (empty for other graphs)."""
    batch = decode_batch(graph)
    if batch is None:
        return {}
    return decode_figures(batch, estimate.latency_s, estimate.throughput_per_s, cost, devices)


def unsized_extra(graph: Graph, transfers: Sequence[Transfer]) -> dict[str, list[str]]:
    """``{"unsized_transfers": [...]}``: tensors whose transfers record 0 bytes because
    their size is unknown, so their seconds count link latency only; empty if none."""
    unsized = unsized_tensors(graph, (t.tensor for t in transfers))
    return {"unsized_transfers": unsized} if unsized else {}


def estimate_record(layout: PipelineLayout, extra: Mapping[str, object]) -> Estimate:
    """The plan's ``estimate`` section."""
    e = layout.estimate
    return Estimate(
        latency_s=e.latency_s,
        throughput_per_s=e.throughput_per_s,
        bottleneck=Bottleneck(e.bottleneck.kind, pipeline_bottleneck_where(e.bottleneck)),
        extra={"period_s": e.period_s, "stage_period_s": list(e.stage_period_s), **extra},
    )
