"""From a model and a GPU target to the numbers the pipeline solvers take.

Every second here comes from the target's `CostModel`: node times from its
roofline, transfer times from its links. The solvers then only add numbers up.

Stage k runs on device k of the chosen devices (the target's first K, which
fills a node's NVLink domain before crossing the network).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from partitioner.planning.gpu.tensor_parallel import GroupCosts, group_costs, local_param_bytes
from partitioner.solvers.problem import HostFlow, PipelineProblem, RelayFlow
from passes.analysis.costs import CostReport
from passes.analysis.partition_io import residency, tensor_flows
from passes.analysis.sharding import ShardingPlan
from passes.ir import Graph
from passes.transforms.coarsen import BlockGraph, Coarsen, target_block_count
from targets import HOST
from targets.cost import GpuCostModel

__all__ = [
    "PipelineSetup",
    "build_pipeline_problem",
    "stage_flows",
    "conservative_activation",
    "TransferTime",
]


@dataclass(frozen=True)
class PipelineSetup:
    """The coarsened graph, the solver's numbers and how they were made.

    Attributes:
        devices: each stage's lead device (the first of its group).
        node_time_s: [stage][node] seconds on the stage's group, collectives included.
        groups: each stage's tensor-parallel group of devices.
        sharding: the tensor-parallel sharding (None: one device per stage).
        collective_s: [stage][node] the collectives' share of ``node_time_s``.
    """

    blocks: BlockGraph
    problem: PipelineProblem
    devices: tuple[int, ...]
    node_time_s: tuple[tuple[float, ...], ...]
    groups: tuple[tuple[int, ...], ...] = ()
    sharding: ShardingPlan | None = None
    collective_s: tuple[tuple[float, ...], ...] = ()


def _stage_overhead_s(
    cost_model: GpuCostModel, groups: Sequence[Sequence[int]]
) -> tuple[float, ...]:
    """Each stage's fixed cost per step (its slowest rank's), or () when none has one."""
    overhead = tuple(max(cost_model.step_overhead_s(d) for d in group) for group in groups)
    return overhead if any(overhead) else ()


TransferTime = Callable[[int, int, int], float]
"""``(nbytes, src_device, dst_device) -> seconds``; -1 is the host (the cost model's link)."""


def stage_flows(graph: Graph, blocks: BlockGraph, transfer_s: TransferTime, devices: Sequence[int]):
    """Relayed tensors between blocks, model inputs and outputs, timed per stage boundary.

    Returns:
        (relay flows, host input flows, [block][stage] host-output seconds).
    """
    k_stages = len(devices)
    grouped: dict[tuple[int, tuple[int, ...]], list[int]] = defaultdict(list)
    host_in: list[HostFlow] = []
    host_out_tensors: list[list[int]] = [[] for _ in blocks.blocks]
    # A tensor of unknown size still crosses (at 0 bytes: its link latency), as
    # the plan's transfers will (see passes.analysis.edges).
    for f in tensor_flows(graph, blocks.block_of):
        if f.src == HOST:
            stage_s = tuple(transfer_s(f.bytes, HOST, d) for d in devices)
            host_in.append(HostFlow(f.readers, f.bytes, stage_s))
            continue
        if f.readers:
            grouped[f.src, f.readers].append(f.bytes)
        if f.to_host:
            host_out_tensors[f.src].append(f.bytes)
    relay = []
    for (src, dsts), sizes in sorted(grouped.items()):
        boundary_s = tuple(
            sum(transfer_s(size, devices[k], devices[k + 1]) for size in sizes)
            for k in range(k_stages - 1)
        )
        relay.append(RelayFlow(src, dsts, sum(sizes), boundary_s))
    host_out_s = tuple(
        tuple(sum(transfer_s(size, d, HOST) for size in sizes) for d in devices)
        for sizes in host_out_tensors
    )
    return tuple(relay), tuple(host_in), host_out_s


def conservative_activation(blocks: BlockGraph, relay: Sequence[RelayFlow]) -> tuple[int, ...]:
    """Block peak plus tensors passing over the block in block order (live while it runs)."""
    n = len(blocks.blocks)
    passing = [0] * (n + 1)
    for f in relay:
        last = max(f.dsts)
        if last > f.src + 1:
            passing[f.src + 1] += f.bytes
            passing[last] -= f.bytes
    out, running = [], 0
    for b in range(n):
        running += passing[b]
        out.append(blocks.blocks[b].activation_peak_bytes + running)
    return tuple(out)


def _group_times(
    graph: Graph,
    costs: CostReport,
    cost_model: GpuCostModel,
    groups: Sequence[tuple[int, ...]],
    sharding: ShardingPlan | None,
) -> tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]:
    """[stage][node] seconds on each group, and the collectives' share of them.

    Groups of the same GPU model, link and size cost the same: computed once.
    """
    by_key: dict[object, GroupCosts] = {}
    for group in groups:
        key = (cost_model.target.devices[group[0]], cost_model.group_link(group), len(group))
        if key not in by_key:
            by_key[key] = group_costs(graph, costs, cost_model, sharding, group)
    chosen = [
        by_key[(cost_model.target.devices[g[0]], cost_model.group_link(g), len(g))] for g in groups
    ]
    return tuple(c.node_time_s for c in chosen), tuple(c.collective_s for c in chosen)


