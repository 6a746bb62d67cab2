"""Causal attention: the share of a score matrix a causal kernel computes.

A decomposed attention computes every query's score against every key and then
masks the future out. A fused causal kernel (FlashAttention with ``causal``,
the prefill kernels of vLLM and TensorRT-LLM) skips the masked part, so with
q queries at the end of kv keys, query i (0-based) sees kv - q + i + 1 keys:

    share = (q·(kv - q) + q·(q + 1)/2) / (q·kv)

which is (s + 1)/(2s) for a prompt of s tokens and 1 for one decode row.

Whether a mask is causal is read from how it was built, not from its values
(which can take gigabytes): exporters build it from a ``Trilu`` of ones, or from
a comparison of two position ranges (``Range`` -> ``Unsqueeze`` ->
``GreaterOrEqual``, as `examples.llama`, transformers and torch's decomposition
of ``is_causal`` do). A mask with neither among its ancestors (padding only,
ALiBi, a bidirectional encoder's) is not taken as causal.
"""

from __future__ import annotations

from collections.abc import Iterable

from passes.ir import Graph, Node

__all__ = ["causal_share", "is_causal_mask"]

_COMPARISONS = frozenset({"Less", "LessOrEqual", "Greater", "GreaterOrEqual"})
# how far back a mask's construction is followed (a transformers mask is ~20 nodes deep)
_MAX_ANCESTORS = 64


def causal_share(q_len: int, kv_len: int) -> float:
    """The share of a ``q_len`` × ``kv_len`` score matrix a causal kernel computes."""
    if q_len <= 0 or kv_len < q_len:
        return 1.0
    seen = q_len * (kv_len - q_len) + q_len * (q_len + 1) / 2
    return seen / (q_len * kv_len)


def _ancestors(graph: Graph, names: Iterable[str], limit: int) -> list[Node]:
    """Producers of ``names`` and theirs, breadth first, at most ``limit`` nodes."""
    seen: set[int] = set()
    order: list[Node] = []
    frontier = list(names)
    while frontier and len(order) < limit:
        t = graph.tensors.get(frontier.pop(0))
        if t is None or t.producer is None or t.producer in seen:
            continue
        seen.add(t.producer)
        node = graph.nodes[t.producer]
        order.append(node)
        frontier.extend(node.present_inputs)
    return order


def _from_positions(graph: Graph, name: str) -> bool:
    """Whether ``name`` is computed from a ``Range`` (a run of positions)."""
    return any(n.op_type == "Range" for n in _ancestors(graph, [name], 12))


def is_causal_mask(graph: Graph, name: str) -> bool:
    """Whether the mask ``name`` is built as a causal (triangular) one (module doc)."""
    for node in _ancestors(graph, [name], _MAX_ANCESTORS):
        if node.op_type == "Trilu":  # a lower triangle kept, or an upper one masked out
            return True
        pair = node.op_type in _COMPARISONS and len(node.present_inputs) == 2
        if pair and all(_from_positions(graph, i) for i in node.present_inputs):
            return True
    return False
