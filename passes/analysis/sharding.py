"""Tensor-parallel sharding analysis: Megatron-style splits, propagated per op (GSPMD/Alpa-like).

`shard_graph(graph, n)` decides how every tensor lies across the n ranks of a
tensor-parallel group and which collectives make every rank's slice of the
graph compute exactly what the whole graph computes. Rank r runs every
runtime node on its local tensors: a sharded parameter is its chunk r along
its axis, a split tensor holds chunk r, a shape input listed in
``shape_inputs`` takes the per-rank value; after a node whose output has a
`CollectiveOp`, the collective runs (sum over ranks for all_reduce,
concatenation along the axis for all_gather) and every consumer reads the
whole tensor.

Rules are per op (`passes.analysis.sharding_rules`, `sharding_matmul`,
`sharding_shapes`, `sharding_attention`, `sharding_embedding`), applied in
topological order: a MatMul with a 2-D weight is column split when its input
is whole and row split (then all-reduced) when its input is split on the
contraction; an embedding lookup is split by vocabulary (then all-reduced);
broadcasting ops, softmax, reductions, reshapes, transposes, slices, concats
and gathers carry a split through when it stays one axis of contiguous chunks;
anything else runs whole on every rank, its split inputs all-gathered first. A
decomposed Llama layer thus gets exactly two all-reduces (after o_proj and
down_proj), with Q/K/V, gate and up column split and the attention core split
by heads, KV caches included; the embedding adds one more.

Operands of a broadcasting op that are whole where another is split must
broadcast over the split axis or be parameters (sliced: listed in ``weights``)
or KV-cache inputs (fed split); a whole activation of full size is never
sliced implicitly: the op runs whole, its split operands gathered. Operands
split on different axes keep the axis that holds the most bytes and gather
the others (GSPMD's resharding of the smaller operand).

Choices the rules do not make:

- The embedding is split by vocabulary (Megatron's VocabParallelEmbedding,
  `passes.analysis.sharding_embedding`): rank r holds its rows of the table and
  the lookup's output is a partial sum, all-reduced right after the Gather; the
  rank graph rewrites that Gather to mask the ids outside the rank's rows. A
  table tied to a reader that needs it whole or split otherwise (an LM head
  using it as its weight) stays replicated, as does a table smaller than the
  lookup's output (the all-reduce would move more than the split saves).
- When n does not divide the KV heads of grouped-query attention (the heads of
  a rank then span part of a KV group, which is no single-axis split), the
  attention core runs whole: Q/K/V and the output projection are replicated,
  the KV caches too, and only the MLP and LM head are split.
- A fused QKV projection (GPT-2's ``c_attn``) is split by columns of the fused
  weight, which mixes Q, K and V; slicing Q/K/V back out gathers it, so it is
  replicated, and so is the attention core behind it.
- The fused ``Attention`` op (opset 23) is split by heads in its 4-D form only
  (the 3-D form names its head counts in attributes); the com.microsoft
  attention ops run whole.

Those come from a few passes of the same walk: a pass that finds a choice
unsound (a parameter needed both sliced and whole, a tensor read split before
another reader needed it gathered, a shape constant shared by readers that need
different values) or wasteful (a column split gathered before any row split
used it) records a constraint, and the next pass honours it. Constraints only
accumulate, so the passes end; the last pass is sound.

Degree 1 gives everything replicated and no collectives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from passes.analysis.costs import CostReport, node_costs
from passes.analysis.sharding_layout import REPLICATED, CollectiveOp, Layout
from passes.analysis.sharding_rules import decide
from passes.analysis.sharding_state import ConstantReader, Constraints, Propagation
from passes.ir import Graph

__all__ = ["Layout", "REPLICATED", "CollectiveOp", "ShardingPlan", "shard_graph"]


@dataclass(frozen=True)
class ShardingPlan:
    """How a graph runs on a tensor-parallel group of ``degree`` ranks.

    Attributes:
        degree: ranks in the group.
        layouts: every tensor a runtime node reads or writes (parameters and
            graph inputs included), before any collective on it.
        weights: sharded parameter -> split axis (parameters not listed are
            replicated on every rank).
        collectives: in topological order of their nodes.
        sharded_nodes: nodes whose work is split n ways (each rank does 1/n);
            the rest run whole on every rank.
        local_shapes: per-rank shape of every tensor whose shape differs from the
            global one.
        shape_inputs: constant shape tensors (Reshape/Expand targets) -> the
            per-rank value to use instead.
        shardable_flops_fraction: share of the graph's FLOPs in sharded_nodes.
        shardable_param_fraction: share of parameter bytes that are sharded.
        passes: propagation passes it took (1 when no choice was revisited).
    """

    degree: int
    layouts: Mapping[str, Layout]
    weights: Mapping[str, int]
    collectives: tuple[CollectiveOp, ...]
    sharded_nodes: frozenset[int]
    local_shapes: Mapping[str, tuple[int, ...]]
    shape_inputs: Mapping[str, tuple[int, ...]]
    shardable_flops_fraction: float
    shardable_param_fraction: float
    passes: int = 1

    def collective_counts(self) -> dict[str, int]:
        """Collectives per kind, e.g. ``{"all_gather": 1, "all_reduce": 4}`` (sorted by kind)."""
        counts: dict[str, int] = {}
        for op in self.collectives:
            counts[op.kind] = counts.get(op.kind, 0) + 1
        return dict(sorted(counts.items()))


def _propagate(
    graph: Graph,
    degree: int,
    constraints: Constraints,
    constants: ConstantReader,
    sizing: Graph | None,
) -> Propagation:
    run = Propagation(graph, degree, constraints, constants, sizing)
    for index in run.order:
        node = graph.nodes[index]
        run.apply(node, decide(run, node))
    return run


def shard_graph(graph: Graph, degree: int, sizing: Graph | None = None) -> ShardingPlan:
    """The tensor-parallel sharding of ``graph`` over ``degree`` ranks (see the module doc).

    ``sizing``: the same model at the dims it was planned at, whose sizes decide the
    size-based choices (a vocabulary split, which operand a reshard gathers), so that
    ``graph`` at other dims is split as the plan deploys it; by default ``graph`` itself.

    Raises:
        ValueError: ``degree`` is below 1.
    """
    if degree < 1:
        raise ValueError(f"a tensor-parallel degree is at least 1, got {degree}")
    costs = node_costs(graph)
    constants = ConstantReader(graph)
    constraints = Constraints()
    passes = 0
    while True:
        passes += 1
        run = _propagate(graph, degree, constraints, constants, sizing)
        if degree == 1:
            break
        more = run.demands()
        if more.empty:
            more = Constraints(no_column_split=run.useless_column_splits())
            if more.empty:
                break
        merged = constraints.merged(more)
        if merged == constraints:  # cannot happen: each pass adds what it found new
            raise RuntimeError("sharding propagation made no progress")
        constraints = merged
    return _plan(graph, run, costs, passes)


def _layouts(graph: Graph, run: Propagation) -> dict[str, Layout]:
    layouts: dict[str, Layout] = {}
    for index in run.order:
        node = graph.nodes[index]
        for name in (*node.present_inputs, *node.present_outputs):
            if name in graph.tensors:
                produced = run.produced.get(name)
                layouts[name] = produced if produced is not None else run.layout(name)
    return layouts


def _local_shapes(
    graph: Graph, layouts: Mapping[str, Layout], degree: int
) -> dict[str, tuple[int, ...]]:
    local = {}
    for name, layout in layouts.items():
        t = graph.tensors[name]
        if layout.axis is None or not t.is_static:
            continue
        shape = [d for d in t.shape or () if isinstance(d, int)]
        shape[layout.axis] //= degree
        local[name] = tuple(shape)
    return local


def _plan(graph: Graph, run: Propagation, costs: CostReport, passes: int) -> ShardingPlan:
    layouts = _layouts(graph, run)
    weights = {
        name: layout.axis
        for name, layout in run.sources.items()
        if layout.axis is not None and graph.tensors[name].is_param
    }
    position = {index: p for p, index in enumerate(run.order)}
    collectives = sorted(
        run.collectives,
        key=lambda op: (position[op.node], graph.nodes[op.node].outputs.index(op.tensor)),
    )
    shape_inputs = {s: v for values in run.shape_values.values() for s, v in values.items()}
    sharded = frozenset(run.sharded)
    flops = sum(costs.nodes[i].flops for i in sharded)
    sliced = sum(graph.tensors[n].nbytes for n in weights)
    return ShardingPlan(
        degree=run.degree,
        layouts=layouts,
        weights=weights,
        collectives=tuple(collectives),
        sharded_nodes=sharded,
        local_shapes=_local_shapes(graph, layouts, run.degree),
        shape_inputs=shape_inputs,
        shardable_flops_fraction=flops / costs.total_flops if costs.total_flops else 0.0,
        shardable_param_fraction=sliced / costs.param_bytes if costs.param_bytes else 0.0,
        passes=passes,
    )
