"""The graph IR: one ONNX model's top-level graph as frozen, indexed data.

A `Graph` keeps every node of ``model.graph.node`` at its **original index**,
because plans refer to nodes by that index. Transform passes never reorder or
delete nodes: folding only marks nodes as ``folded`` (computed once at load
time, their outputs become constants) and shape resolution only fills shapes.

Tensor kinds:

- ``input``: a runtime graph input (not backed by an initializer);
- ``initializer``: a weight or constant stored in the file (maybe as external data);
- ``constant``: produced by a folded node (a weight computed from constants,
  or shape arithmetic); it counts as a parameter where a runtime node uses it;
- ``activation``: produced by a runtime node.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import networkx as nx
import onnx

from passes.dtypes import FLOAT_DTYPES, dtype_bits, dtype_name
from passes.subgraphs import node_subgraphs, outer_references

__all__ = [
    "Dim",
    "Tensor",
    "Node",
    "Graph",
    "TensorKind",
    "build_graph",
    "KV_CACHE_PATTERN",
    "KV_CACHE_OUTPUT_PATTERN",
    "INLINE_MARKER",
    "outer_references",
]

Dim = int | str | None
"""A dimension: a concrete size, a symbolic name, or None when nothing is known."""

TensorKind = Literal["input", "initializer", "constant", "activation"]

# Marks an inline weight whose data passes.load dropped after parsing.
INLINE_MARKER = "partition.inline_data"

# Decode-step graphs take the KV cache as inputs named past_key_values.*,
# past.N.key, cache_*, ... The cache is resident on the stage that consumes it.
KV_CACHE_PATTERN = re.compile(r"past|cache|kv_", re.IGNORECASE)
# ... and return the updated cache as outputs named present.*, present_key_values.*, ...
KV_CACHE_OUTPUT_PATTERN = re.compile(r"present|past|cache|kv_", re.IGNORECASE)


@dataclass(frozen=True)
class Tensor:
    """One value of the graph with its type and, once resolved, static shape."""

    name: str
    elem_type: int
    shape: tuple[Dim, ...] | None
    kind: TensorKind
    producer: int | None = None
    consumers: tuple[int, ...] = ()
    is_graph_output: bool = False
    external: bool = False
    stored_elem_type: int = 0
    """A constant dequantised from a narrower stored form (a folded DequantizeLinear of
    a float8 or integer weight): runtimes keep the stored form resident and dequantise
    as they read it (onnxruntime leaves weight DequantizeLinear unfolded; TensorRT and
    vLLM run FP8 GEMMs on it), so its bytes are the stored type's. 0: stored as typed."""

    @property
    def dtype(self) -> str:
        """Numpy-style dtype name ("float32", "bfloat16", ...); "" if unknown."""
        return dtype_name(self.elem_type)

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    @property
    def numel(self) -> int:
        if not self.is_static:
            raise ValueError(f"tensor {self.name!r} has no static shape: {self.shape}")
        return math.prod(self.shape)  # type: ignore[arg-type]

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor (packed sub-byte types round up)."""
        bits = dtype_bits(self.stored_elem_type or self.elem_type)
        return -(-self.numel * bits // 8)  # exact for huge shapes

    @property
    def is_param(self) -> bool:
        """Resident data: an initializer or a folded constant."""
        return self.kind in ("initializer", "constant")

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def is_kv_cache(self) -> bool:
        """A graph input that holds a KV cache (by name), resident on its consumer."""
        return self.kind == "input" and bool(KV_CACHE_PATTERN.search(self.name))

    @property
    def is_kv_cache_output(self) -> bool:
        """A graph output that returns the updated KV cache: it stays on its stage."""
        return self.is_graph_output and bool(KV_CACHE_OUTPUT_PATTERN.search(self.name))


@dataclass(frozen=True)
class Node:
    """One ONNX node with its original index in ``graph.node``."""

    index: int
    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: Mapping[str, Any]
    folded: bool = False
    implicit_inputs: tuple[str, ...] = ()

    @property
    def present_inputs(self) -> tuple[str, ...]:
        """Every value the node reads: its given inputs (ONNX marks an omitted optional
        input by "") and the outer-scope values its sub-graphs use (If/Loop/Scan bodies
        read them without listing them as inputs)."""
        given = tuple(i for i in self.inputs if i)
        return given + tuple(i for i in self.implicit_inputs if i not in given)

    @property
    def present_outputs(self) -> tuple[str, ...]:
        return tuple(o for o in self.outputs if o)


@dataclass(frozen=True)
class Graph:
    """A model's top-level graph: nodes by original index and tensors by name.

    Attributes:
        model: the ModelProto (weights stored externally are never loaded).
        path: the file the model came from, if any.
        sha256: sha256 of the .onnx file's bytes, if read from a file.
        nodes: every node, ``nodes[i].index == i``.
        tensors: every named value (inputs, initializers, node outputs).
        inputs: runtime graph inputs, in declaration order.
        outputs: graph outputs, in declaration order.
        opset: opset version of the default ONNX domain.
        dims: symbolic dims fixed by overrides, name -> value.
    """

    model: onnx.ModelProto = field(repr=False)
    path: Path | None
    sha256: str | None
    nodes: tuple[Node, ...]
    tensors: Mapping[str, Tensor] = field(repr=False)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    opset: int
    dims: Mapping[str, int] = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def iter_tensors(self) -> Iterator[Tensor]:
        return iter(self.tensors.values())

    def unresolved_dims(self) -> list[str]:
        """Names of symbolic dims (or '?' markers) left on any tensor, sorted."""
        names: set[str] = set()
        for t in self.tensors.values():
            if t.shape is None:
                continue
            for d in t.shape:
                if isinstance(d, str):
                    names.add(d)
        return sorted(names)

    def tensors_without_static_shape(self) -> list[str]:
        return [t.name for t in self.tensors.values() if not t.is_static]

    def is_static(self) -> bool:
        return all(t.is_static for t in self.tensors.values())

    def to_networkx(self) -> nx.DiGraph:
        """Node-index DiGraph; each edge carries ``tensors`` (names) it stands for."""
        g = nx.DiGraph()
        g.add_nodes_from(n.index for n in self.nodes)
        for t in self.tensors.values():
            if t.producer is None:
                continue
            for c in t.consumers:
                if c == t.producer:
                    continue
                if g.has_edge(t.producer, c):
                    g.edges[t.producer, c]["tensors"].append(t.name)
                else:
                    g.add_edge(t.producer, c, tensors=[t.name])
        return g

    def topological_order(self) -> tuple[int, ...]:
        """The original node order when it is topological (ONNX requires it), else a stable sort."""
        for n in self.nodes:
            for t in n.present_inputs:
                p = self.tensors[t].producer if t in self.tensors else None
                if p is not None and p >= n.index:
                    return tuple(nx.lexicographical_topological_sort(self.to_networkx()))
        return tuple(n.index for n in self.nodes)

    def replace(self, **changes: Any) -> Graph:
        return dataclasses.replace(self, **changes)


def _attribute_value(attr: onnx.AttributeProto) -> Any:
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", errors="replace") for v in value]
    return value


def _display_names(nodes: Sequence[onnx.NodeProto]) -> list[str]:
    """Stable, unique display names: the node's own name, else ``op_type_index``."""
    seen: dict[str, int] = {}
    for n in nodes:
        if n.name:
            seen[n.name] = seen.get(n.name, 0) + 1
    names = []
    for i, n in enumerate(nodes):
        if not n.name:
            names.append(f"{n.op_type}_{i}")
        elif seen[n.name] > 1:
            names.append(f"{n.name}#{i}")
        else:
            names.append(n.name)
    return names


