"""Build one-node ONNX models in memory and run them with our executor and onnxruntime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from partitioner.executor.runtime import run_model

__all__ = ["single_node_model", "run_ours", "run_ort", "assert_matches_ort"]


def single_node_model(
    op_type: str,
    inputs: Mapping[str, np.ndarray | None],
    outputs: Sequence[str],
    *,
    opset: int = 18,
    initializers: Mapping[str, np.ndarray] | None = None,
    **attrs: Any,
) -> onnx.ModelProto:
    """A model with one node; ``None`` inputs become empty (omitted optional) names.

    ``initializers`` become constant inputs (ORT needs some inputs, like axes, constant).
    """
    initializers = dict(initializers or {})
    node_inputs = [("" if value is None else name) for name, value in inputs.items()]
    node_inputs += list(initializers)
    graph_inputs = [
        helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)
        )
        for name, value in inputs.items()
        if value is not None
    ]
    graph = helper.make_graph(
        [helper.make_node(op_type, node_inputs, list(outputs), **attrs)],
        f"single_{op_type}",
        graph_inputs,
        [helper.make_value_info(name, onnx.TypeProto()) for name in outputs],
        initializer=[
            onnx.numpy_helper.from_array(v, name)
            for v, name in ((v, n) for n, v in initializers.items())
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def _feeds(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray | None]) -> dict[str, Any]:
    names = {v.name for v in model.graph.input}
    return {k: v for k, v in inputs.items() if v is not None and k in names}


def run_ours(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray | None]) -> list[Any]:
    return list(run_model(model, _feeds(model, inputs)).values())


def run_ort(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray | None]) -> list[Any]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, _feeds(model, inputs))


def assert_matches_ort(
    model: onnx.ModelProto,
    inputs: Mapping[str, np.ndarray | None],
    *,
    rtol: float = 1e-6,
    atol: float = 1e-7,
) -> list[Any]:
    """Our outputs equal onnxruntime's: same dtype, shape and values (NaNs equal)."""
    ours = run_ours(model, inputs)
    theirs = run_ort(model, inputs)
    assert len(ours) == len(theirs)
    for mine, ref in zip(ours, theirs, strict=True):
        assert mine.dtype == ref.dtype, (mine.dtype, ref.dtype)
        assert mine.shape == ref.shape, (mine.shape, ref.shape)
        np.testing.assert_allclose(mine, ref, rtol=rtol, atol=atol)
    return ours
