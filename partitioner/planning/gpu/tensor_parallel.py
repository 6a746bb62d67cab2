"""Tensor parallelism on GPUs: what a sharding does to each node's seconds and bytes.

A pipeline stage with tensor-parallel degree t runs on a group of t GPUs. The
sharding analysis (`passes.analysis.sharding`) says which nodes split their
work t ways, which parameters and KV caches are sliced, and which collectives
follow which nodes. Here that becomes numbers for the pipeline solver:

- a sharded node's FLOPs are divided by t, and its bytes moved scale with the
  bytes of its local inputs and outputs (a column-split MatMul reads the whole
  activation but 1/t of its weight);
- a replicated node costs what it costs on one GPU: every rank runs it whole;
- a collective runs right after its node, over the group's link, and nothing
  overlaps it (`GpuCostModel.collective_time_s`);
- a rank holds 1/t of every sharded parameter and KV cache, and all of the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from passes.analysis.costs import CostReport, NodeCost
from passes.analysis.sharding import ShardingPlan
from passes.ir import Graph
from targets.cost import GpuCostModel, OpTime

__all__ = [
    "GroupCosts",
    "collective_seconds",
    "group_costs",
    "local_bytes",
    "local_param_bytes",
    "node_time",
    "rank_kernels",
    "rank_work",
    "stage_groups",
]


@dataclass(frozen=True)
class GroupCosts:
    """Seconds of every node on one tensor-parallel group, collectives included.

    Attributes:
        node_time_s: per node (0 for folded nodes): compute on one rank plus the
            collectives that follow it.
        collective_s: per node: the collectives' share of ``node_time_s``.
    """

    node_time_s: tuple[float, ...]
    collective_s: tuple[float, ...]


def stage_groups(first_device: int, tp: int, pp: int) -> tuple[tuple[int, ...], ...]:
    """``pp`` groups of ``tp`` consecutive devices: a group fills a node before the next.

    Consecutive devices share a node whenever tp divides the GPUs per node,
    which `tp_candidates` requires unless the target lets groups span nodes.
    """
    return tuple(
        tuple(range(first_device + k * tp, first_device + (k + 1) * tp)) for k in range(pp)
    )


def local_bytes(graph: Graph, sharding: ShardingPlan | None, name: str) -> int:
    """Bytes of tensor ``name`` on one rank: its local shape, or the whole tensor."""
    t = graph.tensors[name]
    if sharding is None or sharding.degree == 1:
        return t.nbytes
    shape = sharding.local_shapes.get(name)
    if shape is None or not t.shape:
        return t.nbytes
    whole = 1
    for d in t.shape:
        whole *= int(d)  # type: ignore[arg-type]
    local = 1
    for d in shape:
        local *= int(d)
    return t.nbytes * local // whole if whole else t.nbytes


def local_param_bytes(graph: Graph, sharding: ShardingPlan | None, names: Iterable[str]) -> int:
    """Bytes of the parameters (and resident KV caches) ``names`` on one rank."""
    return sum(local_bytes(graph, sharding, n) for n in names if graph.tensors[n].is_static)


def _local_scale(graph: Graph, sharding: ShardingPlan, index: int) -> float:
    """Local over global bytes of a node's inputs and outputs (1 for a replicated node)."""
    node = graph.nodes[index]
    names = [n for n in (*node.present_inputs, *node.present_outputs) if n in graph.tensors]
    whole = sum(graph.tensors[n].nbytes for n in names if graph.tensors[n].is_static)
    if whole == 0:
        return 1.0
    local = sum(local_bytes(graph, sharding, n) for n in names if graph.tensors[n].is_static)
    return local / whole


def node_time(
    graph: Graph,
    costs: CostReport,
    cost_model: GpuCostModel,
    sharding: ShardingPlan | None,
    group: Sequence[int],
    index: int,
) -> OpTime:
    """One runtime node's roofline terms on one rank of ``group`` (collectives apart)."""
    c = costs.nodes[index]
    flops, moved = rank_work(graph, costs, sharding, len(group), index)
    return cost_model.op_time_parts(flops, moved, c.dtype or "float32", group[0], rank_kernels(c))


def rank_work(
    graph: Graph, costs: CostReport, sharding: ShardingPlan | None, degree: int, index: int
) -> tuple[float, float]:
    """A node's FLOPs and bytes moved on one rank of a group of ``degree`` devices."""
    c = costs.nodes[index]
    flops, moved = float(c.flops), float(c.bytes_moved)
    if sharding is not None and degree > 1 and index in sharding.sharded_nodes:
        flops /= degree
        moved *= _local_scale(graph, sharding, index)
    return flops, moved


def rank_kernels(cost: NodeCost) -> int:
    """Launches a node costs: none for a view."""
    return 0 if cost.is_view else cost.kernels


def collective_seconds(
    cost_model: GpuCostModel, sharding: ShardingPlan | None, group: Sequence[int]
) -> dict[int, float]:
    """Node index -> seconds of the collectives right after it, on the group's link."""
    after: dict[int, float] = {}
    if sharding is None or len(group) < 2:
        return after
    for op in sharding.collectives:
        seconds = cost_model.collective_time_s(op.kind, op.nbytes, group)
        after[op.node] = after.get(op.node, 0.0) + seconds
    return after


def group_costs(
    graph: Graph,
    costs: CostReport,
    cost_model: GpuCostModel,
    sharding: ShardingPlan | None,
    group: Sequence[int],
) -> GroupCosts:
    """Every node's seconds on ``group`` under ``sharding`` (None: one GPU, no sharding)."""
    after = collective_seconds(cost_model, sharding, group)
    times, comm = [], []
    for node in graph.nodes:
        if node.folded:
            times.append(0.0)
            comm.append(0.0)
            continue
        seconds = node_time(graph, costs, cost_model, sharding, group, node.index).total_s
        comm.append(after.get(node.index, 0.0))
        times.append(seconds + comm[-1])
    return GroupCosts(tuple(times), tuple(comm))
