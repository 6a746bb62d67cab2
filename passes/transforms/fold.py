"""Constant folding: which nodes are computed once, so their outputs are parameters.

onnxscript's optimizer does the folding (it evaluates Constant, shape
arithmetic and small constant subgraphs). We read back which original nodes
it folded, by value name, and never restructure the graph itself: every
original node keeps its index and still maps to a partition.

The library bounds what it evaluates by size and cannot read weights that are
not on disk (planning never loads them). A node whose inputs are all constant
is constant whether or not the library chose to evaluate it (ONNX Runtime folds
it at session start), so a closure over the graph completes the set: large
ConstantOfShape/Expand/Cast-of-weight results then count as parameters too.
Nondeterministic and control-flow ops, and ops of unknown domains, are never
treated as constant by the closure.
"""

from __future__ import annotations

import logging

import onnx

from passes.ir import Graph, build_graph
from passes.pass_infra import Pass, PassResult
from passes.transforms.shapes import fold_copy

__all__ = ["FoldConstants", "folded_nodes"]

logger = logging.getLogger(__name__)

_NEVER_CONSTANT = frozenset(
    {
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "Dropout",
        "If",
        "Loop",
        "Scan",
        "SequenceEmpty",
    }
)
# Ops whose output depends only on the input's static shape, not its values.
_SHAPE_ONLY = frozenset({"Shape", "Size"})


def _library_folded(model: onnx.ModelProto) -> set[int]:
    """Indices of original nodes whose every output the library turned into a constant."""
    folded_model = fold_copy(model)
    if folded_model is None:
        return set()
    g = folded_model.graph
    constants = {init.name for init in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            constants.update(o for o in n.output if o)
    # Only values that became constants count. A value that merely vanished may have
    # been renamed (an Identity feeding a graph output is removed and its input takes
    # the output's name), so it says nothing; intermediates of folded shape arithmetic
    # are found by the closure in `folded_nodes` instead.
    result = set()
    for i, n in enumerate(model.graph.node):
        outs = [o for o in n.output if o]
        if outs and all(o in constants for o in outs):
            result.add(i)
    return result


def folded_nodes(graph: Graph) -> frozenset[int]:
    """Every node computed once at load time (library folding plus the closure)."""
    folded = _library_folded(graph.model)
    constant_names = {t.name for t in graph.iter_tensors() if t.kind == "initializer"}
    for i in sorted(folded):
        constant_names.update(graph.nodes[i].present_outputs)
    for node in graph.nodes:  # original order is topological in a valid ONNX graph
        if node.index in folded:
            continue
        if node.domain not in ("", "ai.onnx") or node.op_type in _NEVER_CONSTANT:
            continue
        if node.op_type in _SHAPE_ONLY:
            src = graph.tensors.get(node.inputs[0]) if node.inputs else None
            is_constant = src is not None and src.is_static
        else:
            is_constant = all(name in constant_names for name in node.present_inputs)
        if is_constant:
            folded.add(node.index)
            constant_names.update(node.present_outputs)
    return frozenset(folded)


class FoldConstants(Pass[Graph, Graph]):
    """Mark nodes computed once at load time; their outputs become ``constant`` tensors."""

    def call(self, model: Graph) -> PassResult[Graph]:
        folded = folded_nodes(model)
        graph = build_graph(
            model.model, path=model.path, sha256=model.sha256, folded=folded, dims=model.dims
        )
        return PassResult(graph, bool(folded))