def _resident_bytes(
    graph: Graph, blocks: BlockGraph, sharding: ShardingPlan | None
) -> tuple[int, ...]:
    """Per block, parameters and KV caches one device holds (1/t of the sharded ones)."""
    if sharding is None or sharding.degree == 1:
        return tuple(b.param_bytes + b.kv_cache_bytes for b in blocks.blocks)
    out = []
    for b in blocks.blocks:
        held = residency(graph, [n for n in b.nodes if not graph.nodes[n].folded])
        out.append(local_param_bytes(graph, sharding, [*held.params, *held.kv_cache]))
    return tuple(out)


def build_pipeline_problem(
    graph: Graph,
    costs: CostReport,
    cost_model: GpuCostModel,
    devices: Sequence[int],
    *,
    objective: str = "throughput",
    microbatches_in_flight: int = 1,
    overlap_transfers: bool = False,
    target_blocks: int | None = None,
    groups: Sequence[tuple[int, ...]] | None = None,
    sharding: ShardingPlan | None = None,
) -> PipelineSetup:
    """Coarsen ``graph`` for ``len(devices)`` stages and express the problem in numbers.

    With ``groups`` and a ``sharding``, stage k runs tensor-parallel on
    ``groups[k]`` (whose first device is ``devices[k]``).
    """
    groups = tuple(groups) if groups is not None else tuple((d,) for d in devices)
    if sharding is not None and sharding.degree == 1:
        sharding = None
    stage_times, collective_s = _group_times(graph, costs, cost_model, groups, sharding)
    if sharding is None:
        collective_s = ()  # one device per stage: no collectives to set apart
    runtime_nodes = sum(1 for n in graph.nodes if not n.folded)
    wanted = target_blocks or target_block_count(len(devices), runtime_nodes)
    smallest = min(cost_model.capacity_bytes(d) for d in devices)
    blocks = Coarsen(costs, stage_times[0], wanted, max_block_param_bytes=smallest // 4)(
        graph
    ).model
    relay, host_in, host_out_s = stage_flows(graph, blocks, cost_model.transfer_time_s, devices)
    block_time = tuple(
        tuple(sum(stage_times[k][i] for i in b.nodes) for k in range(len(devices)))
        for b in blocks.blocks
    )
    problem = PipelineProblem(
        num_stages=len(devices),
        block_time_s=block_time,
        block_resident_bytes=_resident_bytes(graph, blocks, sharding),
        block_activation_bytes=conservative_activation(blocks, relay),
        block_host_out_s=host_out_s,
        edges=tuple((e.src, e.dst) for e in blocks.edges),
        relay_flows=relay,
        host_flows=host_in,
        capacity_bytes=tuple(cost_model.capacity_bytes(d) for d in devices),
        microbatches_in_flight=microbatches_in_flight,
        overlap_transfers=overlap_transfers,
        objective=objective,
        block_nodes=tuple(
            sum(1 for i in b.nodes if not graph.nodes[i].folded) for b in blocks.blocks
        ),
        stage_overhead_s=_stage_overhead_s(cost_model, groups),
    )
    return PipelineSetup(
        blocks, problem, tuple(devices), stage_times, groups, sharding, collective_s
    )
