"""One pipeline stage of a GPU plan, computed exactly: its partition, shards, collectives.

Sizes are per device: a rank of a tensor-parallel group holds 1/t of every
sharded parameter and KV cache and all of the rest. ``compute_s`` leaves the
collectives out; each is listed apart with its seconds on the group's link.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

from partitioner.plan import Collective, Partition, Shard
from partitioner.planning.gpu.problem import PipelineSetup
from partitioner.planning.gpu.tensor_parallel import local_bytes, local_param_bytes
from passes.analysis.costs import CostReport
from passes.analysis.fusion import in_place_outputs
from passes.analysis.liveness import activation_liveness
from passes.analysis.partition_io import residency
from passes.ir import Graph
from targets.cost import GpuCostModel, stage_memory_bytes

__all__ = ["stage_partition", "stage_shards", "stage_collectives"]


def _compute_s(setup: PipelineSetup, k: int, runtime: Sequence[int]) -> float:
    """The stage's kernels (collectives apart) plus its fixed cost per step."""
    times = setup.node_time_s[k]
    overhead_s = setup.problem.stage_overhead_s[k] if setup.problem.stage_overhead_s else 0.0
    if not setup.collective_s:
        return overhead_s + sum(times[n] for n in runtime)
    return overhead_s + sum(times[n] - setup.collective_s[k][n] for n in runtime)


def _rank_bytes(graph: Graph, setup: PipelineSetup) -> Callable[[str], int] | None:
    """Bytes one rank holds of a tensor: its local slice, or all of it once gathered."""
    sharding = setup.sharding
    if sharding is None or sharding.degree == 1:
        return None
    gathered = {op.tensor for op in sharding.collectives if op.kind == "all_gather"}

    def nbytes(name: str) -> int:
        if name in gathered:
            return graph.tensors[name].nbytes
        return local_bytes(graph, sharding, name)

    return nbytes


def stage_partition(
    graph: Graph,
    costs: CostReport,
    cost_model: GpuCostModel,
    setup: PipelineSetup,
    k: int,
    nodes: Sequence[int],
    relay_bytes: int,
    sent: Collection[str] = (),
) -> Partition:
    """Stage ``k``: distinct parameters, its own activation peak (what it receives, reads
    and ``sent`` on is held to the end), its relay buffers."""
    runtime = [n for n in nodes if not graph.nodes[n].folded]
    held = residency(graph, runtime)
    param_bytes = local_param_bytes(graph, setup.sharding, held.params)
    kv_bytes = local_param_bytes(graph, setup.sharding, held.kv_cache)
    in_place = in_place_outputs(graph, cost_model.target.runtime)  # a fused runtime's appends
    peak = (
        activation_liveness(graph, runtime, _rank_bytes(graph, setup), sent, in_place).peak_bytes
        if runtime
        else 0
    )
    group = setup.groups[k] if setup.groups else (setup.devices[k],)
    memory = stage_memory_bytes(
        param_bytes, peak, setup.problem.microbatches_in_flight, relay_bytes, kv_bytes
    )
    return Partition(
        id=k,
        stage=k,
        devices=group,
        nodes=tuple(nodes),
        param_bytes=param_bytes,
        activation_bytes=peak,
        kv_cache_bytes=kv_bytes,
        memory_bytes=memory,
        capacity_bytes=min(cost_model.capacity_bytes(d) for d in group),
        flops=sum(costs.nodes[n].flops for n in runtime),
        compute_s=_compute_s(setup, k, runtime),
    )


def stage_shards(graph: Graph, setup: PipelineSetup, part: Partition) -> list[Shard]:
    """The partition's sliced parameters and KV caches, in first-use order."""
    sharding = setup.sharding
    if sharding is None or len(part.devices) == 1:
        return []
    held = residency(graph, [n for n in part.nodes if not graph.nodes[n].folded])
    parts = len(part.devices)
    out = [
        Shard(name, part.id, sharding.weights[name], parts)
        for name in held.params
        if name in sharding.weights
    ]
    for name in held.kv_cache:
        layout = sharding.layouts.get(name)
        if layout is not None and layout.axis is not None:
            out.append(Shard(name, part.id, layout.axis, parts))
    return out


def stage_collectives(
    cost_model: GpuCostModel, setup: PipelineSetup, owner: Mapping[int, int], part: Partition
) -> list[Collective]:
    """The collectives after the partition's nodes, timed on its group's link."""
    if setup.sharding is None or len(part.devices) == 1:
        return []
    return [
        Collective(
            op.kind,
            op.tensor,
            part.id,
            op.nbytes,
            cost_model.collective_time_s(op.kind, op.nbytes, part.devices),
        )
        for op in setup.sharding.collectives
        if owner[op.node] == part.id
    ]
