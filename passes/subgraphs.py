"""Control-flow bodies of ONNX nodes and the outer-scope values they read."""

from __future__ import annotations

import onnx

__all__ = ["node_subgraphs", "outer_references"]


def node_subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The bodies a control-flow node carries in GRAPH / GRAPHS attributes (If, Loop, Scan)."""
    out: list[onnx.GraphProto] = []
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            out.append(a.g)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out.extend(a.graphs)
    return out


def outer_references(graph: onnx.GraphProto) -> tuple[str, ...]:
    """Names a (sub-)graph reads but does not define: values from its enclosing scope."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    defined |= {t.values.name for t in graph.sparse_initializer}
    used: dict[str, None] = {}
    for n in graph.node:
        for name in n.input:
            if name and name not in defined:
                used.setdefault(name)
        for sub in node_subgraphs(n):
            for name in outer_references(sub):
                if name not in defined:
                    used.setdefault(name)
        defined.update(o for o in n.output if o)
    # a body may return an enclosing-scope value directly (onnxruntime runs such bodies)
    used.update(dict.fromkeys(o.name for o in graph.output if o.name not in defined))
    return tuple(used)
