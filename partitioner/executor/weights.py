"""Weights on demand: the executor reads a parameter only when a node needs it.

Planning never holds weights (`passes.load` drops large inline ones after
parsing and never reads external files). To execute, a `WeightStore` fetches:

- external data by memory-mapping its file at the recorded offset, so a
  tensor costs no RAM until its pages are touched;
- large inline weights by parsing the model file once more (they live inside it);
- small inline constants straight from the graph.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from partitioner.executor.errors import ExecutorError
from passes.dtypes import dtype_bits, numpy_dtype
from passes.ir import INLINE_MARKER, Graph
from passes.load import require_external_data

__all__ = ["WeightStore"]


class WeightStore:
    """Initializer values of ``graph``, read lazily and cached."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._protos = {t.name: t for t in graph.model.graph.initializer}
        self._cache: dict[str, np.ndarray] = {}
        self._inline: dict[str, onnx.TensorProto] | None = None
        self._checked_external = False

    def names(self) -> set[str]:
        return set(self._protos)

    def __contains__(self, name: str) -> bool:
        return name in self._protos

    def get(self, name: str) -> np.ndarray:
        """The value of initializer ``name`` (read-only)."""
        if name not in self._cache:
            proto = self._protos[name]
            if proto.data_location != onnx.TensorProto.EXTERNAL:
                array = numpy_helper.to_array(proto)
            elif any(e.key == INLINE_MARKER for e in proto.external_data):
                array = numpy_helper.to_array(self._inline_proto(name))
            else:
                array = self._memmap(proto)
            array.flags.writeable = False
            self._cache[name] = array
        return self._cache[name]

    def _inline_proto(self, name: str) -> onnx.TensorProto:
        if self._inline is None:
            if self.graph.path is None:
                raise ExecutorError(
                    "the model's weights were dropped and it has no file to read them from"
                )
            full = onnx.load(str(self.graph.path), load_external_data=False)
            self._inline = {t.name: t for t in full.graph.initializer}
        return self._inline[name]

    def _memmap(self, proto: onnx.TensorProto) -> np.ndarray:
        if not self._checked_external:
            require_external_data(self.graph)  # one clear error if a file is missing
            self._checked_external = True
        info = {e.key: e.value for e in proto.external_data}
        base = self.graph.path.parent if self.graph.path else Path.cwd()
        dtype = numpy_dtype(proto.data_type)
        shape = tuple(int(d) for d in proto.dims)
        offset = int(info.get("offset", 0))
        count = math.prod(shape)
        if count == 0:
            return np.zeros(shape, dtype)
        path = base / info["location"]
        if dtype_bits(proto.data_type) % 8:
            # Packed sub-byte types: let onnx unpack the raw bytes.
            nbytes = math.ceil(count * dtype_bits(proto.data_type) / 8)
            with open(path, "rb") as f:
                f.seek(offset)
                raw = onnx.TensorProto()
                raw.CopyFrom(proto)
                raw.ClearField("external_data")
                raw.data_location = onnx.TensorProto.DEFAULT
                raw.raw_data = f.read(nbytes)
            return numpy_helper.to_array(raw)
        data = np.memmap(
            path, dtype=np.uint8, mode="r", offset=offset, shape=(count * dtype.itemsize,)
        )
        return data.view(dtype).reshape(shape)

    def as_dict(self, names: Any) -> dict[str, np.ndarray]:
        return {n: self.get(n) for n in names}
