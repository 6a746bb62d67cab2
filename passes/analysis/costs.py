"""Per-node cost analysis: FLOPs, bytes read and written, parameter bytes.

`node_costs(graph)` walks the graph once and returns a frozen `CostReport`.
A node with no FLOP rule (a custom-domain or unknown op), or whose tensors have
no static shape, is reported with ``known=False`` and a reason; it is never
silently counted as zero work.

Folded nodes run once at load time, so they cost nothing per step; the
constants they produce are parameters of the nodes that use them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import onnx

from passes.analysis.flops import FLOP_RULES, VIEW_OPS, OpShapes, flops_for
from passes.functions import expand_call, is_function_call
from passes.ir import Graph, Node, Tensor, build_graph, node_subgraphs

__all__ = [
    "NodeCost", "CostReport", "INDEXED_READS", "call_body", "node_costs", "resident_params",
]  # fmt: skip

# Ops that read only the part of their first input (data) that they write out.
INDEXED_READS = frozenset({"Gather", "GatherElements", "GatherND", "Slice"})


@dataclass(frozen=True)
class NodeCost:
    """What one node costs per execution.

    Attributes:
        flops: floating-point operations (multiply-add = 2).
        matmuls: contractions in the node (MatMul, Conv, ...; Attention counts 2).
        bytes_read: distinct input tensors' bytes, weights included; an indexed read
            (`INDEXED_READS`: Gather, Slice, ...) counts at most the bytes it writes of the
            data it indexes, the rows it touches, not the whole table.
        bytes_written: output bytes.
        param_bytes: bytes of the parameters (initializers, folded constants) it reads.
        known: False if no rule covers the op or a shape is unknown.
        reason: why the cost is unknown ("" if known).
        is_view: the output aliases the input (Reshape, Squeeze, ...): no kernel, no traffic.
        dtype: the dtype the node computes in, for peak-rate lookup.
        kernels: launches it costs (1; 0 inside a replayed CUDA graph, `fusion`).
    """

    index: int
    op_type: str
    flops: int
    matmuls: int
    bytes_read: int
    bytes_written: int
    param_bytes: int
    known: bool = True
    reason: str = ""
    is_view: bool = False
    dtype: str = ""
    kernels: int = 1

    @property
    def bytes_moved(self) -> int:
        """Inputs read + outputs written (weights included), the roofline's memory term."""
        return 0 if self.is_view else self.bytes_read + self.bytes_written


@dataclass(frozen=True)
class CostReport:
    """Per-node costs plus graph totals.

    Attributes:
        param_bytes: resident parameter memory, every copy counted (a folded
            transpose of a tied embedding is a second copy in memory).
        param_count: parameters as a model's author counts them, from the same
            tensors as ``param_bytes``: elements of the float weights its float
            parameters come from, each once. A weight is a float initializer or a
            float tensor computed from no weight (ConstantOfShape, ...); a folded copy
            (Transpose, Cast, Reshape, ...) stands for the weights it was computed
            from, which need not be resident themselves. Constant-node literals are
            not weights.
        constant_bytes: the non-float part of ``param_bytes`` (shapes, indices, masks).
    """

    nodes: tuple[NodeCost, ...]
    total_flops: int
    param_bytes: int
    param_count: int
    constant_bytes: int
    unknown: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def num_unknown(self) -> int:
        return sum(len(v) for v in self.unknown.values())


def _nbytes(t: Tensor) -> int | None:
    return t.nbytes if t.is_static else None


def _unused_untyped(t: Tensor) -> bool:
    """An output nothing reads or returns and no inference could type (an optional
    output the schema leaves untyped): it weighs nothing in the node's cost, and must
    not make a node whose other tensors are known "unknown cost"."""
    return not t.elem_type and not t.consumers and not t.is_graph_output


def _static_shape(t: Tensor | None) -> tuple[int, ...] | None:
    if t is None or not t.is_static:
        return None
    return t.shape  # type: ignore[return-value]


def _compute_dtype(graph: Graph, node: Node) -> str:
    for name in [*node.present_inputs, *node.present_outputs]:
        t = graph.tensors.get(name)
        if t is not None and t.is_float:
            return t.dtype
    for name in node.present_outputs:
        t = graph.tensors.get(name)
        if t is not None and t.dtype:
            return t.dtype
    return ""


