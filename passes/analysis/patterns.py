"""Attention-shaped subgraphs: Q·Kᵀ -> (scale, mask, casts) -> Softmax -> ·V.

Exporters decompose attention into a contraction of two activations, a few
elementwise ops, a softmax and a second contraction. Recognising the pattern
lets reports show attention's share of the work and its sequence lengths; the
fused ONNX ``Attention`` op (opset 23) is reported as a one-node pattern.
FLOPs are the sum of the members' (each counted by its own rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from passes.analysis.causal import is_causal_mask
from passes.analysis.costs import CostReport
from passes.ir import Graph, Node

__all__ = ["AttentionPattern", "attention_patterns"]

_CONTRACTIONS = frozenset({"MatMul", "Einsum"})
# Ops that may sit between the scores and the softmax: scaling, masking (Where on a
# boolean mask: torch's scaled_dot_product_attention), soft-capping, casts, and views
# (BLOOM reshapes its batched scores to per-head ones before the softmax).
_BETWEEN = frozenset(
    {"Mul", "Div", "Add", "Sub", "Where", "Cast", "Tanh", "Clip", "Dropout", "Identity",
     "Reshape", "Squeeze", "Unsqueeze"}
)  # fmt: skip
# Ops that may sit between the probabilities and their product with V.
_AFTER = frozenset({"Cast", "Dropout", "Identity", "Reshape", "Squeeze", "Unsqueeze"})


@dataclass(frozen=True)
class AttentionPattern:
    """One attention computation.

    Attributes:
        nodes: member node indices in topological order.
        flops: their FLOPs.
        q_len: query positions (rows of the score matrix).
        kv_len: key positions (columns of the score matrix).
        fused: True for the single-node ONNX ``Attention`` op.
        causal: its mask is built as a causal one (`passes.analysis.causal`), or the
            ``Attention`` op says ``is_causal``.
    """

    nodes: tuple[int, ...]
    flops: int
    q_len: int | None
    kv_len: int | None
    fused: bool = False
    causal: bool = False


def _producer(graph: Graph, name: str) -> Node | None:
    t = graph.tensors.get(name)
    return graph.nodes[t.producer] if t is not None and t.producer is not None else None


def _is_activation(graph: Graph, name: str) -> bool:
    t = graph.tensors.get(name)
    return t is not None and not t.is_param


def _float_activation(graph: Graph, name: str) -> bool:
    t = graph.tensors.get(name)
    return t is not None and not t.is_param and t.elem_type in _FLOAT_TYPES


_FLOAT_TYPES = frozenset({1, 10, 11, 16})  # float, float16, double, bfloat16


def _scores_source(graph: Graph, name: str, depth: int = 8) -> list[Node] | None:
    """Walk back from the softmax's input through elementwise ops and views to Q·Kᵀ (a
    contraction of two activations), trying each floating activation operand in turn:
    the scores, not a boolean mask or a constant scale, lead there."""
    node = _producer(graph, name)
    if depth == 0 or node is None or node.folded:
        return None
    if node.op_type in _CONTRACTIONS:
        operands = node.present_inputs
        two = len(operands) == 2 and all(_is_activation(graph, o) for o in operands)
        return [node] if two else None
    if node.op_type not in _BETWEEN:
        return None
    for operand in node.present_inputs:
        if _float_activation(graph, operand):
            found = _scores_source(graph, operand, depth - 1)
            if found is not None:
                return [node, *found]
    return None


def _nan_guard(graph: Graph, name: str) -> Node | None:
    """The ``Where(IsNaN(p), 0, p)`` that torch's decomposition puts after the softmax
    (rows masked out entirely give NaN), when ``name``'s readers are exactly that pair."""
    readers = [graph.nodes[c] for c in graph.tensors[name].consumers]
    isnan = [n for n in readers if n.op_type == "IsNaN"]
    where = [n for n in readers if n.op_type == "Where"]
    if len(readers) != 2 or len(isnan) != 1 or len(where) != 1:
        return None
    return where[0] if isnan[0].outputs[0] in where[0].inputs else None


def _value_sink(graph: Graph, softmax: Node) -> list[Node] | None:
    """Walk forward from the softmax through casts, dropout, views and a NaN guard to
    probabilities·V."""
    path: list[Node] = []
    name = softmax.outputs[0]
    for _ in range(6):
        guard = _nan_guard(graph, name)
        if guard is not None:
            isnan = next(graph.nodes[c] for c in graph.tensors[name].consumers if c != guard.index)
            path += [isnan, guard]
            name = guard.outputs[0]
            continue
        consumers = graph.tensors[name].consumers
        if len(consumers) != 1:
            return None
        node = graph.nodes[consumers[0]]
        path.append(node)
        if node.op_type in _CONTRACTIONS:
            return path if node.inputs and node.inputs[0] == name else None
        if node.op_type not in _AFTER:
            return None
        name = node.outputs[0]
    return None


def _masks(graph: Graph, before: list[Node]) -> list[str]:
    """Operands of the ops between Q·Kᵀ and the softmax that are not the scores and
    not scalars (a scale): the masks and biases added or selected in."""
    made = {o for n in before for o in n.present_outputs}
    out = []
    for node in before[:-1]:  # the last is the contraction
        for name in node.present_inputs:
            t = graph.tensors.get(name)
            if name not in made and t is not None and t.shape is not None and len(t.shape) >= 2:
                out.append(name)
    return out


def _shape_dim(graph: Graph, name: str, axis: int) -> int | None:
    t = graph.tensors.get(name)
    if t is None or not t.is_static or not t.shape:
        return None
    return int(t.shape[axis])  # type: ignore[arg-type]


def attention_patterns(graph: Graph, costs: CostReport) -> tuple[AttentionPattern, ...]:
    """Every attention computation in ``graph``, in topological order."""
    found = []
    for node in graph.nodes:
        if node.folded:
            continue
        if node.op_type == "Attention" and node.domain in ("", "ai.onnx"):
            q_len = _shape_dim(graph, node.inputs[0], -2) if node.inputs else None
            causal = bool(int(node.attributes.get("is_causal", 0) or 0))
            found.append(
                AttentionPattern(
                    (node.index,), costs.nodes[node.index].flops, q_len, None, True, causal
                )
            )
            continue
        if node.op_type not in ("Softmax", "LogSoftmax"):
            continue
        before, after = _scores_source(graph, node.inputs[0]), _value_sink(graph, node)
        if before is None or after is None:
            continue
        members = tuple(sorted({n.index for n in before} | {node.index} | {n.index for n in after}))
        scores = node.inputs[0]
        found.append(
            AttentionPattern(
                members,
                sum(costs.nodes[i].flops for i in members),
                _shape_dim(graph, scores, -2),
                _shape_dim(graph, scores, -1),
                causal=any(is_causal_mask(graph, m) for m in _masks(graph, before)),
            )
        )
    return tuple(sorted(found, key=lambda p: p.nodes[0]))
