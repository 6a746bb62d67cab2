"""One propagation pass of the sharding analysis: the state the per-op rules read and extend.

A pass walks the runtime nodes in topological order. For each node a rule (see
`passes.analysis.sharding_rules`) returns a `Decision`; `Propagation.apply`
records it: output layouts, parameters and KV caches sliced, the collectives
that follow producers, and what later passes must do differently (`Constraints`).

Parameters and KV-cache inputs are *sources*: no node produces them at run time,
so they can never be gathered. A source takes the layout its first runtime
reader wants (split when a rule slices it, whole otherwise) and keeps it; a
later reader that cannot use that layout makes the next pass keep it whole.

A tensor is gathered at most once, right after its producer, and then every
consumer sees it whole. When a consumer needs a gather after an earlier
consumer already read the split tensor, the pass asks the next one to gather
the tensor right at its producer instead, so that no reader is misled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import numpy_helper

from passes.analysis.sharding_layout import (
    ALL_GATHER,
    ALL_REDUCE,
    REPLICATED,
    CollectiveOp,
    Layout,
)
from passes.ir import Graph, Node

__all__ = ["Constraints", "Decision", "ConstantReader", "Propagation"]


@dataclass(frozen=True)
class Constraints:
    """What earlier passes learned; every set only grows, so the passes end.

    Attributes:
        no_column_split: MatMul/Gemm nodes whose column split only fed gathers.
        whole_sources: parameters and KV-cache inputs that must not be sliced.
        gather_at_producer: tensors to gather right after their producer.
        replicated_nodes: nodes that must run whole (their shape input is shared
            with readers that need another value).
    """

    no_column_split: frozenset[int] = frozenset()
    whole_sources: frozenset[str] = frozenset()
    gather_at_producer: frozenset[str] = frozenset()
    replicated_nodes: frozenset[int] = frozenset()

    @property
    def empty(self) -> bool:
        return not (
            self.no_column_split
            or self.whole_sources
            or self.gather_at_producer
            or self.replicated_nodes
        )

    def merged(self, other: Constraints) -> Constraints:
        return Constraints(
            self.no_column_split | other.no_column_split,
            self.whole_sources | other.whole_sources,
            self.gather_at_producer | other.gather_at_producer,
            self.replicated_nodes | other.replicated_nodes,
        )


@dataclass(frozen=True)
class Decision:
    """What a rule decided for one node.

    Attributes:
        outputs: the layout of each present output, in order.
        split_sources: parameters / KV-cache inputs the node reads sliced -> axis.
        shape_values: shape inputs (Reshape/Expand targets) -> per-rank value.
        gathers: split inputs the node needs whole (all-gathered first).
        column_split: the node starts a split (a column-split MatMul).
        ends_split: the node contracts split inputs into a partial sum (row split).
    """

    outputs: tuple[Layout, ...]
    split_sources: Mapping[str, int] = field(default_factory=dict)
    shape_values: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    gathers: tuple[str, ...] = ()
    column_split: bool = False
    ends_split: bool = False

    @staticmethod
    def same(
        node: Node,
        layout: Layout,
        *,
        split_sources: Mapping[str, int] | None = None,
        gathers: tuple[str, ...] = (),
    ) -> Decision:
        """Every output of ``node`` gets ``layout``."""
        outputs = (layout,) * len(node.present_outputs)
        return Decision(outputs, split_sources=split_sources or {}, gathers=gathers)


class ConstantReader:
    """Integer values of small constants (axes, shapes) that the file spells out.

    A folded constant computed by the loader has no value in the IR; only
    initializers with inline data and ``Constant`` nodes are read. Rules that
    need a value they cannot read do not apply (the node runs whole).
    """

    def __init__(self, graph: Graph) -> None:
        self._graph = graph
        self._initializers = {t.name: t for t in graph.model.graph.initializer}

    def ints(self, name: str) -> tuple[int, ...] | None:
        t = self._graph.tensors.get(name)
        if t is None or not t.is_param:
            return None
        proto = self._initializers.get(name)
        if proto is not None:
            return self._from_proto(proto)
        if t.producer is None:
            return None
        node = self._graph.nodes[t.producer]
        if node.op_type != "Constant" or node.domain:
            return None
        attrs = node.attributes
        if "value" in attrs:
            return self._from_proto(attrs["value"])
        if "value_ints" in attrs:
            return tuple(int(v) for v in attrs["value_ints"])
        if "value_int" in attrs:
            return (int(attrs["value_int"]),)
        return None

    @staticmethod
    def _from_proto(proto: onnx.TensorProto) -> tuple[int, ...] | None:
        # weights the loader dropped after parsing are marked external too
        if proto.data_location == onnx.TensorProto.EXTERNAL:
            return None
        array = numpy_helper.to_array(proto)
        if not np.issubdtype(array.dtype, np.integer):
            return None
        return tuple(int(v) for v in array.reshape(-1))


class Propagation:
    """The state of one pass over the runtime nodes (see the module docstring)."""

    def __init__(
        self,
        graph: Graph,
        degree: int,
        constraints: Constraints,
        constants: ConstantReader,
        sizing: Graph | None = None,
    ) -> None:
        self.graph = graph
        #: The graph whose sizes the size-based choices read (`planned_nbytes`): the same
        #: model at the dims it was planned at, so the choices stay the plan's at any dims.
        self.sizing = graph if sizing is None else sizing
        self.degree = degree
        self.constraints = constraints
        self.constants = constants
        self.order = tuple(i for i in graph.topological_order() if not graph.nodes[i].folded)
        self._position = {index: p for p, index in enumerate(self.order)}
        self.produced: dict[str, Layout] = {}  # producer's layout, before any collective
        self.sources: dict[str, Layout] = {}  # locked layouts of parameters and KV inputs
        self._seen: dict[str, Layout] = {}  # what consumers read (whole after a collective)
        self._origins: dict[str, frozenset[int]] = {}
        self.collectives: list[CollectiveOp] = []
        self.shape_values: dict[int, Mapping[str, tuple[int, ...]]] = {}
        self.sharded: set[int] = set()
        self._demands = Constraints()
        self._gathered_origins: set[int] = set()
        self._useful_origins: set[int] = set()

    # ---- what rules read -------------------------------------------------

    @property
    def opset(self) -> int:
        return self.graph.opset

    def shape(self, name: str) -> tuple[int, ...] | None:
        t = self.graph.tensors.get(name)
        if t is None or not t.is_static:
            return None
        return tuple(d for d in t.shape or () if isinstance(d, int))

    def planned_nbytes(self, name: str) -> int:
        """Bytes of ``name`` at the planned dims: what a size-based choice compares, so
        that a deployed split (fixed when planned) is the one priced at every size."""
        planned = self.sizing.tensors.get(name)  # the same model: the same names
        return (planned if planned is not None else self.graph.tensors[name]).nbytes

    def planned_numel(self, name: str) -> int | None:
        """Elements of ``name`` at the planned dims (None when not static there)."""
        t = self.sizing.tensors.get(name)
        if t is None or not t.is_static:
            return None
        return math.prod(d for d in t.shape or () if isinstance(d, int))

    def layout(self, name: str) -> Layout:
        """The layout a consumer reads ``name`` in now (a source not yet locked: whole)."""
        if name in self._seen:
            return self._seen[name]
        return self.sources.get(name, REPLICATED)

    def all_whole(self, names: tuple[str, ...] | list[str]) -> bool:
        return all(self.layout(n).is_whole for n in names if n)

    def is_source(self, name: str) -> bool:
        t = self.graph.tensors.get(name)
        return t is not None and t.kind != "activation"

    def can_split_source(self, name: str, axis: int) -> bool:
        """Whether the parameter or KV-cache input ``name`` can be read split on ``axis``."""
        t = self.graph.tensors.get(name)
        if t is None or t.kind == "activation":
            return False
        locked = self.sources.get(name)
        if locked is not None:
            return locked.axis == axis
        if name in self.constraints.whole_sources or t.is_graph_output:
            return False
        if t.kind == "input" and not t.is_kv_cache:
            return False  # other graph inputs are fed whole to every rank
        shape = self.shape(name)
        return shape is not None and 0 <= axis < len(shape) and self.divides(shape[axis])

    def divides(self, dim: int) -> bool:
        # degree 1 splits nothing: one chunk is the whole tensor
        return self.degree > 1 and dim >= self.degree and dim % self.degree == 0

    def column_split_allowed(self, node: Node) -> bool:
        return node.index not in self.constraints.no_column_split

    def runs_whole(self, node: Node) -> bool:
        return node.index in self.constraints.replicated_nodes

    # ---- recording a decision -------------------------------------------

    def apply(self, node: Node, decision: Decision) -> None:
        for name in decision.gathers:
            self._gather_for(name, node)
        inputs = [n for n in node.present_inputs if n in self.graph.tensors]
        split_inputs = [n for n in inputs if self.layout(n).is_split]
        origins = frozenset().union(*(self._origins.get(n, frozenset()) for n in split_inputs))
        for name, axis in decision.split_sources.items():
            self.sources.setdefault(name, Layout(axis))
            self._origins[name] = origins
        for name in inputs:
            if self.is_source(name) and name not in self.sources:
                self.sources[name] = REPLICATED
        if decision.ends_split:
            self._useful_origins |= origins
        if decision.column_split:
            origins |= {node.index}
        if decision.shape_values:
            self.shape_values[node.index] = dict(decision.shape_values)
        for name, layout in zip(node.present_outputs, decision.outputs, strict=True):
            self._produce(node, name, layout, origins)

    def _produce(self, node: Node, name: str, layout: Layout, origins: frozenset[int]) -> None:
        self.produced[name] = layout
        self._seen[name] = layout
        if layout.is_whole:
            return
        self.sharded.add(node.index)
        t = self.graph.tensors[name]
        if layout.partial:
            self._collect(ALL_REDUCE, name, None, node)
            return
        self._origins[name] = origins
        if name in self.constraints.gather_at_producer:
            # a reader needs it whole (a KV-cache output then ends whole too)
            self._gathered_origins |= origins
            self._collect(ALL_GATHER, name, layout.axis, node)
        elif t.is_graph_output and t.is_kv_cache_output:
            self._useful_origins |= origins  # each rank keeps its heads' cache
        elif t.is_graph_output:
            self._useful_origins |= origins  # gathered once, at the end (the logits)
            self._collect(ALL_GATHER, name, layout.axis, node)

    def _collect(self, kind: str, name: str, axis: int | None, node: Node) -> None:
        t = self.graph.tensors[name]
        nbytes = t.nbytes if t.is_static else 0
        self.collectives.append(CollectiveOp(kind, name, axis, nbytes, node.index))
        self._seen[name] = REPLICATED

    def _gather_for(self, name: str, consumer: Node) -> None:
        """``consumer`` needs ``name`` whole: gather it after its producer, if that is sound."""
        layout = self.layout(name)
        if not layout.is_split:
            return
        if self.is_source(name):
            # no node produces it at run time: keep it whole from the start next time
            self._demand(Constraints(whole_sources=frozenset({name})))
            return
        self._gathered_origins |= self._origins.get(name, frozenset())
        producer = self.graph.tensors[name].producer
        assert producer is not None
        if self._first_reader(name) == consumer.index:
            self._collect(ALL_GATHER, name, layout.axis, self.graph.nodes[producer])
        else:
            self._demand(Constraints(gather_at_producer=frozenset({name})))

    def _first_reader(self, name: str) -> int:
        readers = [c for c in self.graph.tensors[name].consumers if c in self._position]
        return min(readers, key=self._position.__getitem__)

    def _demand(self, more: Constraints) -> None:
        self._demands = self._demands.merged(more)

    # ---- what the next pass must change ----------------------------------

    def demands(self) -> Constraints:
        """Constraints without which this pass's plan is unsound (empty: it is sound)."""
        return replace(
            self._demands,
            replicated_nodes=self._demands.replicated_nodes | self._shape_conflicts(),
        )

    def _shape_conflicts(self) -> frozenset[int]:
        """Nodes rewriting a shape input that another runtime reader needs otherwise."""
        rewritten = {s for values in self.shape_values.values() for s in values}
        conflicting: set[int] = set()
        for s in rewritten:
            readers = [c for c in self.graph.tensors[s].consumers if c in self._position]
            wanted = {self.shape_values.get(c, {}).get(s) for c in readers}
            if len(wanted) > 1:
                conflicting.update(c for c in readers if s in self.shape_values.get(c, {}))
        return frozenset(conflicting)

    def useless_column_splits(self) -> frozenset[int]:
        """Column splits whose split was gathered before any row split or kept output used it.

        Such a split saves a little compute but pays an all-gather where running the
        MatMul whole pays nothing (Q/K/V when n does not divide the heads, an output
        projection feeding the replicated residual stream, GPT-2's fused QKV).
        """
        return frozenset(self._gathered_origins - self._useful_origins)
