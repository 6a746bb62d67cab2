"""Per-rank graphs of a tensor-parallel group: what rank r of t runs, as an ONNX model.

A sharding (`passes.analysis.sharding.ShardingPlan`) says which parameters are
sliced, which shape constants change per rank and which collectives follow
which nodes. `RankGraph` turns it into the model one rank runs:

- the runtime nodes of the group (all of the graph's by default), in their
  original order, read their local tensors under the same names;
- parameters become initializers: a sharded one holds chunk ``rank`` of
  ``degree`` equal chunks along its axis, a shape constant its per-rank value,
  every other one its whole value. A quantised weight (a folded DequantizeLinear,
  `passes.analysis.stored_weights`) enters as its stored initializers and the
  DequantizeLinear itself (`passes.transforms.rank_params`), as the plan counts it;
- every collective is an explicit node of the custom domain
  ``partition.collective`` (``AllReduce``, ``AllGather`` with ``axis``; both
  carry ``group_size``) right after the node that makes its tensor. The producer
  writes ``T__partial`` (to be summed) or ``T__local`` (to be gathered) and the
  collective writes ``T``, so every later reader sees the whole tensor without
  being rewritten;
- graph inputs and outputs carry the shapes one rank holds;
- an embedding Gather whose table is split by vocabulary becomes a masked lookup
  of the rank's rows (`passes.transforms.tensor_parallel_vocab`), with its
  per-rank constants as initializers; its all-reduce follows as for any partial sum.

Export and the distributed runtime reuse these models, and the NumPy executor
runs them in lockstep (`partitioner.executor.tensor_parallel`), so what verify
proves is what gets deployed. Without a ``read_param`` the model is structure
only: its parameters are declared (type, local dims, where they come from) with
no data, so a weightless model still yields its rank graphs, and only reading
the values fails, with the weight store's own message.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from passes.analysis.partition_io import PartitionIO, partition_io
from passes.analysis.sharding_layout import ALL_GATHER, ALL_REDUCE, CollectiveOp, Layout
from passes.analysis.stored_weights import stored_weights
from passes.errors import PassError
from passes.ir import Dim, Graph, node_subgraphs, outer_references
from passes.pass_infra import Pass, PassResult
from passes.transforms.rank_params import (
    SOURCE_KEY,
    SPLIT_KEY,
    chunk,
    declared,
    split_text,
    stored_initializers,
    stored_nodes,
)
from passes.transforms.tensor_parallel_vocab import vocab_lookup, vocab_split_table

if TYPE_CHECKING:
    from passes.analysis.sharding import ShardingPlan

__all__ = [
    "COLLECTIVE_DOMAIN",
    "COLLECTIVE_OP_TYPES",
    "SOURCE_KEY",
    "SPLIT_KEY",
    "ParamReader",
    "RankGraph",
    "rank_graph",
    "chunk",
    "collective_input",
    "read_layout",
    "reads",
    "tensor_layout",
]

COLLECTIVE_DOMAIN = "partition.collective"
COLLECTIVE_OPSET = 1
COLLECTIVE_OP_TYPES: Mapping[str, str] = {ALL_REDUCE: "AllReduce", ALL_GATHER: "AllGather"}
# What the producer of a collective's tensor writes instead of the tensor itself.
_SUFFIX: Mapping[str, str] = {ALL_REDUCE: "__partial", ALL_GATHER: "__local"}

ParamReader = Callable[[str], np.ndarray]
"""The whole value of a parameter (initializer or folded constant) by name."""

_WHOLE = Layout()


def tensor_layout(sharding: ShardingPlan, name: str) -> Layout:
    """How ``name`` lies across the ranks before any collective (whole when not listed)."""
    return sharding.layouts.get(name, _WHOLE)


def read_layout(sharding: ShardingPlan, name: str) -> Layout:
    """How the readers of ``name`` see it: whole once a collective made it so (wherever that
    ran: a group that receives it gets it whole), else as it was made."""
    if any(op.tensor == name for op in sharding.collectives):
        return _WHOLE
    return tensor_layout(sharding, name)


def collective_input(op: CollectiveOp) -> str:
    """The name the producer writes for a tensor a collective then makes whole."""
    if op.kind not in _SUFFIX:
        raise PassError(
            f"collective {op.kind!r} on {op.tensor!r} is not one a rank graph can hold "
            f"(known: {', '.join(sorted(_SUFFIX))})"
        )
    return op.tensor + _SUFFIX[op.kind]


def _runtime_order(graph: Graph, nodes: Iterable[int] | None) -> tuple[int, ...]:
    wanted = None if nodes is None else set(nodes)
    return tuple(
        i
        for i in graph.topological_order()
        if not graph.nodes[i].folded and (wanted is None or i in wanted)
    )


def _local_shape(graph: Graph, sharding: ShardingPlan, name: str) -> tuple[Dim, ...] | None:
    local = sharding.local_shapes.get(name)
    if local is not None:
        return tuple(local)
    t = graph.tensors.get(name)
    return None if t is None else t.shape


def _value_info(
    graph: Graph, name: str, shape: tuple[Dim, ...] | None, as_name: str | None = None
) -> onnx.ValueInfoProto:
    if name not in graph.tensors:  # a name the model reads but never defines
        return helper.make_empty_tensor_value_info(as_name or name)
    elem = graph.tensors[name].elem_type
    return helper.make_tensor_value_info(
        as_name or name, elem, None if shape is None else list(shape)
    )


@dataclass(frozen=True)
class _Group:
    """What every rank of the group shares: nodes, boundary values, collectives."""

    order: tuple[int, ...]
    io: PartitionIO
    collectives: tuple[CollectiveOp, ...]


def _group(graph: Graph, sharding: ShardingPlan, nodes: Iterable[int] | None) -> _Group:
    order = _runtime_order(graph, nodes)
    inside = set(order)
    collectives = tuple(op for op in sharding.collectives if op.node in inside)
    return _Group(order, partition_io(graph, order), collectives)


def _nodes(
    graph: Graph, sharding: ShardingPlan, group: _Group, rank: int
) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
    """The group's node protos in order, each collective right after its producer, and the
    rank's constants of the vocabulary-split lookups that replace their Gathers."""
    degree = sharding.degree
    after: dict[int, list[CollectiveOp]] = {}
    for op in group.collectives:
        after.setdefault(op.node, []).append(op)
    out: list[onnx.NodeProto] = []
    constants: list[TensorProto] = []
    for i in group.order:
        proto = onnx.NodeProto()
        proto.CopyFrom(graph.model.graph.node[i])
        renamed = {op.tensor: collective_input(op) for op in after.get(i, ())}
        proto.output[:] = [renamed.get(o, o) for o in proto.output]
        if vocab_split_table(graph, sharding, i) is None:
            out.append(proto)
        else:  # global ids index the whole vocabulary: mask out the other ranks' rows
            lookup = vocab_lookup(graph, i, proto.output[0], rank, degree)
            out.extend(lookup.nodes)
            constants.extend(lookup.constants)
        for op in after.get(i, ()):
            attributes: dict[str, int] = {"group_size": degree}
            if op.kind == ALL_GATHER:
                attributes["axis"] = int(op.axis)  # type: ignore[arg-type]
            out.append(
                helper.make_node(
                    COLLECTIVE_OP_TYPES[op.kind],
                    [collective_input(op)],
                    [op.tensor],
                    name=f"{COLLECTIVE_OP_TYPES[op.kind]}:{op.tensor}",
                    domain=COLLECTIVE_DOMAIN,
                    **attributes,
                )
            )
    return out, constants


