"""The reference `verify` compares against: onnxruntime on the whole model.

onnxruntime's CPU provider has no bfloat16 kernels, so a bfloat16 model cannot
run as it is. It runs instead as a float32 copy: every bfloat16 tensor type,
initializer, constant and cast target becomes float32, and bfloat16 inputs are
widened. The copy computes in higher precision than the model, so the
comparison uses bfloat16 tolerances, and the report says which reference ran.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from targets.errors import PartitionError

__all__ = ["OnnxRuntimeError", "Reference", "run_reference", "float32_copy", "uses_bfloat16"]

BF16 = TensorProto.BFLOAT16
_DTYPE_ATTRIBUTES = {("Cast", "to"), ("EyeLike", "dtype"), ("RandomNormal", "dtype")}
_DTYPE_ATTRIBUTES |= {("RandomUniform", "dtype"), ("RandomNormalLike", "dtype")}
_DTYPE_ATTRIBUTES |= {("RandomUniformLike", "dtype"), ("Multinomial", "dtype")}


class OnnxRuntimeError(PartitionError):
    """onnxruntime cannot load or run the model on this machine."""


@dataclass(frozen=True)
class Reference:
    """onnxruntime's outputs, and which model produced them."""

    outputs: Mapping[str, np.ndarray]
    float32_copy: bool


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _graphs(sub)


def _value_infos(graph: onnx.GraphProto) -> Iterator[onnx.ValueInfoProto]:
    yield from graph.input
    yield from graph.output
    yield from graph.value_info


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t


def uses_bfloat16(model: onnx.ModelProto) -> bool:
    """Whether any tensor, value or cast of the model is bfloat16."""
    for graph in _graphs(model.graph):
        if any(vi.type.tensor_type.elem_type == BF16 for vi in _value_infos(graph)):
            return True
        if any(t.data_type == BF16 for t in _tensors(graph)):
            return True
        for node in graph.node:
            for attr in node.attribute:
                if (node.op_type, attr.name) in _DTYPE_ATTRIBUTES and attr.i == BF16:
                    return True
    return False


def _widen(tensor: onnx.TensorProto) -> None:
    if tensor.data_type != BF16:
        return
    value = numpy_helper.to_array(tensor).astype(np.float32)
    tensor.CopyFrom(numpy_helper.from_array(value, tensor.name))


def float32_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (with its weights loaded) with every bfloat16 turned into float32."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for graph in _graphs(copy.graph):
        for vi in _value_infos(graph):
            if vi.type.tensor_type.elem_type == BF16:
                vi.type.tensor_type.elem_type = TensorProto.FLOAT
        for tensor in _tensors(graph):
            _widen(tensor)
        for node in graph.node:
            for attr in node.attribute:
                if (node.op_type, attr.name) in _DTYPE_ATTRIBUTES and attr.i == BF16:
                    attr.i = TensorProto.FLOAT
    return copy


def _session_model(
    path: Path, extra_outputs: list[tuple[str, onnx.TypeProto]]
) -> tuple[onnx.ModelProto | str, bool]:
    """The model onnxruntime runs: the file itself, or a rewritten copy in memory."""
    header = onnx.load(str(path), load_external_data=False)
    widen = uses_bfloat16(header)
    if not extra_outputs and not widen:
        return str(path), False
    model = onnx.load(str(path))  # with external data (onnx keeps it in the folder)
    declared = {o.name for o in model.graph.output}
    for name, type_proto in extra_outputs:
        if name not in declared:
            model.graph.output.append(onnx.helper.make_value_info(name, type_proto))
    return (float32_copy(model) if widen else model), widen


_FLOAT8 = {"tensor(float8e4m3fn)", "tensor(float8e4m3fnuz)", "tensor(float8e5m2)",
           "tensor(float8e5m2fnuz)"}  # fmt: skip


def ort_value(value: Any) -> Any:
    """An onnxruntime OrtValue of an array; float8, which onnxruntime's numpy binding
    does not take, goes in as its bits (uint8) with its ONNX type."""
    import onnxruntime as ort

    array = np.ascontiguousarray(value)
    if array.dtype.name.startswith("float8"):
        elem = onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(array.view(np.uint8), elem)
    return ort.OrtValue.ortvalue_from_numpy(array)


def session_run(session: Any, names: list[str], feeds: Mapping[str, Any]) -> list[Any]:
    """``session.run``; with float8 inputs or outputs through OrtValues (`ort_value`)."""
    types = [o.type for o in session.get_outputs()] + [i.type for i in session.get_inputs()]
    if not _FLOAT8 & set(types):
        return session.run(names, dict(feeds))
    values = {name: ort_value(value) for name, value in feeds.items()}
    out = session.run_with_ort_values(names, values)
    kinds = {o.name: o.type for o in session.get_outputs()}
    return [_from_ort(v, kinds[n]) for n, v in zip(names, out, strict=True)]


def _from_ort(value: Any, kind: str) -> np.ndarray:
    array = value.numpy()
    if kind not in _FLOAT8:
        return array
    elem = getattr(TensorProto, kind[len("tensor(") : -1].upper())
    return array.view(onnx.helper.tensor_dtype_to_np_dtype(elem))


def run_reference(
    path: Path,
    feeds: Mapping[str, Any],
    extra_outputs: list[tuple[str, onnx.TypeProto]] | None = None,
) -> Reference:
    """Run the model file at ``path`` in onnxruntime (as float32 if it uses bfloat16).

    Raises:
        OnnxRuntimeError: onnxruntime cannot load or run it (first line of its message).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    # fatal only: its errors reach the user as our one line, not also as its log
    options.log_severity_level = 4
    try:
        model, widened = _session_model(path, extra_outputs or [])
        if widened:
            feeds = {
                k: (
                    np.asarray(v).astype(np.float32)
                    if np.asarray(v).dtype.name == "bfloat16"
                    else v
                )
                for k, v in feeds.items()
            }
        source = model if isinstance(model, str) else model.SerializeToString()
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        values = session_run(session, names, feeds)
    except Exception as err:  # onnxruntime raises its own exception types for unsupported models
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise OnnxRuntimeError(
            f"onnxruntime cannot run this model to compare against: {first[:300]}"
        ) from err
    return Reference(dict(zip(names, values, strict=True)), widened)
