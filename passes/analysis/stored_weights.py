"""Weights a deployed model keeps in their stored, quantised form.

Loading folds a DequantizeLinear of a float8 or integer initializer into a wider
constant (`passes.ir.Tensor.stored_elem_type`), which the analyses price at its
stored bytes. A stage file or a rank's graph must then hold what the plan
counted: the quantised initializer with its scale (and zero point), and the
DequantizeLinear itself, not the dequantised value, which would take two to
four times the memory. `StoredWeight` names those pieces; export, the runtime
and the executor's rank graphs keep them, so what verify proves is what ships.

An eager runtime (one kernel per ONNX op, as onnxruntime runs an FP8 QDQ graph)
dequantises each stored weight at every step: `eager_dequantise` charges that
kernel to the weight's first reader, and every reader reads the wide tensor. A
fused runtime reads the stored form directly (`passes.analysis.fusion_quant`).

Only per-tensor and per-axis scales qualify: a blocked scale (``block_size``)
does not split with the weight along its blocks' axis, and its constant is
written dequantised, as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from passes.analysis.costs import INDEXED_READS, CostReport, NodeCost
from passes.analysis.flops import FLOP_RULES, OpShapes
from passes.dtypes import dtype_bits
from passes.ir import Graph

__all__ = [
    "StoredWeight", "eager_dequantise", "stored_inputs", "stored_weight", "stored_weights",
]  # fmt: skip


@dataclass(frozen=True)
class StoredWeight:
    """A folded DequantizeLinear whose output the graph reads as a parameter.

    Attributes:
        tensor: the dequantised constant the runtime nodes read.
        node: the DequantizeLinear's node index.
        inputs: its inputs, all initializers: the quantised data, the scale and,
            when given, the zero point.
        scale_axis: the axis of ``tensor`` a per-axis scale runs along, normalised
            to be non-negative; None for a per-tensor scale.
    """

    tensor: str
    node: int
    inputs: tuple[str, ...]
    scale_axis: int | None


def _scale_axis(graph: Graph, node: int, scale: str, rank: int) -> int | None | str:
    """The per-axis scale's axis, None per tensor, "blocked" when neither."""
    n = graph.nodes[node]
    if int(n.attributes.get("block_size", 0) or 0):
        return "blocked"
    shape = graph.tensors[scale].shape
    if shape is None or len(shape) > 1:
        return "blocked"
    if len(shape) == 0 or shape[0] == 1:
        return None
    axis = int(n.attributes.get("axis", 1))
    return axis + rank if axis < 0 else axis


def stored_weight(graph: Graph, name: str) -> StoredWeight | None:
    """``name`` as a `StoredWeight`, or None when it is not one."""
    t = graph.tensors.get(name)
    if t is None or not t.stored_elem_type or t.producer is None or t.shape is None:
        return None
    n = graph.nodes[t.producer]
    if not n.folded or n.op_type != "DequantizeLinear" or n.domain not in ("", "ai.onnx"):
        return None
    inputs = n.present_inputs
    if len(inputs) < 2 or any(graph.tensors[i].kind != "initializer" for i in inputs):
        return None  # a chain of folded nodes: keep its value
    axis = _scale_axis(graph, n.index, inputs[1], len(t.shape))
    if axis == "blocked":
        return None
    return StoredWeight(name, n.index, inputs, axis)  # type: ignore[arg-type]


def stored_weights(graph: Graph, names: Iterable[str]) -> dict[str, StoredWeight]:
    """The stored weights among ``names``, by tensor name."""
    found = {name: stored_weight(graph, name) for name in names}
    return {name: w for name, w in found.items() if w is not None}


def stored_inputs(graph: Graph, names: Iterable[str]) -> tuple[str, ...]:
    """The initializers the stored weights among ``names`` are kept as, each once."""
    return tuple(dict.fromkeys(i for w in stored_weights(graph, names).values() for i in w.inputs))


def _dequantise_kernel(graph: Graph, weight: StoredWeight) -> tuple[int, int, int]:
    """(FLOPs, bytes read, bytes written) of one DequantizeLinear run of ``weight``."""
    t = graph.tensors[weight.tensor]
    shapes = [graph.tensors[i].shape for i in weight.inputs]
    node = graph.nodes[weight.node]
    flops, _ = FLOP_RULES["DequantizeLinear"](OpShapes(shapes, [t.shape], node.attributes))
    read = sum(graph.tensors[i].nbytes for i in weight.inputs)
    return flops, read, _wide_bytes(graph, weight.tensor)


def _wide_bytes(graph: Graph, name: str) -> int:
    t = graph.tensors[name]
    return -(-t.numel * dtype_bits(t.elem_type) // 8)


def _reader_extra(graph: Graph, node: int, weight: StoredWeight, first: bool) -> NodeCost:
    """What reading ``weight`` adds to runtime node ``node`` in an eager runtime."""
    n = graph.nodes[node]
    flops = read = written = 0
    if n.op_type not in INDEXED_READS or n.inputs[0] != weight.tensor:  # rows are read as written
        read = _wide_bytes(graph, weight.tensor) - graph.tensors[weight.tensor].nbytes
    if first:
        flops, dq_read, written = _dequantise_kernel(graph, weight)
        read += dq_read
    return NodeCost(node, n.op_type, flops, 0, read, written, 0, kernels=int(first))


def eager_dequantise(graph: Graph, costs: CostReport) -> CostReport:
    """``costs`` as an eager runtime runs them: each stored weight dequantised by its own
    kernel every step (charged to its first runtime reader) and read wide by each reader."""
    extra: dict[int, list[NodeCost]] = {}
    params = [t.name for t in graph.iter_tensors() if t.is_param]
    for weight in stored_weights(graph, params).values():
        readers = sorted(
            c for c in graph.tensors[weight.tensor].consumers if not graph.nodes[c].folded
        )
        for k, node in enumerate(readers):
            extra.setdefault(node, []).append(_reader_extra(graph, node, weight, k == 0))
    if not extra:
        return costs
    nodes = list(costs.nodes)
    for index, adds in extra.items():
        c = nodes[index]
        nodes[index] = dataclasses.replace(
            c,
            flops=c.flops + sum(a.flops for a in adds),
            bytes_read=c.bytes_read + sum(a.bytes_read for a in adds),
            bytes_written=c.bytes_written + sum(a.bytes_written for a in adds),
            kernels=c.kernels + sum(a.kernels for a in adds),
        )
    # total_flops stays the model's: the dequantisation is the runtime's work, per node
    return dataclasses.replace(costs, nodes=tuple(nodes))
