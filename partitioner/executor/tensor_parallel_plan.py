"""The sharding a tensor-parallel plan partition runs, checked against the model's.

`group_sharding` builds it from the plan's own shards and collectives once
`check_group_sharding` found them equal to what
`passes.analysis.sharding.shard_graph` says for the partition's nodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from partitioner.executor.graph_run import PlanExecutionError
from partitioner.plan import Partition, Plan
from passes.analysis.partition_io import partition_io
from passes.analysis.sharding import ShardingPlan
from passes.analysis.sharding_layout import ALL_GATHER, CollectiveOp, Layout
from passes.ir import Graph
from passes.transforms.tensor_parallel import tensor_layout

__all__ = ["check_group_sharding", "group_sharding"]


def _planned(plan: Plan, partition: Partition) -> tuple[dict[str, int], dict[str, str]]:
    """The partition's shards (tensor -> axis) and collectives (tensor -> kind) as planned."""
    degree = len(partition.devices)
    shards: dict[str, int] = {}
    for s in plan.shards:
        if s.partition != partition.id:
            continue
        if s.parts != degree:
            raise PlanExecutionError(
                f"partition {partition.id}: the plan splits {s.tensor!r} into {s.parts} parts, "
                f"but the partition has {degree} devices"
            )
        shards[s.tensor] = s.axis
    kinds = {c.tensor: c.kind for c in plan.collectives if c.partition == partition.id}
    return shards, kinds


def _expected(
    graph: Graph, sharding: ShardingPlan, order: Sequence[int]
) -> tuple[dict[str, int], dict[str, str]]:
    """The same, as sharding the model says for the partition's nodes."""
    io = partition_io(graph, order)
    shards = {n: sharding.weights[n] for n in io.params if n in sharding.weights}
    for name in io.kv_cache:
        axis = tensor_layout(sharding, name).axis
        if axis is not None:
            shards[name] = axis
    inside = set(io.nodes)
    kinds = {op.tensor: op.kind for op in sharding.collectives if op.node in inside}
    return shards, kinds


def _shard_difference(name: str, planned: int | None, expected: int | None) -> str:
    plan_says = "keeps it whole" if planned is None else f"splits it on axis {planned}"
    model_says = "keeps it whole" if expected is None else f"splits it on axis {expected}"
    return f"tensor {name!r}: the plan {plan_says}, but sharding the model {model_says}"


def _collective_difference(
    graph: Graph, name: str, planned: str | None, expected: str | None
) -> str:
    producer = graph.tensors[name].producer if name in graph.tensors else None
    made = "" if producer is None else f" (made by node {producer}, {graph.nodes[producer].name})"
    plan_says = "has no collective on it" if planned is None else f"has an {planned} of it"
    model_says = "needs none" if expected is None else f"needs an {expected} of it"
    return f"tensor {name!r}{made}: the plan {plan_says}, but sharding the model {model_says}"


def check_group_sharding(
    graph: Graph, plan: Plan, partition: Partition, recomputed: ShardingPlan
) -> None:
    """Refuse a partition whose shards or collectives differ from ``recomputed``'s.

    Raises:
        PlanExecutionError: naming the first differing tensor in the partition's node order.
    """
    shards, kinds = _planned(plan, partition)
    want_shards, want_kinds = _expected(graph, recomputed, partition.nodes)
    differences = [
        (name, _shard_difference(name, shards.get(name), want_shards.get(name)))
        for name in set(shards) | set(want_shards)
        if shards.get(name) != want_shards.get(name)
    ] + [
        (name, _collective_difference(graph, name, kinds.get(name), want_kinds.get(name)))
        for name in set(kinds) | set(want_kinds)
        if kinds.get(name) != want_kinds.get(name)
    ]
    if differences:
        # where the partition first reads or makes each tensor (reversed: the first one wins)
        position = {
            name: k
            for k, i in reversed(list(enumerate(partition.nodes)))
            for name in (*graph.nodes[i].present_inputs, *graph.nodes[i].present_outputs)
        }
        name, message = min(
            differences, key=lambda d: (position.get(d[0], len(partition.nodes)), d)
        )
        raise PlanExecutionError(
            f"partition {partition.id} ({len(partition.devices)} devices): {message} "
            "(passes.analysis.sharding)"
        )


def group_sharding(
    graph: Graph, plan: Plan, partition: Partition, recomputed: ShardingPlan
) -> ShardingPlan:
    """The sharding a plan partition runs: parameters, KV caches and collectives as the
    plan lists them; activation layouts, shape constants and the collectives of other
    partitions from ``recomputed`` (`shard_graph` at the partition's degree), once
    `check_group_sharding` passed."""
    check_group_sharding(graph, plan, partition, recomputed)
    shards, _ = _planned(plan, partition)
    io = partition_io(graph, partition.nodes)
    layouts = dict(recomputed.layouts)
    layouts.update({name: Layout(shards.get(name)) for name in io.kv_cache})
    inside = set(partition.nodes)
    # the others' say how this group's readers see what it receives (whole once collected)
    elsewhere = tuple(op for op in recomputed.collectives if op.node not in inside)
    collectives = elsewhere + tuple(
        CollectiveOp(
            c.kind,
            c.tensor,
            tensor_layout(recomputed, c.tensor).axis if c.kind == ALL_GATHER else None,
            c.bytes,
            graph.tensors[c.tensor].producer,  # type: ignore[arg-type]
        )
        for c in plan.collectives
        if c.partition == partition.id
    )
    weights = {name: shards[name] for name in io.params if name in shards}
    return dataclasses.replace(
        recomputed, weights=weights, layouts=layouts, collectives=collectives
    )
