"""Coarsening: merge nodes into blocks small enough in number for the solvers.

Blocks are contiguous segments of a topological order, so the block graph is a
DAG by construction (every edge goes from an earlier segment to a later one).
Segments are cut by weight (the caller's per-node time on a reference device)
so that a graph of 10k+ nodes becomes a few hundred blocks of similar cost; a
cut is also forced before a block's parameters would pass a byte budget, so no
block is larger than a device needs it to be.

Folded nodes run once at load time; each joins the block of its first runtime
consumer (the constants it makes are resident wherever they are used).

Costs are summed exactly: a block's FLOPs, bytes moved and weight are the sums
over its nodes; its parameters are the distinct parameter tensors its nodes
read (a weight shared inside a block counts once).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from passes.analysis.cache_append import KV_VIEWS, cache_appends
from passes.analysis.costs import CostReport
from passes.analysis.liveness import activation_liveness
from passes.analysis.partition_io import residency
from passes.ir import Graph
from passes.pass_infra import Pass, PassResult

__all__ = [
    "Block",
    "BlockEdge",
    "BlockGraph",
    "CoarsenReport",
    "Coarsen",
    "coarsen",
    "target_block_count",
]


@dataclass(frozen=True)
class Block:
    """A set of nodes that always lands on one device.

    Attributes:
        nodes: original node indices in an order that executes (folded nodes first).
        weight: sum of the caller's per-node weights (seconds on the reference device).
        flops, bytes_moved, matmuls: sums over the runtime nodes.
        params: names of the parameter tensors its runtime nodes read.
        param_bytes: bytes of ``params``.
        kv_cache_bytes: bytes of KV-cache graph inputs its nodes read (resident here).
        activation_peak_bytes: peak live activations while the block runs alone.
    """

    id: int
    nodes: tuple[int, ...]
    weight: float
    flops: int
    bytes_moved: int
    matmuls: int
    params: frozenset[str]
    param_bytes: int
    kv_cache_bytes: int
    activation_peak_bytes: int


@dataclass(frozen=True)
class BlockEdge:
    """Runtime tensors produced in block ``src`` and read in block ``dst`` (src < dst)."""

    src: int
    dst: int
    tensors: tuple[str, ...]
    bytes: int


@dataclass(frozen=True)
class CoarsenReport:
    num_nodes: int
    num_runtime_nodes: int
    num_blocks: int
    target_blocks: int
    largest_block_nodes: int
    heaviest_block_share: float

    def summary(self) -> str:
        return (
            f"coarsened {self.num_runtime_nodes:,} runtime nodes ({self.num_nodes:,} in all) "
            f"into {self.num_blocks} blocks (target {self.target_blocks}; largest "
            f"{self.largest_block_nodes} nodes; heaviest {100 * self.heaviest_block_share:.1f}% of the work)"
        )


@dataclass(frozen=True)
class BlockGraph:
    """Blocks in topological order, the edges between them and the node -> block map."""

    blocks: tuple[Block, ...]
    edges: tuple[BlockEdge, ...]
    block_of: tuple[int, ...]
    report: CoarsenReport


def target_block_count(num_devices: int, num_runtime_nodes: int) -> int:
    """Blocks to aim for: finer with more devices, so stages can still balance.

    About 32 blocks per device (at least 64, at most 512) keeps the worst
    rounding of a stage boundary near 1/32 of a stage while CP-SAT stays fast.
    """
    return max(1, min(num_runtime_nodes, max(64, min(512, 32 * num_devices))))


def _readers(graph: Graph, name: str) -> list[int]:
    """The first nodes reading ``name`` other than through view and repeat ops."""
    found, stack = [], [name]
    while stack:
        for c in graph.tensors[stack.pop()].consumers:
            node = graph.nodes[c]
            if node.op_type in KV_VIEWS and node.domain in ("", "ai.onnx"):
                stack.extend(node.present_outputs)
            else:
                found.append(c)
    return found


def glued_nodes(graph: Graph, order: Sequence[int]) -> frozenset[int]:
    """Nodes no block may start at: from a KV-cache append (`cache_append`) to the first
    nodes reading the appended cache. A cut there would send the whole cache between
    stages or regions every step, where a runtime appends in place and reads it where
    it lies."""
    position = {n: k for k, n in enumerate(order)}
    glued: set[int] = set()
    for append in cache_appends(graph):
        if append.nodes[0] not in position:
            continue
        start = min(position[i] for i in append.nodes if i in position)
        ends = [position[r] for r in _readers(graph, append.copies[0]) if r in position]
        glued.update(order[start + 1 : max(ends, default=start) + 1])
    return frozenset(glued)


def _segments(
    order: Sequence[int],
    weights: Sequence[float],
    param_bytes_of: Sequence[dict[str, int]],
    target_blocks: int,
    max_block_param_bytes: int | None,
    glued: frozenset[int] = frozenset(),
) -> list[list[int]]:
    total = sum(weights[i] for i in order)
    cap = total / target_blocks if total > 0 else math.inf
    per_block_nodes = max(1, math.ceil(len(order) / target_blocks))
    segments: list[list[int]] = []
    current: list[int] = []
    weight = 0.0
    params: dict[str, int] = {}
    for i in order:
        extra = {k: v for k, v in param_bytes_of[i].items() if k not in params}
        over_weight = current and weight + weights[i] > cap and weight > 0
        # Weightless graphs (no cost given) still split by node count.
        over_count = total <= 0 and len(current) >= per_block_nodes
        over_params = (
            current
            and max_block_param_bytes is not None
            and sum(params.values()) + sum(extra.values()) > max_block_param_bytes
        )
        if (over_weight or over_count or over_params) and i not in glued:
            segments.append(current)
            current, weight, params = [], 0.0, {}
            extra = dict(param_bytes_of[i])
        current.append(i)
        weight += weights[i]
        params.update(extra)
    if current:
        segments.append(current)
    return segments


def coarsen(
    graph: Graph,
    costs: CostReport,
    weights: Sequence[float],
    target_blocks: int,
    max_block_param_bytes: int | None = None,
) -> BlockGraph:
    """Merge the nodes of ``graph`` into about ``target_blocks`` blocks.

    Args:
        graph: the IR (shapes resolved, constants folded).
        costs: its per-node costs.
        weights: per-node weight (e.g. seconds on the reference device), by node index.
        target_blocks: how many blocks to aim for.
        max_block_param_bytes: cut before a block's parameters would exceed this.
    """
    order = graph.topological_order()
    runtime = [i for i in order if not graph.nodes[i].folded]
    # Per node, so a segment can be cut before its distinct parameters pass the budget.
    param_bytes_of = [dict(residency(graph, [n.index]).params) for n in graph.nodes]
    segments = _segments(
        runtime, weights, param_bytes_of, max(1, target_blocks), max_block_param_bytes,
        glued_nodes(graph, runtime),
    )  # fmt: skip
    if not segments:
        segments = [[]]
    block_of = _block_of(graph, order, segments)
    members: list[list[int]] = [[] for _ in segments]
    folded_members: list[list[int]] = [[] for _ in segments]
    for i in order:
        (folded_members if graph.nodes[i].folded else members)[block_of[i]].append(i)

    blocks = [
        _block(graph, costs, weights, b, folded_members[b], members[b])
        for b in range(len(segments))
    ]
    edges = _block_edges(graph, block_of)
    total_weight = sum(b.weight for b in blocks) or 1.0
    report = CoarsenReport(
        num_nodes=graph.num_nodes,
        num_runtime_nodes=len(runtime),
        num_blocks=len(blocks),
        target_blocks=target_blocks,
        largest_block_nodes=max((len(b.nodes) for b in blocks), default=0),
        heaviest_block_share=max((b.weight for b in blocks), default=0.0) / total_weight,
    )
    return BlockGraph(tuple(blocks), edges, tuple(block_of), report)


def _block_of(graph: Graph, order: Sequence[int], segments: Sequence[list[int]]) -> list[int]:
    """Node -> block: runtime nodes by segment; folded nodes join their first runtime
    consumer's block (visiting in reverse order resolves chains of folded nodes)."""
    block_of = [-1] * graph.num_nodes
    for b, seg in enumerate(segments):
        for i in seg:
            block_of[i] = b
    for i in reversed(order):
        if graph.nodes[i].folded:
            consumers = [
                block_of[c]
                for o in graph.nodes[i].present_outputs
                for c in graph.tensors[o].consumers
                if block_of[c] >= 0
            ]
            block_of[i] = min(consumers) if consumers else 0
    return block_of


