"""Calls of model-local functions, expanded into the nodes of their bodies.

A model may define functions (``model.functions``) and call them as nodes of
its graph. The call keeps its place (its index) in the IR; whoever needs the
body, to cost it or to run it, expands one call at a time with onnx's own
inliner (attributes bound, nested calls expanded), and the expanded values
get a prefix unique to the call so that two calls never share a name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx
import onnx.inliner

from passes.ir import Graph, Node

__all__ = ["is_function_call", "expand_call", "expand_nodes"]


def _functions(model: onnx.ModelProto) -> Mapping[tuple[str, str], onnx.FunctionProto]:
    return {(f.domain, f.name): f for f in model.functions}


def is_function_call(graph: Graph, node: Node) -> bool:
    """Whether ``node`` calls one of the model's local functions."""
    return (node.domain, node.op_type) in _functions(graph.model)


def _value_info(graph: Graph, name: str) -> onnx.ValueInfoProto:
    t = graph.tensors.get(name)
    if t is None or not t.elem_type:
        return onnx.helper.make_empty_tensor_value_info(name)
    shape = list(t.shape) if t.shape is not None else None
    return onnx.helper.make_tensor_value_info(name, t.elem_type, shape)


def expand_call(graph: Graph, node: Node) -> list[onnx.NodeProto]:
    """The body of one function call, as nodes reading the call's inputs and writing its outputs."""
    proto = graph.model.graph.node[node.index]
    call = onnx.helper.make_graph(
        [proto],
        f"call_{node.index}",
        [_value_info(graph, i) for i in node.present_inputs if i in graph.tensors],
        [_value_info(graph, o) for o in node.present_outputs],
    )
    mini = onnx.helper.make_model(
        call, opset_imports=list(graph.model.opset_import), functions=list(graph.model.functions)
    )
    mini.ir_version = graph.model.ir_version
    body = list(onnx.inliner.inline_local_functions(mini).graph.node)
    keep = set(node.present_inputs) | set(node.present_outputs)
    prefix = f"{node.name}#{node.index}/"

    def rename(name: str) -> str:
        return name if not name or name in keep else prefix + name

    out = []
    for n in body:
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        copy.input[:] = [rename(i) for i in n.input]
        copy.output[:] = [rename(o) for o in n.output]
        copy.name = prefix + (n.name or n.op_type)
        out.append(copy)
    return out


def expand_nodes(graph: Graph, indices: Sequence[int]) -> list[onnx.NodeProto]:
    """The protos of ``indices`` in order, each function call replaced by its body."""
    functions = _functions(graph.model)
    out: list[onnx.NodeProto] = []
    for i in indices:
        node = graph.nodes[i]
        if (node.domain, node.op_type) in functions:
            out.extend(expand_call(graph, node))
        else:
            out.append(graph.model.graph.node[i])
    return out
