"""A decode step's KV-cache append, as a paged runtime runs it: in place.

Exporters write the append as ``present = Concat(past, new rows)``, ``past`` a graph
input and ``present`` a graph output. An eager runtime copies the whole cache into
``present`` every step; a paged one (vLLM, TensorRT-LLM) writes the new rows into
the resident cache, and attention reads the cache where it lies. With an FP8
cache (`examples.llama --quant fp8-kv`) the graph spells the same append with a
DequantizeLinear on ``past`` (Concat has no float8 types) and a QuantizeLinear
from the appended cache to ``present``; a paged runtime keeps the cache in FP8,
so those are part of the append too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from passes.ir import Graph, Node

__all__ = ["KV_VIEWS", "CacheAppend", "cache_append", "cache_appends", "in_place_outputs"]

KV_VIEWS = frozenset({"Reshape", "Unsqueeze", "Squeeze", "Expand", "Tile", "Transpose"})
"""Ops that only view or repeat a KV cache on its way between the append and attention."""


@dataclass(frozen=True)
class CacheAppend:
    """One append: its nodes (Concat, and the DequantizeLinear/QuantizeLinear around it),
    the cache input as stored, the new rows, and every value that only exists because
    an eager runtime copies the cache (the appended cache, dequantised and quantised)."""

    nodes: tuple[int, ...]
    cache: str
    new_rows: tuple[str, ...]
    copies: tuple[str, ...]


def _standard(node: Node, op: str) -> bool:
    return node.op_type == op and node.domain in ("", "ai.onnx") and not node.folded


def _stored_cache(graph: Graph, name: str) -> tuple[str, int | None] | None:
    """(the graph input holding the cache, the DequantizeLinear reading it, if any)."""
    t = graph.tensors[name]
    if t.kind == "input":
        return name, None
    producer = None if t.producer is None else graph.nodes[t.producer]
    if producer is None or not _standard(producer, "DequantizeLinear") or len(t.consumers) != 1:
        return None
    source = graph.tensors.get(producer.present_inputs[0])
    return (source.name, producer.index) if source is not None and source.kind == "input" else None


def _quantized_output(graph: Graph, name: str) -> int | None:
    """The QuantizeLinear turning the appended cache ``name`` into a graph output."""
    for c in graph.tensors[name].consumers:
        node = graph.nodes[c]
        if _standard(node, "QuantizeLinear") and graph.tensors[node.outputs[0]].is_graph_output:
            return c
    return None


def cache_append(graph: Graph, name: str) -> CacheAppend | None:
    """The append producing ``name`` (the appended cache), or None if it is not one."""
    t = graph.tensors.get(name)
    if t is None or t.producer is None:
        return None
    concat = graph.nodes[t.producer]
    if not _standard(concat, "Concat") or len(concat.present_inputs) < 2:
        return None
    first, *new = concat.present_inputs
    stored = _stored_cache(graph, first)
    quantize = _quantized_output(graph, name)
    if stored is None or not (t.is_graph_output or quantize is not None):
        return None
    cache, dequantize = stored
    wrappers = [i for i in (dequantize, quantize) if i is not None]
    copies = [name, *(graph.nodes[i].outputs[0] for i in wrappers)]
    return CacheAppend((concat.index, *wrappers), cache, tuple(new), tuple(copies))


def cache_appends(graph: Graph) -> Iterator[CacheAppend]:
    """Every append of the graph, in node order (``nodes[0]`` is its Concat, ``copies[0]``
    the appended cache)."""
    for node in graph.nodes:
        if _standard(node, "Concat"):
            append = cache_append(graph, node.outputs[0])
            if append is not None:
                yield append


def in_place_outputs(graph: Graph, runtime: str) -> frozenset[str]:
    """What a ``fused`` runtime never materialises, so it holds no memory of its own
    (`activation_liveness`): every append's appended cache (``present``) and, with an
    FP8 cache, its dequantised and quantised copies. None for an ``eager`` runtime,
    which copies the cache into ``present`` every step."""
    if runtime != "fused":
        return frozenset()
    return frozenset(name for append in cache_appends(graph) for name in append.copies)
