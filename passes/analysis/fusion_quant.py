"""Quantised GEMMs as a fusing runtime runs a QDQ graph (``runtime: fused``).

A QDQ graph spells a quantised GEMM as ``DequantizeLinear`` nodes feeding a plain
``MatMul``. TensorRT fuses each such pattern into one GEMM on the stored
operands, and vLLM and TensorRT-LLM run FP8 checkpoints the same way:

- an operand the GEMM reads through a runtime ``DequantizeLinear`` is read in its
  quantised form (its bytes are the quantised input's), and the
  ``DequantizeLinear`` is no kernel of its own when GEMMs are all that read it;
- a weight kept in its stored form (a folded ``DequantizeLinear`` of an FP8
  weight, `passes.ir.Tensor.stored_elem_type`) is read at its stored bytes
  already;
- when both operands are read in the same float8 type, the GEMM runs on the FP8
  tensor cores: its compute dtype becomes that type, so the target's float8
  rate prices it. With one wide operand (weight-only quantisation) it computes
  in the wide type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from passes.analysis.costs import NodeCost
from passes.dtypes import dtype_name
from passes.ir import Graph, Node

__all__ = ["QDQ_GEMMS", "quantised_gemms"]

QDQ_GEMMS = frozenset({"MatMul", "Gemm"})


def _standard(node: Node) -> bool:
    return node.domain in ("", "ai.onnx") and not node.folded


def _dequantizer(graph: Graph, name: str) -> Node | None:
    """The runtime DequantizeLinear producing ``name``, if one does."""
    t = graph.tensors.get(name)
    if t is None or t.producer is None:
        return None
    node = graph.nodes[t.producer]
    return node if node.op_type == "DequantizeLinear" and _standard(node) else None


def _operand(graph: Graph, name: str) -> tuple[str, int, Node | None]:
    """(dtype read in, bytes saved by reading it so, the DequantizeLinear absorbed)."""
    t = graph.tensors[name]
    if t.is_param and t.stored_elem_type:
        return dtype_name(t.stored_elem_type), 0, None
    dq = _dequantizer(graph, name)
    source = None if dq is None else graph.tensors.get(dq.present_inputs[0])
    if dq is None or source is None or not (source.is_static and t.is_static):
        return t.dtype, 0, None
    return source.dtype, t.nbytes - source.nbytes, dq


def _gemm(graph: Graph, node: Node, cost: NodeCost) -> tuple[NodeCost, list[Node]]:
    """The GEMM's cost on its stored operands, and the DequantizeLinear nodes it absorbs."""
    read = [_operand(graph, name) for name in node.inputs[:2]]
    saved = sum(r[1] for r in read)
    absorbed = [r[2] for r in read if r[2] is not None]
    dtypes = {r[0] for r in read}
    narrow = len(read) == 2 and len(dtypes) == 1 and next(iter(dtypes)).startswith("float8")
    fused = dataclasses.replace(
        cost,
        bytes_read=cost.bytes_read - saved,
        dtype=next(iter(dtypes)) if narrow else cost.dtype,
    )
    return fused, absorbed


def quantised_gemms(graph: Graph, nodes: Sequence[NodeCost]) -> list[NodeCost]:
    """``nodes`` with every QDQ GEMM fused (see the module docstring)."""
    out = list(nodes)
    readers: dict[int, set[int]] = {}  # absorbed DequantizeLinear -> the GEMMs that read it
    for node in graph.nodes:
        if node.op_type not in QDQ_GEMMS or not _standard(node) or len(node.inputs) < 2:
            continue
        if not all(name in graph.tensors for name in node.inputs[:2]):
            continue
        out[node.index], absorbed = _gemm(graph, node, out[node.index])
        for dq in absorbed:
            readers.setdefault(dq.index, set()).add(node.index)
    for index, gemms in readers.items():
        output = graph.tensors[graph.nodes[index].present_outputs[0]]
        if set(output.consumers) <= gemms and not output.is_graph_output:
            out[index] = dataclasses.replace(out[index], bytes_read=0, bytes_written=0, kernels=0)
    return out
