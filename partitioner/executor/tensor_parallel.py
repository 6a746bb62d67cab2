"""Running a tensor-parallel group with the NumPy kernels: every rank in lockstep.

A partition whose ``devices`` hold t GPUs runs as t ranks, each over its rank
graph (`passes.transforms.tensor_parallel.rank_graph`): `run_group` runs them
segment by segment (the nodes between two collectives) with `run_nodes`, and
performs each collective across the ranks (all_reduce: the sum in rank order;
all_gather: the concatenation along its axis). Every rank runs rank 0's node
list: the rank graphs differ only in their initializers (sliced parameters,
per-rank shape constants, the row offset of a vocabulary-split embedding
lookup), which each rank's values hold.

What crosses the group's boundary is whole, as the rest of the plan sees it:
received tensors are sliced as their readers see them (a partial one is held by
rank 0, zeros elsewhere); what leaves is rank 0's value once the ranks agree on
it, or the concatenation of a tensor left split (a KV cache sliced on its heads).
A tensor that leaves as a partial sum, or on which the ranks disagree although
it should be replicated, is a `PlanExecutionError` naming it.

`group_sharding` builds the sharding a plan partition runs from the plan's own
shards and collectives, and refuses a plan that differs from what
`passes.analysis.sharding.shard_graph` says for the partition's nodes.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnx.inliner
from onnx import numpy_helper

from partitioner.executor.errors import KernelError
from partitioner.executor.graph_run import PlanExecutionError, _nbytes, _partition_env
from partitioner.executor.runtime import run_nodes
from partitioner.plan import Partition, Plan
from passes.analysis.partition_io import partition_io
from passes.analysis.sharding_layout import ALL_GATHER, CollectiveOp, Layout
from passes.ir import Graph
from passes.transforms.tensor_parallel import (
    COLLECTIVE_DOMAIN,
    chunk,
    rank_graph,
    read_layout,
    reads,
    tensor_layout,
)

if TYPE_CHECKING:
    from passes.analysis.sharding import ShardingPlan

__all__ = ["GroupResult", "run_group", "check_group_sharding", "group_sharding"]


@dataclass(frozen=True)
class GroupResult:
    """What running one tensor-parallel group gave.

    Attributes:
        outbox: the values it was asked to keep, whole (see the module doc).
        peak_bytes: the most bytes one rank held at once, parameters excluded.
        collected: every collective's tensor, whole, as the ranks held it afterwards.
    """

    outbox: dict[str, Any]
    peak_bytes: int
    collected: dict[str, Any]


@dataclass(frozen=True)
class _Segment:
    """Nodes that run without a collective between them, then the collective (if any)."""

    nodes: tuple[onnx.NodeProto, ...]
    collective: onnx.NodeProto | None
    keep: frozenset[str]  # what a rank must still hold once the segment ran


def _segments(nodes: Sequence[onnx.NodeProto], keep: Collection[str]) -> list[_Segment]:
    cut: list[tuple[list[onnx.NodeProto], onnx.NodeProto | None]] = [([], None)]
    for node in nodes:
        if node.domain == COLLECTIVE_DOMAIN:
            cut[-1] = (cut[-1][0], node)
            cut.append(([], None))
        else:
            cut[-1][0].append(node)
    needed = set(keep)
    segments: list[_Segment] = []
    for part, collective in reversed(cut):
        after = needed | set(collective.input if collective is not None else ())
        segments.append(_Segment(tuple(part), collective, frozenset(after)))
        needed = after | {name for node in part for name in reads(node)}
    return segments[::-1]


def _received_value(sharding: ShardingPlan, name: str, whole: Any, rank: int) -> Any:
    """What rank ``rank`` holds of a value that arrives whole, as its readers see it."""
    layout = read_layout(sharding, name)
    if layout.axis is not None:
        return chunk(np.asarray(whole), layout.axis, rank, sharding.degree, name)
    if layout.partial and rank > 0:
        return np.zeros_like(whole)  # rank 0 holds it all: the ranks still sum to it
    return whole


def _rank_env(
    sharding: ShardingPlan, model: onnx.ModelProto, whole: Mapping[str, Any], rank: int
) -> dict[str, Any]:
    """Rank ``rank``'s starting values: its parameters and what it receives, local."""
    env: dict[str, Any] = {}
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:  # declared: sliced from the whole
            axis = sharding.weights.get(init.name)
            value = whole[init.name]
            env[init.name] = (
                value if axis is None else chunk(value, axis, rank, sharding.degree, init.name)
            )
        else:  # a shape constant, with its per-rank value
            env[init.name] = numpy_helper.to_array(init)
    for vi in model.graph.input:
        env[vi.name] = _received_value(sharding, vi.name, whole[vi.name], rank)
    return env


def _collective(graph: Graph, node: onnx.NodeProto, envs: list[dict[str, Any]], where: str) -> Any:
    """Perform one collective over every rank's value; each rank then holds the result."""
    source, target = node.input[0], node.output[0]
    parts = [np.asarray(env.pop(source)) for env in envs]
    try:
        if node.op_type == "AllReduce":
            value = functools.reduce(np.add, parts)
        else:
            axis = next(a.i for a in node.attribute if a.name == "axis")
            value = np.concatenate(parts, axis=axis)
    except ValueError as error:
        shapes = ", ".join(str(list(p.shape)) for p in parts)
        raise PlanExecutionError(
            f"{where}: {node.op_type} of {target!r} over ranks holding shapes {shapes}: {error}"
        ) from None
    t = graph.tensors.get(target)
    if t is not None and t.is_static and tuple(value.shape) != tuple(t.shape):  # type: ignore[arg-type]
        raise PlanExecutionError(
            f"{where}: {node.op_type} of {target!r} gives shape {list(value.shape)}, but the "
            f"model's {target!r} has shape {list(t.shape)}"  # type: ignore[arg-type]
        )
    for env in envs:
        env[target] = value
    return value


