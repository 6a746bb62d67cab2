"""What a parsed model must satisfy before any pass reads it, beyond onnx.checker.

onnx.checker accepts models that later break every command: names that are
not UTF-8, element types that are UNDEFINED or no ``TensorProto.DataType`` at
all, and initializers whose data does not match their dims and type. Each is
refused here with one line naming the tensor (or node) and what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import onnx
from onnx import TensorProto

from passes.dtypes import dtype_bits, dtype_name
from passes.errors import ModelError
from passes.external import shown
from passes.ir import Graph, node_subgraphs

__all__ = [
    "check_contents",
    "check_sizes",
    "KNOWN_ELEM_TYPES",
    "LOAD_RAW_CHECK_BYTES",
    "MAX_TENSOR_BYTES",
    "tensor_data_problem",
]

KNOWN_ELEM_TYPES = frozenset(onnx.helper.get_all_tensor_dtypes())
"""The TensorProto.DataType values the installed onnx maps to numpy (UNDEFINED excluded)."""

LOAD_RAW_CHECK_BYTES = 1 << 20
"""At load, raw data is sized only up to this many bytes: reading a protobuf bytes
field copies it (0.3 s for 256 MB), and planning never reads large values. Weights
that passes.load dropped after parsing, and these, are sized by the executor's
`WeightStore` when it reads them."""


def check_contents(model: onnx.ModelProto, path: Path) -> None:
    """Refuse names that are not UTF-8, unknown element types and short or long tensor data.

    Raises:
        ModelError: the first problem, naming the tensor or node.
    """
    _check_names(model, path)
    _check_element_types(model, path)
    for what, t in _stored_tensors(model.graph):
        problem = tensor_data_problem(t, what, raw_limit=LOAD_RAW_CHECK_BYTES)
        if problem is not None:
            raise ModelError(f"model '{path}': {problem}; re-export the model")


MAX_TENSOR_BYTES = 2**63 - 1
"""No tensor may need more bytes than int64 counts: sizes, FLOPs and times are turned
into floats and solver integers downstream, and a declared [2**62] * 20 overflows
them (far beyond any device, too: the planner names tensors that exceed one)."""


def check_sizes(graph: Graph) -> None:
    """Refuse a tensor whose static shape needs more than `MAX_TENSOR_BYTES`.

    Raises:
        ModelError: naming the first such tensor, its type and shape.
    """
    for t in graph.iter_tensors():
        # An unknown type (left by load(check=False)) has no size to check.
        if t.is_static and t.elem_type in KNOWN_ELEM_TYPES and t.nbytes > MAX_TENSOR_BYTES:
            shape = "×".join(str(d) for d in t.shape or ())
            where = f"model '{graph.path}'" if graph.path else "the model"
            raise ModelError(
                f"{where}: tensor '{shown(t.name)}' ({t.dtype or 'unknown type'} [{shown(shape)}]) "
                f"would take about 2**{t.nbytes.bit_length() - 1} bytes, more than int64 counts; "
                "check its declared shape (or the --dim values)"
            )


# --- names ---------------------------------------------------------------------------


def _node_strings(node: onnx.NodeProto) -> Iterator[tuple[str, str | bytes]]:
    yield "a node name", node.name
    yield f"the op type of node '{shown(node.name)}'", node.op_type
    yield f"the domain of node '{shown(node.name)}'", node.domain
    for name in (*node.input, *node.output):
        yield "a tensor name", name
    for attr in node.attribute:
        yield f"an attribute name of node '{shown(node.name)}'", attr.name
    for sub in node_subgraphs(node):
        yield from _graph_strings(sub)


def _graph_strings(graph: onnx.GraphProto) -> Iterator[tuple[str, str | bytes]]:
    yield "a graph name", graph.name
    for info in (*graph.input, *graph.output, *graph.value_info):
        yield "a tensor name", info.name
    for t in graph.initializer:
        yield "an initializer name", t.name
    for sparse in graph.sparse_initializer:
        yield "an initializer name", sparse.values.name
    for node in graph.node:
        yield from _node_strings(node)


def _model_strings(model: onnx.ModelProto) -> Iterator[tuple[str, str | bytes]]:
    for opset in model.opset_import:
        yield "an opset domain", opset.domain
    yield from _graph_strings(model.graph)
    for fn in model.functions:
        yield "a function name", fn.name
        yield "a function domain", fn.domain
        for name in (*fn.input, *fn.output):
            yield "a tensor name", name
        for node in fn.node:
            yield from _node_strings(node)


def _check_names(model: onnx.ModelProto, path: Path) -> None:
    """Every name is text. Python's protobuf hands back ``bytes`` for a string field
    that is not valid UTF-8 (the ONNX spec requires UTF-8).

    Such a model is refused rather than shown with replacement characters: names are
    identities, not labels. Tensor names wire nodes together and are written into
    plans, and onnxruntime (verify's reference) sees the raw bytes, so a replaced
    name could merge two distinct names or name a tensor no other tool can find.
    """
    for what, value in _model_strings(model):
        if isinstance(value, bytes):
            raise ModelError(
                f"model '{path}': {what} is not valid UTF-8 text ({shown(value)}); "
                "ONNX strings must be UTF-8: fix the exporter or rename it"
            )


# --- element types -------------------------------------------------------------------


def _type_problem(elem_type: int, *, undefined_ok: bool) -> str | None:
    if elem_type == TensorProto.UNDEFINED:
        return None if undefined_ok else "element type 0 (UNDEFINED)"
    if elem_type not in KNOWN_ELEM_TYPES:
        return (
            f"element type {elem_type}, which is no TensorProto.DataType "
            f"onnx {onnx.__version__} knows"
        )
    return None


def _value_types(graph: onnx.GraphProto, top: bool) -> Iterator[tuple[str, int, bool]]:
    """(what, elem type, UNDEFINED allowed) of every declared tensor value, sub-graphs included."""
    for kind, infos in (("graph input", graph.input), ("graph output", graph.output)):
        for info in infos:
            if info.type.HasField("tensor_type"):
                # Inference starts from the top graph's declared types: UNDEFINED there
                # leaves everything downstream untyped (and hung onnxruntime's inference).
                yield f"{kind} '{shown(info.name)}'", info.type.tensor_type.elem_type, not top
    for info in graph.value_info:
        if info.type.HasField("tensor_type"):
            yield f"value_info '{shown(info.name)}'", info.type.tensor_type.elem_type, True
    for node in graph.node:
        for sub in node_subgraphs(node):
            yield from _value_types(sub, top=False)


def _check_element_types(model: onnx.ModelProto, path: Path) -> None:
    declared = list(_value_types(model.graph, top=True))
    stored = [(what, t.data_type, False) for what, t in _stored_tensors(model.graph)]
    for what, elem_type, undefined_ok in declared + stored:
        problem = _type_problem(elem_type, undefined_ok=undefined_ok)
        if problem is not None:
            raise ModelError(
                f"model '{path}': {what} has {problem}; declare a valid element type "
                "(e.g. tensor(float)) for it in the model"
            )


def _stored_tensors(graph: onnx.GraphProto) -> Iterator[tuple[str, TensorProto]]:
    """Initializers and tensor attributes (Constant values), sub-graphs included."""
    for t in graph.initializer:
        yield f"initializer '{shown(t.name)}'", t
    for node in graph.node:
        for attr in node.attribute:
            for t in [attr.t] if attr.HasField("t") else attr.tensors:
                yield f"tensor attribute '{shown(attr.name)}' of node '{shown(node.name)}'", t
        for sub in node_subgraphs(node):
            yield from _stored_tensors(sub)


# --- initializer data ----------------------------------------------------------------


def _typed_count(elem_type: int, numel: int) -> int:
    """Entries the typed field (float_data, int32_data, ...) holds for ``numel`` elements."""
    if elem_type in (TensorProto.COMPLEX64, TensorProto.COMPLEX128):
        return 2 * numel  # real and imaginary parts
    if dtype_bits(elem_type) in (2, 4):
        return math.ceil(numel * dtype_bits(elem_type) / 8)  # one packed byte per entry
    return numel


def tensor_data_problem(t: TensorProto, what: str, *, raw_limit: int | None = None) -> str | None:
    """Why the stored data of ``t`` (``what``, e.g. "initializer 'w'") does not fit its
    dims and type; None when it does (or when its raw data would exceed ``raw_limit``
    bytes, which are then left unchecked).

    External data is sized by `passes.external.external_data_ref`; this covers data
    stored in the model file (raw bytes or a typed field), which numpy_helper.to_array
    would otherwise fail to reshape.
    """
    if t.HasField("segment"):
        return f"{what} is stored in segments, which are not supported"
    if any(d < 0 for d in t.dims):
        return f"{what} has a negative dim in {list(t.dims)}"
    if t.data_location == TensorProto.EXTERNAL or t.data_type not in KNOWN_ELEM_TYPES:
        return None
    numel = math.prod(t.dims)
    dims = f"dims {list(t.dims)} of {dtype_name(t.data_type)}"
    if t.HasField("raw_data") and t.data_type != TensorProto.STRING:
        want = -(-numel * dtype_bits(t.data_type) // 8)
        if raw_limit is not None and want > raw_limit:
            return None
        have = len(t.raw_data)
        if have != want:
            return f"{what} holds {have:,} bytes of raw data but its {dims} need {want:,}"
        return None
    field = onnx.helper.tensor_dtype_to_field(t.data_type)
    have, want = len(getattr(t, field)), _typed_count(t.data_type, numel)
    if have != want:
        return f"{what} holds {have:,} values in {field} but its {dims} need {want:,}"
    return None