def _subgraph_flops(sub: onnx.GraphProto, outer: Mapping[str, tuple[int, ...]]) -> int | None:
    """FLOPs of a control-flow body, each node counted once; None if any is unknown."""
    shapes: dict[str, tuple[int, ...]] = dict(outer)
    for vi in [*sub.input, *sub.value_info, *sub.output]:
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)
    for init in sub.initializer:
        shapes[init.name] = tuple(init.dims)
    total = 0
    for n in sub.node:
        bodies = node_subgraphs(n)
        if bodies:
            for body in bodies:
                inner = _subgraph_flops(body, shapes)
                if inner is None:
                    return None
                total += inner
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Constant":
            continue
        ins = [shapes.get(i) if i else None for i in n.input]
        outs = [shapes.get(o) for o in n.output if o]
        if any(i is None for i, name in zip(ins, n.input, strict=True) if name) or any(
            o is None for o in outs
        ):
            return None
        counted = flops_for(n.op_type, n.domain, OpShapes(ins, outs, attrs))  # type: ignore[arg-type]
        if counted is None:
            return None
        total += counted[0]
    return total


def _node_bytes(graph: Graph, node: Node) -> tuple[int, int, int, list[str]]:
    """Bytes read, written and of parameters, and the tensors of unknown size."""
    inputs = [graph.tensors.get(i) if i else None for i in node.inputs]
    read = written = params = 0
    unknown: list[str] = []
    for t in (graph.tensors[o] for o in node.present_outputs):
        size = _nbytes(t)
        if size is None:
            if not _unused_untyped(t):
                unknown.append(t.name)
        else:
            written += size
    indexed = inputs[0].name if node.op_type in INDEXED_READS and inputs and inputs[0] else None
    for t in {t.name: t for t in inputs if t is not None}.values():
        size = _nbytes(t)
        if size is None:
            unknown.append(t.name)
            continue
        if t.is_param:
            params += size  # resident whole, however little of it a step reads
        # an indexed read touches the rows it gathers (at most what it writes), not the table
        read += min(size, written) if t.name == indexed and not unknown else size
    return read, written, params, unknown


def _node_cost(graph: Graph, node: Node) -> NodeCost:
    if node.folded:
        return NodeCost(node.index, node.op_type, 0, 0, 0, 0, 0, dtype=_compute_dtype(graph, node))
    read, written, params, unknown = _node_bytes(graph, node)
    dtype = _compute_dtype(graph, node)
    is_view = node.op_type in VIEW_OPS and node.domain in ("", "ai.onnx")

    def unknown_cost(reason: str) -> NodeCost:
        return NodeCost(
            node.index, node.op_type, 0, 0, read, written, params, False, reason, is_view, dtype
        )

    standard = node.domain in ("", "ai.onnx")
    control_flow = standard and node.op_type in ("If", "Loop", "Scan")
    if not unknown and is_function_call(graph, node):
        counted = _function_call_flops(graph, node)
        if counted is None:
            return unknown_cost(
                f"body of local function {node.domain}::{node.op_type} has unknown cost"
            )
        return NodeCost(
            node.index,
            node.op_type,
            counted[0],
            counted[1],
            read,
            written,
            params,
            True,
            "",
            False,
            dtype,
        )
    if not control_flow and not (standard and node.op_type in FLOP_RULES):
        domain = f"{node.domain}::" if node.domain else ""
        return unknown_cost(f"no cost rule for op {domain}{node.op_type}")
    if unknown:
        return unknown_cost(f"unknown shape of {unknown[0]!r}")
    matmuls = 0
    if control_flow:
        outer = {t.name: t.shape for t in graph.iter_tensors() if t.is_static}
        flops: int | None = 0
        for value in node.attributes.values():
            for sub in value if isinstance(value, list) else [value]:
                if isinstance(sub, onnx.GraphProto):
                    inner = _subgraph_flops(sub, outer)  # type: ignore[arg-type]
                    flops = None if inner is None or flops is None else flops + inner
        if flops is None:
            return unknown_cost("sub-graph with unknown shapes or ops")
    else:
        shapes = OpShapes(
            [_static_shape(graph.tensors.get(i) if i else None) for i in node.inputs],
            [_static_shape(graph.tensors[o]) for o in node.present_outputs],  # type: ignore[misc]
            node.attributes,
        )
        flops, matmuls = FLOP_RULES[node.op_type](shapes)
    return NodeCost(
        node.index, node.op_type, flops, matmuls, read, written, params, True, "", is_view, dtype
    )