def _initializer(
    graph: Graph, sharding: ShardingPlan, name: str, rank: int, read: ParamReader | None
) -> TensorProto:
    """Rank ``rank``'s value of parameter ``name``: a shape constant, a chunk, or whole."""
    t = graph.tensors[name]
    if name in sharding.shape_inputs:
        dtype = helper.tensor_dtype_to_np_dtype(t.elem_type)
        value = np.asarray(sharding.shape_inputs[name], dtype)
        if t.is_static:
            value = value.reshape(t.shape)  # type: ignore[arg-type]
        return numpy_helper.from_array(value, name)
    axis = sharding.weights.get(name)
    split = split_text(axis, rank, sharding.degree)
    if read is None:
        shape = _local_shape(graph, sharding, name)
        if shape is None or not all(isinstance(d, int) for d in shape):
            raise PassError(f"parameter {name!r} has no static shape to declare: {shape}")
        return declared(graph, name, shape, split)  # type: ignore[arg-type]
    value = np.asarray(read(name))
    if axis is not None:
        value = chunk(value, axis, rank, sharding.degree, name)
    return numpy_helper.from_array(value, name)


def _initializers(
    graph: Graph,
    sharding: ShardingPlan,
    params: Iterable[str],
    rank: int,
    read: ParamReader | None,
) -> list[TensorProto]:
    """Every parameter's initializers; a stored weight's are its quantised data, scale and
    zero point (`passes.transforms.rank_params`), each name once."""
    stored = stored_weights(graph, params)
    out: dict[str, TensorProto] = {}
    for name in params:
        weight = stored.get(name)
        if weight is None:
            out.setdefault(name, _initializer(graph, sharding, name, rank, read))
            continue
        axis = sharding.weights.get(name)
        for t in stored_initializers(graph, weight, axis, rank, sharding.degree, read):
            out.setdefault(t.name, t)
    return list(out.values())


