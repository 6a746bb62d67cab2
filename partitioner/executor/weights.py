"""Weights on demand: the executor reads a parameter only when a node needs it.

Planning never holds weights (`passes.load` drops large inline ones after
parsing and never reads external files). To execute, a `WeightStore` fetches:

- external data by memory-mapping its file at the recorded offset, so a
  tensor costs no RAM until its pages are touched; the location, offset and
  length are checked first by `passes.load.external_data_ref` (reads stay in
  the model's folder, no FIFOs, no reads past the end);
- large inline weights by parsing the model file once more (they live inside it);
- small inline constants straight from the graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from partitioner.executor.errors import ExecutorError
from passes.dtypes import dtype_bits, numpy_dtype
from passes.external import shown
from passes.ir import INLINE_MARKER, Graph
from passes.load import external_data_ref, require_external_data
from passes.model_checks import tensor_data_problem

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
                array = _to_array(proto)
            elif any(e.key == INLINE_MARKER for e in proto.external_data):
                array = _to_array(self._inline_proto(name))
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
            require_external_data(self.graph)  # one clear error for the first bad tensor
            self._checked_external = True
        ref = external_data_ref(self.graph, proto)  # refuses before anything is opened
        dtype = numpy_dtype(proto.data_type)
        shape = tuple(int(d) for d in proto.dims)
        if ref.length == 0:
            return np.zeros(shape, dtype)
        with ref.open() as f:
            if dtype_bits(proto.data_type) % 8:
                # Packed sub-byte types: let onnx unpack the raw bytes.
                f.seek(ref.offset)
                raw = onnx.TensorProto()
                raw.CopyFrom(proto)
                raw.ClearField("external_data")
                raw.data_location = onnx.TensorProto.DEFAULT
                raw.raw_data = f.read(ref.length)
                return numpy_helper.to_array(raw)
            # The map holds its own reference to the file, so closing ``f`` is fine.
            data = np.memmap(f, dtype=np.uint8, mode="r", offset=ref.offset, shape=(ref.length,))
        return data.view(dtype).reshape(shape)

    def as_dict(self, names: Any) -> dict[str, np.ndarray]:
        return {n: self.get(n) for n in names}


def _to_array(proto: onnx.TensorProto) -> np.ndarray:
    """The value of an inline tensor, once its data is known to fit its dims and type.

    passes.load sizes only small raw data (large weights are not read to plan), so
    the bytes of a large weight read back from the model file are sized here.
    """
    problem = tensor_data_problem(proto, f"initializer '{shown(proto.name)}'")
    if problem is not None:
        raise ExecutorError(f"{problem}; re-export the model")
    return numpy_helper.to_array(proto)
