"""Sharding rule for the fused ONNX ``Attention`` op (opset 23): split by heads.

With 4-D inputs (``Q [B, Hq, S, D]``, ``K``/``V``/past caches ``[B, Hkv, T, D]``)
every head is independent, so each rank can run the op on its chunk of the
heads: its Hq/n query heads with their Hkv/n KV heads keep the op's grouping
(query head i of a rank reads KV head i // (Hq/Hkv) of the same rank). KV inputs
with one head (multi-query attention) broadcast over the rank's query heads.
The 3-D form gives the head counts as attributes, which a per-rank graph would
have to rewrite; it runs whole, as do the com.microsoft attention ops.
"""

from __future__ import annotations

from passes.analysis.sharding_common import join_split
from passes.analysis.sharding_state import Decision, Propagation
from passes.ir import Node

__all__ = ["attention"]

_HEAD_AXIS = 1
_HEAD_INPUTS = (0, 1, 2, 4, 5)  # Q, K, V, past_key, past_value
_MASK = 3


def _input(node: Node, index: int) -> str | None:
    return node.inputs[index] if index < len(node.inputs) and node.inputs[index] else None


def attention(ctx: Propagation, node: Node) -> Decision | None:
    heads = [name for i in _HEAD_INPUTS if (name := _input(node, i)) is not None]
    if any(len(ctx.shape(name) or ()) != 4 for name in heads):
        return None
    mask = _input(node, _MASK)
    decision = join_split(ctx, node, [*heads, *([mask] if mask else [])], 4)
    if decision is None or decision.outputs[0].is_whole:
        return decision
    rest = [name for i, name in enumerate(node.inputs) if name and i not in (*_HEAD_INPUTS, _MASK)]
    if decision.outputs[0].axis != _HEAD_AXIS or not ctx.all_whole(rest):
        return None
    # Y, present_key, present_value and the scores are all [B, heads, ...]
    return decision