def _boundary(
    graph: Graph, sharding: ShardingPlan, group: _Group
) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    """Inputs, outputs and the collectives' value infos, with the shapes one rank holds."""

    def read_shape(name: str) -> tuple[Dim, ...] | None:
        if read_layout(sharding, name).is_whole and name in graph.tensors:
            return graph.tensors[name].shape
        return _local_shape(graph, sharding, name)

    params = set(group.io.params)
    inputs = [_value_info(graph, n, read_shape(n)) for n in group.io.inputs if n not in params]
    outputs = [_value_info(graph, n, read_shape(n)) for n in group.io.outputs]
    inner = [
        _value_info(
            graph, op.tensor, _local_shape(graph, sharding, op.tensor), collective_input(op)
        )
        for op in group.collectives
    ]
    inner += [
        _value_info(graph, op.tensor, graph.tensors[op.tensor].shape)
        for op in group.collectives
        if op.tensor not in set(group.io.outputs)
    ]
    return inputs, outputs, inner


def reads(node: onnx.NodeProto) -> tuple[str, ...]:
    """Every name a node reads: its inputs and what its sub-graphs take from outside."""
    names = [i for i in node.input if i]
    for sub in node_subgraphs(node):
        names.extend(outer_references(sub))
    return tuple(dict.fromkeys(names))


class RankGraph(Pass[Graph, onnx.ModelProto]):
    """The ONNX model rank ``rank`` of a tensor-parallel group runs (see the module doc).

    Args:
        sharding: the group's sharding (its ``degree`` is the group size).
        rank: this rank, 0 <= rank < degree.
        nodes: node indices the group runs (folded ones are skipped); None: all.
        read_param: whole parameter values by name; None: parameters declared, no data.
    """

    def __init__(
        self,
        sharding: ShardingPlan,
        rank: int,
        nodes: Collection[int] | None = None,
        read_param: ParamReader | None = None,
    ) -> None:
        self.sharding = sharding
        self.rank = rank
        self.nodes = nodes
        self.read_param = read_param

    def requires(self, model: Graph) -> None:
        degree = self.sharding.degree
        if degree < 1 or not 0 <= self.rank < degree:
            raise PassError(f"rank {self.rank} is not one of the {degree} ranks of the group")
        unknown = sorted(set(self.nodes or ()) - set(range(model.num_nodes)))
        if unknown:
            raise PassError(f"node {unknown[0]} is not in the model ({model.num_nodes} nodes)")

    def ensures(self, model: onnx.ModelProto) -> None:
        """Every node reads only inputs, initializers and values made before it."""
        g = model.graph
        defined = {i.name for i in g.input} | {t.name for t in g.initializer}
        for node in g.node:
            missing = [name for name in reads(node) if name not in defined]
            if missing:
                raise PassError(
                    f"rank graph node {node.name!r} reads {missing[0]!r} before it is made"
                )
            defined.update(o for o in node.output if o)

    def call(self, model: Graph) -> PassResult[onnx.ModelProto]:
        graph, sharding = model, self.sharding
        group = _group(graph, sharding, self.nodes)
        inputs, outputs, inner = _boundary(graph, sharding, group)
        initializers = _initializers(graph, sharding, group.io.params, self.rank, self.read_param)
        nodes, constants = _nodes(graph, sharding, group, self.rank)
        nodes = stored_nodes(graph, stored_weights(graph, group.io.params).values()) + nodes
        body = helper.make_graph(
            nodes,
            f"{graph.model.graph.name or 'model'}_rank{self.rank}_of_{sharding.degree}",
            inputs,
            outputs,
            initializers + constants,
            value_info=inner,
        )
        opsets = [o for o in graph.model.opset_import if o.domain != COLLECTIVE_DOMAIN]
        rank_model = helper.make_model(
            body,
            opset_imports=[*opsets, helper.make_opsetid(COLLECTIVE_DOMAIN, COLLECTIVE_OPSET)],
            functions=list(graph.model.functions),
        )
        rank_model.ir_version = graph.model.ir_version
        return PassResult(rank_model, modified=True)


def rank_graph(
    graph: Graph,
    sharding: ShardingPlan,
    rank: int,
    nodes: Collection[int] | None = None,
    *,
    read_param: ParamReader | None = None,
) -> onnx.ModelProto:
    """The ONNX model rank ``rank`` of ``sharding.degree`` runs (`RankGraph`).

    Raises:
        PassError: the rank is out of range, a node index unknown, a parameter does
            not split evenly, or a collective is of a kind a rank graph cannot hold.
    """
    return RankGraph(sharding, rank, nodes, read_param)(graph).model