def call_body(graph: Graph, node: Node) -> Graph:
    """A local function call's body as a graph of its own, shapes inferred at this call's."""
    from passes.transforms.shapes import onnx_infer

    body = expand_call(graph, node)
    inputs = [graph.tensors[i] for i in node.present_inputs if i in graph.tensors]
    mini = onnx.helper.make_model(
        onnx.helper.make_graph(
            body,
            "body",
            [
                onnx.helper.make_tensor_value_info(t.name, t.elem_type, list(t.shape or ()))
                for t in inputs
            ],
            [onnx.helper.make_empty_tensor_value_info(o) for o in node.present_outputs],
        ),
        opset_imports=list(graph.model.opset_import),
    )
    return build_graph(onnx_infer(mini))


def _function_call_flops(graph: Graph, node: Node) -> tuple[int, int] | None:
    """FLOPs and contractions of a local function's body, expanded at this call's shapes."""
    report = node_costs(call_body(graph, node))
    if report.num_unknown:
        return None
    return report.total_flops, sum(c.matmuls for c in report.nodes)


def resident_params(graph: Graph) -> list[Tensor]:
    """Parameters that stay in memory: used by a runtime node or returned as an output."""
    runtime = {n.index for n in graph.nodes if not n.folded}
    return [
        t
        for t in graph.iter_tensors()
        if t.is_param and (t.is_graph_output or any(c in runtime for c in t.consumers))
    ]


def _float_sources(graph: Graph, t: Tensor) -> list[str]:
    """The float parameters a folded constant was computed from (none for others)."""
    if t.kind != "constant" or t.producer is None:
        return []
    return [
        i
        for i in graph.nodes[t.producer].present_inputs
        if i in graph.tensors and graph.tensors[i].is_param and graph.tensors[i].is_float
    ]


def _weights_of(graph: Graph, params: list[Tensor]) -> dict[str, Tensor]:
    """The float weights behind the float tensors of ``params``, each once, by name.

    A folded constant computed from float parameters (a Transpose, Cast, Reshape or
    Unsqueeze of a weight) stands for those, followed back through folded nodes: a
    weight read only through a folded copy is not resident itself (ConstantOfShape ->
    Reshape keeps only the reshaped copy) but is what its author counts. A float
    tensor computed from no float parameter is a weight itself, except the literal
    of a Constant node (eps, scales, RoPE frequencies).
    """
    weights: dict[str, Tensor] = {}
    seen: set[str] = set()
    stack = [t.name for t in params if t.is_float]
    while stack:  # a stack, not recursion: folded chains can be thousands of nodes long
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        t = graph.tensors[name]
        sources = _float_sources(graph, t)
        if sources:
            stack.extend(sources)
        elif t.producer is None or graph.nodes[t.producer].op_type != "Constant":
            weights[name] = t
    return weights


def node_costs(graph: Graph) -> CostReport:
    """Cost every node of ``graph`` (one walk) and total the graph."""
    costs = tuple(_node_cost(graph, n) for n in graph.nodes)
    unknown: dict[str, list[str]] = defaultdict(list)
    for c in costs:
        if not c.known:
            node = graph.nodes[c.index]
            key = f"{node.domain}::{node.op_type}" if node.domain else node.op_type
            unknown[key].append(node.name)
    params = resident_params(graph)
    # Both totals come from the resident parameters: bytes count every copy in
    # memory, the count the float weights those copies stand for.
    weights = _weights_of(graph, params)
    return CostReport(
        nodes=costs,
        total_flops=sum(c.flops for c in costs),
        param_bytes=sum(t.nbytes for t in params if t.is_static),
        param_count=sum(t.numel for t in weights.values() if t.is_static),
        constant_bytes=sum(t.nbytes for t in params if t.is_static and not t.is_float),
        unknown={k: tuple(v) for k, v in sorted(unknown.items())},
    )
