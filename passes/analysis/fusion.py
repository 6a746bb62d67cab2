"""Per-node costs as a fusing runtime executes the graph (``runtime: fused`` targets).

Serving runtimes (vLLM, TensorRT-LLM) do not run an ONNX graph op by op:

- **Attention** is one kernel (FlashAttention, paged attention) that reads Q,
  K, V (the KV cache included) once and never materialises the scores, the
  probabilities or KV heads repeated for grouped-query attention. Each
  `attention_patterns` match becomes one kernel whose bytes are its Q, K and V
  sources and its output; the ops that only repeat or reshape K and V for it
  are absorbed. A decode step's cache append (a ``Concat`` of the cache input,
  ``past``, with the new rows into ``present``) is paged attention's in-place
  write: the kernel reads the cache where it lies and writes only the new rows,
  where an eager runtime copies the whole cache into ``present`` first.
- **Elementwise chains** (norms, rotary embeddings, activations, residual
  adds, casts) between two contractions run as one memory pass: a group's
  bytes are what enters it from outside and what leaves it, not every
  intermediate. Groups are the connected fusible nodes within one run of the
  topological order between two non-fusible nodes, so a group never waits on
  work outside it.

QDQ GEMMs run on their quantised operands (`fusion_quant`), and a
``QuantizeLinear`` joins the elementwise pass before it.

`fused_costs` keeps every total (FLOPs, parameters), gives each group the bytes
of one pass, shared among its members, and one launch. A causal attention (its
mask built as one, `passes.analysis.causal`) computes only the unmasked share of
its scores, as FlashAttention's causal kernels do: about half for a prompt.
With ``cuda_graph`` (a decode step, which serving runtimes capture once and
replay) no kernel pays its own launch: the one launch of the replay is the
stage's fixed cost per step (the target's ``step_overhead_s``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from passes.analysis.cache_append import KV_VIEWS, cache_append, in_place_outputs
from passes.analysis.causal import causal_share
from passes.analysis.costs import INDEXED_READS, CostReport
from passes.analysis.fusion_quant import quantised_gemms
from passes.analysis.patterns import attention_patterns
from passes.ir import Graph, Node

__all__ = ["FUSIBLE_OPS", "fused_costs", "fusion_groups", "in_place_outputs"]

# Ops a fusing runtime folds into one elementwise/normalisation pass.
FUSIBLE_OPS = frozenset(
    {
        "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg", "Abs", "Exp", "Log",
        "Sigmoid", "Tanh", "Erf", "Relu", "Gelu", "FastGelu", "HardSigmoid", "Softplus",
        "Max", "Min", "Clip", "Where", "Cast", "CastLike", "Equal", "Less", "Greater",
        "Not", "And", "Or", "IsNaN", "ReduceMean", "ReduceSum", "ReduceMax", "Softmax",
        "LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization",
        "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout", "Transpose",
        "Concat", "Split", "Expand", "Tile", "QuantizeLinear",
    }
)  # fmt: skip


def _activation_bytes(graph: Graph, name: str) -> int:
    t = graph.tensors.get(name)
    return t.nbytes if t is not None and t.is_static else 0


def _kv_source(graph: Graph, name: str, absorbed: set[int]) -> str:
    """Follow an attention operand back through repeat/view ops used only by it."""
    while True:
        t = graph.tensors.get(name)
        if t is None or t.producer is None or len(t.consumers) != 1:
            return name
        node = graph.nodes[t.producer]
        if node.op_type not in KV_VIEWS or node.folded:
            return name
        absorbed.add(node.index)
        name = node.present_inputs[0]


def _attention_groups(
    graph: Graph, costs: CostReport, shares: dict[int, float] | None = None
) -> list[tuple[list[int], int]]:
    """(members, bytes) per attention: Q, K, V sources read once, the output written once;
    a cache appended to in place is read where it lies, and only its new rows written.
    ``shares`` gets, for each member of a causal attention, the share of its FLOPs a
    causal kernel computes (`passes.analysis.causal`)."""
    groups = []
    for pattern in attention_patterns(graph, costs):
        if shares is not None and pattern.causal and pattern.q_len and pattern.kv_len:
            share = causal_share(pattern.q_len, pattern.kv_len)
            shares.update(dict.fromkeys(pattern.nodes, share))
        members = set(pattern.nodes)
        absorbed: set[int] = set()
        entering = {
            name
            for i in pattern.nodes
            for name in graph.nodes[i].present_inputs
            if graph.tensors.get(name) is not None
            and graph.tensors[name].producer not in members
            and not graph.tensors[name].is_param
        }
        moved = 0
        for source in {_kv_source(graph, name, absorbed) for name in entering}:
            append = cache_append(graph, source)
            if append is None:
                moved += _activation_bytes(graph, source)
                continue
            absorbed.update(append.nodes)
            # the cache read once as stored, the new rows read and written into it
            moved += _activation_bytes(graph, append.cache)
            moved += 2 * sum(_activation_bytes(graph, n) for n in append.new_rows)
        last = graph.nodes[max(pattern.nodes)]
        moved += sum(_activation_bytes(graph, o) for o in last.present_outputs)
        groups.append((sorted(members | absorbed), moved))
    return groups


def _fusible(node: Node) -> bool:
    return node.domain in ("", "ai.onnx") and node.op_type in FUSIBLE_OPS and not node.folded


def _segments(graph: Graph, taken: set[int]) -> dict[int, int]:
    """Fusible node -> the run of the topological order it sits in (between non-fusible nodes)."""
    segment, out = 0, {}
    for i in graph.topological_order():
        node = graph.nodes[i]
        if node.folded or i in taken:
            continue
        if _fusible(node) and node.op_type not in INDEXED_READS:
            out[i] = segment
        else:
            segment += 1
    return out


def _components(graph: Graph, segment: Mapping[int, int]) -> list[list[int]]:
    parent = {i: i for i in segment}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in segment:
        for name in graph.nodes[i].present_outputs:
            for c in graph.tensors[name].consumers:
                if c in segment and segment[c] == segment[i]:
                    parent[find(c)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in segment:
        groups.setdefault(find(i), []).append(i)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def _group_bytes(graph: Graph, members: Iterable[int]) -> int:
    """One memory pass: tensors entering the group (weights included) and leaving it."""
    inside = set(members)
    entering, leaving = set(), set()
    for i in inside:
        node = graph.nodes[i]
        for name in node.present_inputs:
            t = graph.tensors.get(name)
            if t is not None and t.producer not in inside:
                entering.add(name)
        for name in node.present_outputs:
            t = graph.tensors[name]
            if t.is_graph_output or any(c not in inside for c in t.consumers):
                leaving.add(name)
    return sum(_activation_bytes(graph, n) for n in entering | leaving)


def fusion_groups(
    graph: Graph, costs: CostReport, shares: dict[int, float] | None = None
) -> list[tuple[list[int], int]]:
    """(member node indices, bytes moved) of every kernel a fusing runtime runs for
    several ONNX nodes: attention first, then elementwise groups among the rest
    (``shares``: filled as `_attention_groups` says)."""
    groups = _attention_groups(graph, costs, shares)
    taken = {i for members, _ in groups for i in members}
    for members in _components(graph, _segments(graph, taken)):
        groups.append((members, _group_bytes(graph, members)))
    return groups


def fused_costs(graph: Graph, costs: CostReport, *, cuda_graph: bool = False) -> CostReport:
    """``costs`` as a fusing runtime runs the graph.

    A group's bytes are shared among its members in proportion to what each moved
    eagerly (so a pipeline cut inside a group splits its cost, not all or nothing);
    every member keeps its own FLOPs, but a causal attention's computes only its
    unmasked share; the group launches once, on its last node. ``total_flops`` stays
    the model's. With
    ``cuda_graph`` (a decode step replayed as one graph) no kernel pays its own launch.
    """
    nodes = quantised_gemms(graph, costs.nodes)
    position = {i: k for k, i in enumerate(graph.topological_order())}
    shares: dict[int, float] = {}
    for members, moved in fusion_groups(graph, costs, shares):
        head = max(members, key=lambda i: position[i])
        eager = {i: costs.nodes[i].bytes_moved for i in members}
        total = sum(eager.values())
        for i in members:
            share = moved * eager[i] / total if total else (moved if i == head else 0)
            nodes[i] = dataclasses.replace(
                costs.nodes[i], bytes_read=round(share), bytes_written=0, is_view=False,
                kernels=1 if i == head else 0,
            )  # fmt: skip
    for i, share in shares.items():  # a causal kernel skips the masked scores
        nodes[i] = dataclasses.replace(nodes[i], flops=round(nodes[i].flops * share))
    if cuda_graph:
        nodes = [dataclasses.replace(n, kernels=0) for n in nodes]
    return dataclasses.replace(costs, nodes=tuple(nodes))