def _agreed(name: str, values: list[Any], where: str) -> Any:
    """Rank 0's value of a replicated tensor, once every rank holds the same."""
    first = np.asarray(values[0])
    for rank, other in enumerate(values[1:], start=1):
        other = np.asarray(other)
        same = first.shape == other.shape and (
            np.allclose(first, other, rtol=1e-4, atol=1e-6, equal_nan=True)
            if first.dtype.kind in "fc"
            else np.array_equal(first, other)
        )
        if not same:
            raise PlanExecutionError(
                f"{where}: tensor {name!r} should be the same on every rank, but rank {rank}'s "
                "differs from rank 0's: a collective before it is missing or a shard is wrong"
            )
    return values[0]


def _assemble(
    sharding: ShardingPlan, name: str, envs: list[dict[str, Any]], made_whole: set[str], where: str
) -> Any:
    """The whole value of ``name`` from the ranks' values (see the module doc)."""
    values = [env[name] for env in envs]
    if name in made_whole:
        return values[0]  # a collective just gave every rank the same array
    layout = tensor_layout(sharding, name)
    if layout.partial:
        raise PlanExecutionError(
            f"{where}: tensor {name!r} leaves the group as a partial sum on each rank: no "
            "all_reduce follows its producer"
        )
    if layout.axis is not None:
        return np.concatenate([np.asarray(v) for v in values], axis=layout.axis)
    return _agreed(name, values, where)


def _rank_models(
    graph: Graph, sharding: ShardingPlan, nodes: tuple[int, ...]
) -> list[onnx.ModelProto]:
    """Every rank's graph, structure only (parameters come sliced from the caller's values)."""
    models = [rank_graph(graph, sharding, r, nodes) for r in range(sharding.degree)]
    if models[0].functions:
        models = [onnx.inliner.inline_local_functions(m) for m in models]
    return models


def _lockstep(
    graph: Graph,
    nodes: Sequence[onnx.NodeProto],
    envs: list[dict[str, Any]],
    keep: Collection[str],
    opsets: Mapping[str, int],
    resident: Collection[str],
    where: str,
) -> tuple[int, dict[str, Any]]:
    """Run every rank segment by segment, each collective in between, updating ``envs``.

    Returns the most bytes one rank held (``resident`` ones excluded) and every
    collective's result.
    """
    peaks = [0] * len(envs)
    parameters = frozenset(resident)
    collected: dict[str, Any] = {}
    for segment in _segments(nodes, keep):
        for rank, env in enumerate(envs):

            def observe(local: Mapping[str, Any], rank: int = rank) -> None:
                held = sum(_nbytes(v) for k, v in local.items() if k not in parameters)
                peaks[rank] = max(peaks[rank], held)

            try:
                envs[rank] = run_nodes(
                    segment.nodes, env, opsets, keep=segment.keep, observe=observe
                )
            except KernelError as error:
                raise PlanExecutionError(f"{where}, rank {rank} of {len(envs)}: {error}") from error
        if segment.collective is not None:
            collected[segment.collective.output[0]] = _collective(
                graph, segment.collective, envs, where
            )
    return max(peaks), collected


def run_group(
    graph: Graph,
    sharding: ShardingPlan,
    nodes: Iterable[int],
    inbox: Mapping[str, Any],
    params: Mapping[str, Any],
    kv_cache: Mapping[str, Any],
    *,
    keep: Collection[str],
    opsets: Mapping[str, int] | None = None,
    partition_id: int = 0,
) -> GroupResult:
    """Run ``nodes`` on ``sharding.degree`` ranks in lockstep, collectives included.

    Args:
        graph: the IR.
        sharding: the group's sharding; its ``degree`` is the number of ranks.
        nodes: the group's node indices, in an order that executes (folded ones skipped).
        inbox: whole values transferred to the group (model inputs included).
        params: whole parameter values by name (`constant_values`); sliced here.
        kv_cache: whole KV-cache graph inputs; sliced on their layout's axis.
        keep: names to return, whole.
        opsets: domain -> opset version; the graph's own by default.
        partition_id: named in errors.

    Raises:
        MissingInputError: a value the group reads was neither received nor resident.
        PlanExecutionError: a kernel failed on a rank (local shapes that do not fit),
            a collective's result has the wrong shape, a tensor leaves as a partial
            sum, or the ranks disagree on a tensor that should be replicated.
    """
    io = partition_io(graph, nodes)
    whole = _partition_env(partition_id, io, inbox, params, kv_cache)
    models = _rank_models(graph, sharding, io.nodes)
    envs = [_rank_env(sharding, m, whole, r) for r, m in enumerate(models)]
    if opsets is None:
        opsets = {o.domain: o.version for o in models[0].opset_import}
    where = f"partition {partition_id}"
    peak, collected = _lockstep(graph, models[0].graph.node, envs, keep, opsets, io.params, where)
    outbox = {
        # a value it received and passes on is still whole
        name: inbox[name]
        if name in inbox
        else _assemble(sharding, name, envs, set(collected), where)
        for name in keep
        if name in inbox or name in envs[0]
    }
    return GroupResult(outbox, peak, collected)


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
