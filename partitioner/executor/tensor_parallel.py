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

`group_sharding` builds a partition's sharding from the plan's shards and
collectives, once they agree with `passes.analysis.sharding.shard_graph`.
`segments` and `rank_env` also serve the distributed runtime's ranks.
"""

from __future__ import annotations

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
from partitioner.executor.tensor_parallel_plan import check_group_sharding, group_sharding
from passes.analysis.partition_io import partition_io
from passes.analysis.stored_weights import stored_inputs
from passes.ir import Graph
from passes.transforms.rank_params import declared_split
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

__all__ = [
    "GroupResult", "Segment", "run_group", "check_group_sharding", "group_sharding",
    "rank_env", "rank_params", "rank_received", "rank_models", "segments", "assemble",
]  # fmt: skip


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
class Segment:
    """Nodes that run without a collective between them, then the collective (if any)."""

    nodes: tuple[onnx.NodeProto, ...]
    collective: onnx.NodeProto | None
    keep: frozenset[str]  # what a rank must still hold once the segment ran


def segments(nodes: Sequence[onnx.NodeProto], keep: Collection[str]) -> list[Segment]:
    cut: list[tuple[list[onnx.NodeProto], onnx.NodeProto | None]] = [([], None)]
    for node in nodes:
        if node.domain == COLLECTIVE_DOMAIN:
            cut[-1] = (cut[-1][0], node)
            cut.append(([], None))
        else:
            cut[-1][0].append(node)
    needed = set(keep)
    segments: list[Segment] = []
    for part, collective in reversed(cut):
        after = needed | set(collective.input if collective is not None else ())
        segments.append(Segment(tuple(part), collective, frozenset(after)))
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


def rank_env(
    sharding: ShardingPlan, model: onnx.ModelProto, whole: Mapping[str, Any], rank: int
) -> dict[str, Any]:
    """Rank ``rank``'s starting values: its parameters and what it receives, local."""
    return {**rank_params(model, whole), **rank_received(sharding, model, whole, rank)}


def rank_params(model: onnx.ModelProto, whole: Mapping[str, Any]) -> dict[str, Any]:
    """The rank graph's initializers: its parameters cut from the whole ones (``whole``,
    by the parameters' names) as the graph declares, and its shape constants."""
    env: dict[str, Any] = {}
    for init in model.graph.initializer:
        declaration = declared_split(init)
        if declaration is not None:  # declared: cut from the whole as the rank graph says
            source, cut = declaration
            value = whole[source]
            env[init.name] = value if cut is None else chunk(value, *cut, source)
        else:  # a shape constant, with its per-rank value
            env[init.name] = numpy_helper.to_array(init)
    return env


def rank_received(
    sharding: ShardingPlan, model: onnx.ModelProto, whole: Mapping[str, Any], rank: int
) -> dict[str, Any]:
    """What rank ``rank`` holds of each of its graph's inputs, which arrive whole."""
    return {
        vi.name: _received_value(sharding, vi.name, whole[vi.name], rank)
        for vi in model.graph.input
    }


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


def assemble(
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


def rank_models(
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
    for segment in segments(nodes, keep):
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
    in_place: Collection[str] = (),
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
        in_place: outputs written into resident memory, not counted as held.

    Raises:
        MissingInputError: a value the group reads was neither received nor resident.
        PlanExecutionError: a kernel failed on a rank (local shapes that do not fit),
            a collective's result has the wrong shape, a tensor leaves as a partial
            sum, or the ranks disagree on a tensor that should be replicated.
    """
    io = partition_io(graph, nodes)
    whole = _partition_env(partition_id, io, inbox, params, kv_cache)
    stored = stored_inputs(graph, io.params)
    whole.update((name, params[name]) for name in stored)
    models = rank_models(graph, sharding, io.nodes)
    envs = [rank_env(sharding, m, whole, r) for r, m in enumerate(models)]
    if opsets is None:
        opsets = {o.domain: o.version for o in models[0].opset_import}
    where = f"partition {partition_id}"
    resident = [*io.params, *stored, *in_place]
    peak, collected = _lockstep(graph, models[0].graph.node, envs, keep, opsets, resident, where)
    outbox = {
        # a value it received and passes on is still whole
        name: inbox[name]
        if name in inbox
        else assemble(sharding, name, envs, set(collected), where)
        for name in keep
        if name in inbox or name in envs[0]
    }
    return GroupResult(outbox, peak, collected)