def _shape_of(type_proto: onnx.TypeProto) -> tuple[int, tuple[Dim, ...] | None]:
    if not type_proto.HasField("tensor_type"):
        return 0, None
    tt = type_proto.tensor_type
    if not tt.HasField("shape"):
        return tt.elem_type, None
    dims: list[Dim] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value >= 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tt.elem_type, tuple(dims)


def _stored_form(tensors: dict[str, dict[str, Any]], node: onnx.NodeProto, folded: bool) -> None:
    """A folded DequantizeLinear's output keeps its narrower source's stored type."""
    if not folded or node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx"):
        return
    source = tensors.get(node.input[0])
    out = tensors.get(node.output[0])
    if source is None or out is None or not source["elem_type"] or not out["elem_type"]:
        return
    stored = source.get("stored_elem_type") or source["elem_type"]
    if dtype_bits(stored) < dtype_bits(out["elem_type"]):
        out["stored_elem_type"] = stored


def build_graph(
    model: onnx.ModelProto,
    *,
    path: Path | None = None,
    sha256: str | None = None,
    folded: frozenset[int] = frozenset(),
    dims: Mapping[str, int] | None = None,
) -> Graph:
    """Build the IR from a ModelProto whose value_info carries the known shapes.

    Args:
        model: the model (weights need not be loaded).
        path, sha256: where it was read from, and the sha256 of the file bytes.
        folded: indices of nodes computed at load time (their outputs are constants).
        dims: the symbolic-dim overrides already applied to ``model``.
    """
    g = model.graph
    types_by_name: dict[str, tuple[int, tuple[Dim, ...] | None]] = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        elem, shape = _shape_of(vi.type)
        old = types_by_name.get(vi.name)
        # Prefer the entry that knows more (graph inputs beat stale value_info).
        if old is None or (old[1] is None and shape is not None) or elem and not old[0]:
            types_by_name[vi.name] = (elem or (old[0] if old else 0), shape)

    initializer_names = {init.name for init in g.initializer}
    tensors: dict[str, dict[str, Any]] = {}
    for init in g.initializer:
        # Weights dropped after parsing (passes.load) live in the model file itself.
        inline = any(e.key == INLINE_MARKER for e in init.external_data)
        external = init.data_location == onnx.TensorProto.EXTERNAL and not inline
        tensors[init.name] = dict(
            name=init.name,
            elem_type=init.data_type,
            shape=tuple(int(d) for d in init.dims),
            kind="initializer",
            external=external,
        )
    runtime_inputs = []
    for vi in g.input:
        if vi.name in initializer_names:
            continue
        elem, shape = types_by_name[vi.name]
        tensors[vi.name] = dict(name=vi.name, elem_type=elem, shape=shape, kind="input")
        runtime_inputs.append(vi.name)

    display = _display_names(g.node)
    nodes = []
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(g.node):
        implicit: dict[str, None] = {}
        for sub in node_subgraphs(n):
            implicit.update(dict.fromkeys(outer_references(sub)))
        nodes.append(
            Node(
                index=i,
                name=display[i],
                op_type=n.op_type,
                domain=n.domain if n.domain != "ai.onnx" else "",
                inputs=tuple(n.input),
                outputs=tuple(n.output),
                attributes=types.MappingProxyType(
                    {a.name: _attribute_value(a) for a in n.attribute}
                ),
                folded=i in folded,
                implicit_inputs=tuple(name for name in implicit if name not in n.input),
            )
        )
        for name in nodes[-1].present_inputs:
            if name:
                lst = consumers.setdefault(name, [])
                if not lst or lst[-1] != i:
                    lst.append(i)
        for name in n.output:
            if not name:
                continue
            elem, shape = types_by_name.get(name, (0, None))
            tensors[name] = dict(
                name=name,
                elem_type=elem,
                shape=shape,
                kind="constant" if i in folded else "activation",
                producer=i,
            )
        _stored_form(tensors, n, folded=i in folded)
    output_names = tuple(o.name for o in g.output)
    for name in output_names:
        if name in tensors:
            tensors[name]["is_graph_output"] = True
    frozen = {
        name: Tensor(consumers=tuple(consumers.get(name, ())), **fields)
        for name, fields in tensors.items()
    }
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return Graph(
        model=model,
        path=path,
        sha256=sha256,
        nodes=tuple(nodes),
        tensors=types.MappingProxyType(frozen),
        inputs=tuple(runtime_inputs),
        outputs=output_names,
        opset=opset,
        dims=types.MappingProxyType(dict(dims or {})),
    )
