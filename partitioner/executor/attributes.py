"""Decode node attributes into Python/NumPy values, filling in the schema defaults.

Kernels receive attributes keyword-only, spelled the ONNX way. The runtime hands
them every attribute the op's schema (at the model's opset) declares a default
for, so a kernel sees ONNX defaults even when the exporter left them out.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, helper, numpy_helper

__all__ = ["decode_attribute", "schema_defaults", "node_attributes"]


def decode_attribute(attr: AttributeProto) -> Any:
    """One attribute as a kernel sees it.

    Ints/floats stay Python scalars; lists become tuples; strings are ``str``;
    tensors become NumPy arrays (ml_dtypes for bfloat16/float8/int4); graphs
    stay ``onnx.GraphProto`` for context kernels to run.
    """
    kind = attr.type
    if kind == AttributeProto.TENSOR:
        return numpy_helper.to_array(attr.t)
    if kind == AttributeProto.TENSORS:
        return tuple(numpy_helper.to_array(t) for t in attr.tensors)
    if kind == AttributeProto.SPARSE_TENSOR:
        return _sparse_to_dense(attr.sparse_tensor)
    value = helper.get_attribute_value(attr)
    if kind == AttributeProto.STRING:
        return value.decode("utf-8")
    if kind == AttributeProto.STRINGS:
        return tuple(v.decode("utf-8") for v in value)
    if kind in (AttributeProto.INTS, AttributeProto.FLOATS, AttributeProto.GRAPHS):
        return tuple(value)
    return value


def _sparse_to_dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices)
    dense = np.zeros(tuple(sparse.dims), dtype=values.dtype)
    if indices.ndim == 1:  # linearised positions
        dense.reshape(-1)[indices] = values
    else:  # one row of coordinates per value
        dense[tuple(indices.T)] = values
    return dense


@functools.lru_cache(maxsize=4096)
def schema_defaults(op_type: str, domain: str, opset: int) -> Mapping[str, Any]:
    """Attribute name -> decoded default, from the schema serving ``opset``.

    Ops without a registered schema (custom domains) have no defaults.
    """
    try:
        schema = onnx.defs.get_schema(op_type, opset, "" if domain == "ai.onnx" else domain)
    except onnx.defs.SchemaError:
        return {}
    return {
        name: decode_attribute(spec.default_value)
        for name, spec in schema.attributes.items()
        if spec.default_value.type != AttributeProto.UNDEFINED
    }


def node_attributes(node: onnx.NodeProto, opset: int) -> dict[str, Any]:
    """The node's attributes, decoded, on top of its schema's defaults."""
    attrs = dict(schema_defaults(node.op_type, node.domain, opset))
    for attr in node.attribute:
        attrs[attr.name] = decode_attribute(attr)
    return attrs
