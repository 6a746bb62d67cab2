"""Each stage's weights in its own external data file, streamed tensor by tensor.

A stage's initializers come in three kinds: inline values (small ones stay in
the .onnx file), references to the source model's external data (copied in
chunks from the source file, through `passes.external.ExternalDataRef.open`,
so reads stay inside the model's folder), and values the weight store reads
(large inline weights dropped at load time, tensor-parallel chunks). Only one
tensor is ever held at a time, so a 140 GB model is never loaded whole.

A weightless model (its external data files are missing) still gets stage
graphs: the references are written with the offsets the data would have, and
no data file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from partitioner.executor.graph_run import constant_values
from partitioner.executor.weights import WeightStore
from partitioner.export.stages import StageModel
from passes.ir import INLINE_MARKER, Graph
from passes.load import external_data_ref
from passes.transforms.rank_params import chunk, declared_split

__all__ = ["StageFiles", "stage_files", "pointed", "INLINE_LIMIT_BYTES"]

# onnx.save's own default: smaller tensors stay inside the .onnx file.
INLINE_LIMIT_BYTES = 1024
_ALIGN_BYTES = 64  # aligned offsets let a runtime memory-map each tensor
_COPY_CHUNK_BYTES = 16 * 1024 * 1024

Piece = Callable[[], Iterator[bytes]]


@dataclass(frozen=True)
class StageFiles:
    """A stage's .onnx bytes and how to write its data file (None: no external data)."""

    onnx_bytes: bytes
    data_name: str | None
    write_data: Callable[[BinaryIO], None] | None


def _entries(t: TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in t.external_data}


def _copy(graph: Graph, t: TensorProto) -> Piece:
    def pieces() -> Iterator[bytes]:
        # checked only when written: a weightless export never opens the file
        ref = external_data_ref(graph, t)
        with ref.open() as f:
            f.seek(ref.offset)
            left = ref.length
            while left > 0:
                block = f.read(min(left, _COPY_CHUNK_BYTES))
                if not block:
                    raise OSError(f"external data of {ref.tensor!r} ends early")
                left -= len(block)
                yield block

    return pieces


def _array_piece(read: Callable[[], np.ndarray]) -> Piece:
    def pieces() -> Iterator[bytes]:
        yield np.ascontiguousarray(read()).tobytes()  # little-endian, as raw_data is

    return pieces


def _piece(
    graph: Graph, store: WeightStore, folded: Callable[[], Mapping[str, Any]], t: TensorProto
) -> tuple[Piece, int]:
    """Where a tensor's bytes come from, and how many there are.

    A rank's parameter is an initializer of the model, or a constant folded at
    load time (``folded``: computed once, only when an export needs one).
    """
    entries = _entries(t)
    numel = int(np.prod([int(d) for d in t.dims], dtype=np.int64))
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    length = numel * itemsize
    declaration = declared_split(t)
    if declaration is not None:  # a tensor-parallel rank's declared parameter
        source, cut = declaration

        def read() -> np.ndarray:
            whole = store.get(source) if source in store else folded()[source]
            return whole if cut is None else chunk(whole, *cut, source)

        return _array_piece(read), length
    if INLINE_MARKER in entries:
        return _array_piece(lambda: store.get(t.name)), length
    if t.data_location == TensorProto.EXTERNAL:
        return _copy(graph, t), length
    raw = numpy_helper.to_array(t)
    return _array_piece(lambda: raw), raw.nbytes


def pointed(
    name: str, data_type: int, dims: Sequence[int], location: str, offset: int, length: int
) -> TensorProto:
    """An initializer whose data lies elsewhere: ``length`` bytes at ``offset`` of
    ``location`` (a stage's data file, or memory onnxruntime is handed)."""
    out = TensorProto()
    out.name, out.data_type = name, data_type
    out.dims.extend(dims)
    out.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = out.external_data.add()
        entry.key, entry.value = key, value
    return out


def _keeps_inline(t: TensorProto) -> bool:
    return t.data_location != TensorProto.EXTERNAL and t.ByteSize() <= INLINE_LIMIT_BYTES


def stage_files(
    graph: Graph, store: WeightStore, stage: StageModel, file_name: str, *, with_data: bool
) -> StageFiles:
    """The stage's .onnx bytes, its weights pointing into ``<file_name>.data``.

    Args:
        with_data: False for a weightless model: references only, no data file.
    """
    data_name = f"{file_name}.data"
    model = onnx.ModelProto()
    model.CopyFrom(stage.model)
    pieces: list[tuple[int, Piece]] = []
    offset = 0
    initializers = []
    folded = functools.cache(lambda: constant_values(graph, store))
    for t in model.graph.initializer:
        if _keeps_inline(t):
            initializers.append(t)
            continue
        piece, length = _piece(graph, store, folded, t)
        offset = -(-offset // _ALIGN_BYTES) * _ALIGN_BYTES
        initializers.append(pointed(t.name, t.data_type, t.dims, data_name, offset, length))
        pieces.append((offset, piece))
        offset += length
    del model.graph.initializer[:]
    model.graph.initializer.extend(initializers)
    if not pieces:
        return StageFiles(model.SerializeToString(), None, None)

    def write_data(f: BinaryIO) -> None:
        for start, piece in pieces:
            f.write(b"\0" * (start - f.tell()))
            for block in piece():
                f.write(block)

    return StageFiles(model.SerializeToString(), data_name, write_data if with_data else None)