def _block(
    graph: Graph,
    costs: CostReport,
    weights: Sequence[float],
    b: int,
    folded: Sequence[int],
    runtime: Sequence[int],
) -> Block:
    """Block ``b``: its folded nodes first (they run at load time), then its runtime nodes."""
    held = residency(graph, runtime)
    node_costs = [costs.nodes[i] for i in runtime]
    return Block(
        id=b,
        nodes=(*folded, *runtime),
        weight=sum(weights[i] for i in runtime),
        flops=sum(c.flops for c in node_costs),
        bytes_moved=sum(c.bytes_moved for c in node_costs),
        matmuls=sum(c.matmuls for c in node_costs),
        params=frozenset(held.params),
        param_bytes=held.param_bytes,
        kv_cache_bytes=held.kv_cache_bytes,
        activation_peak_bytes=activation_liveness(graph, runtime).peak_bytes if runtime else 0,
    )


def _block_edges(graph: Graph, block_of: Sequence[int]) -> tuple[BlockEdge, ...]:
    grouped: dict[tuple[int, int], list[str]] = {}
    for t in graph.iter_tensors():
        if t.producer is None or t.is_param:
            continue
        src = block_of[t.producer]
        # Folded readers (Shape of an activation) run at load time: no runtime edge.
        for dst in sorted({block_of[c] for c in t.consumers if not graph.nodes[c].folded}):
            if dst != src:
                grouped.setdefault((src, dst), []).append(t.name)
    edges = []
    for (src, dst), names in sorted(grouped.items()):
        size = sum(graph.tensors[n].nbytes for n in names if graph.tensors[n].is_static)
        edges.append(BlockEdge(src, dst, tuple(names), size))
    return tuple(edges)


class Coarsen(Pass[Graph, BlockGraph]):
    """The coarsening pass: Graph -> BlockGraph (see `coarsen`)."""

    def __init__(
        self,
        costs: CostReport,
        weights: Sequence[float],
        target_blocks: int,
        max_block_param_bytes: int | None = None,
    ) -> None:
        self.costs = costs
        self.weights = list(weights)
        self.target_blocks = target_blocks
        self.max_block_param_bytes = max_block_param_bytes

    def ensures(self, model: BlockGraph) -> None:
        from passes.errors import PassError

        if any(e.src >= e.dst for e in model.edges):
            raise PassError("coarsening produced a backward edge; the block graph must be a DAG")

    def call(self, model: Graph) -> PassResult[BlockGraph]:
        result = coarsen(
            model, self.costs, self.weights, self.target_blocks, self.max_block_param_bytes
        )
        return PassResult(result, result.report.num_blocks < model.num_nodes)
