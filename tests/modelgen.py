"""Tiny ONNX graphs built in code for tests (no files committed, no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["make_model", "save", "vi", "init", "external_init"]


def vi(
    name: str, dims: Sequence[int | str | None], elem: int = TensorProto.FLOAT
) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, list(dims))


def init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def external_init(
    name: str,
    dims: Sequence[int],
    elem: int = TensorProto.FLOAT16,
    location: str = "weights.bin",
    offset: int = 0,
) -> onnx.TensorProto:
    """An initializer whose data is declared external and never written."""
    t = TensorProto()
    t.name = name
    t.data_type = elem
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    nbytes = int(np.prod(dims)) * np.dtype(helper.tensor_dtype_to_np_dtype(elem)).itemsize
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(nbytes))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
    opset: int = 18,
    extra_opsets: dict[str, int] | None = None,
) -> onnx.ModelProto:
    opsets = [helper.make_opsetid("", opset)]
    opsets += [helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
    graph = helper.make_graph(list(nodes), "test", list(inputs), list(outputs), list(initializers))
    return helper.make_model(graph, opset_imports=opsets)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def random_dag(draw_int, num_nodes: int, width: int = 8, batch: int = 2) -> onnx.ModelProto:
    """A random DAG of MatMul/Relu/Add nodes over [batch, width] activations.

    ``draw_int(lo, hi)`` supplies the randomness (a hypothesis ``draw`` wrapper or a
    seeded numpy generator), so the same helper serves property tests and fixtures.
    """
    tensors = ["x"]
    nodes, inits = [], []
    for i in range(num_nodes):
        kind = draw_int(0, 2)
        a = tensors[draw_int(0, len(tensors) - 1)]
        out = f"t{i}"
        if kind == 0:
            w = f"w{i}"
            inits.append(init(w, np.full((width, width), 0.01 * (i + 1), np.float32)))
            nodes.append(helper.make_node("MatMul", [a, w], [out], name=f"mm{i}"))
        elif kind == 1:
            nodes.append(helper.make_node("Relu", [a], [out], name=f"relu{i}"))
        else:
            b = tensors[draw_int(0, len(tensors) - 1)]
            nodes.append(helper.make_node("Add", [a, b], [out], name=f"add{i}"))
        tensors.append(out)
    consumed = {i for n in nodes for i in n.input}
    outputs = [t for t in tensors[1:] if t not in consumed] or [tensors[-1]]
    return make_model(
        nodes,
        [vi("x", [batch, width])],
        [vi(t, [batch, width]) for t in outputs],
        inits,
    )
