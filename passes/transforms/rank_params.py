"""A tensor-parallel rank's parameters: chunks, declarations, and stored weights.

A rank graph built without values declares each parameter: its type and local
dims, with two external-data entries that say where its data comes from
(``partition.source``, a whole tensor of the model) and how it is cut
(``partition.split``, "axis A, chunk R of D", empty when whole). Export streams
the chunk from the source and the executor slices it from the whole value; both
read the declaration (`declared_split`), so the two cannot disagree.

A stored weight (`passes.analysis.stored_weights`) enters a rank as what the
plan counted: its quantised data cut like the dequantised tensor, its scale and
zero point (cut too when a per-axis scale runs along the split axis), and the
DequantizeLinear, copied, ahead of the rank's other nodes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from passes.analysis.stored_weights import StoredWeight
from passes.errors import PassError
from passes.ir import Graph

__all__ = [
    "SOURCE_KEY",
    "SPLIT_KEY",
    "chunk",
    "declared",
    "declared_split",
    "split_text",
    "stored_initializers",
    "stored_nodes",
]

# Keys of the external-data entries that declare a parameter without its data.
SOURCE_KEY = "partition.source"
SPLIT_KEY = "partition.split"
_SPLIT = re.compile(r"axis (\d+), chunk (\d+) of (\d+)")


def chunk(array: np.ndarray, axis: int, rank: int, degree: int, name: str) -> np.ndarray:
    """Chunk ``rank`` of ``degree`` equal chunks of ``array`` along ``axis`` (a view)."""
    if not 0 <= axis < array.ndim or array.shape[axis] % degree:
        raise PassError(
            f"tensor {name!r} of shape {list(array.shape)} does not split into {degree} equal "
            f"parts along axis {axis}"
        )
    step = array.shape[axis] // degree
    index = [slice(None)] * array.ndim
    index[axis] = slice(rank * step, (rank + 1) * step)
    return array[tuple(index)]


def split_text(axis: int | None, rank: int, degree: int) -> str:
    """The ``partition.split`` entry of a parameter cut along ``axis`` ("" when whole)."""
    return "" if axis is None else f"axis {axis}, chunk {rank} of {degree}"


def declared(graph: Graph, name: str, dims: Iterable[int], split: str) -> TensorProto:
    """A parameter with its type and local dims but no data (structure-only models)."""
    t = TensorProto()
    t.name = name
    t.data_type = graph.tensors[name].elem_type
    t.dims.extend(int(d) for d in dims)
    t.data_location = TensorProto.EXTERNAL
    for key, value in ((SOURCE_KEY, name), (SPLIT_KEY, split)):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def declared_split(t: TensorProto) -> tuple[str, tuple[int, int, int] | None] | None:
    """A declared parameter's (source, (axis, rank, degree) or None when whole); None
    when ``t`` is not a declaration."""
    entries = {e.key: e.value for e in t.external_data}
    if SOURCE_KEY not in entries:
        return None
    cut = _SPLIT.fullmatch(entries.get(SPLIT_KEY, ""))
    parts = None if cut is None else tuple(int(g) for g in cut.groups())
    return entries[SOURCE_KEY], parts  # type: ignore[return-value]


def _cut_axis(weight: StoredWeight, name: str, axis: int | None) -> int | None:
    """Where input ``name`` of the weight's DequantizeLinear is cut when the weight is
    cut along ``axis``: the data like the weight, a per-axis scale along its only axis."""
    if axis is None:
        return None
    if name == weight.inputs[0]:
        return axis
    return 0 if weight.scale_axis == axis else None


def stored_initializers(
    graph: Graph,
    weight: StoredWeight,
    axis: int | None,
    rank: int,
    degree: int,
    read: Callable[[str], np.ndarray] | None,
) -> list[TensorProto]:
    """Rank ``rank``'s initializers of a stored weight cut along ``axis`` (None: whole):
    declared when ``read`` is None, else values (``read`` maps a name to its whole value)."""
    out = []
    for name in weight.inputs:
        cut = _cut_axis(weight, name, axis)
        if read is None:
            dims = list(graph.tensors[name].shape or ())
            if cut is not None:
                dims[cut] //= degree
            out.append(declared(graph, name, dims, split_text(cut, rank, degree)))
            continue
        value = np.asarray(read(name))
        if cut is not None:
            value = chunk(value, cut, rank, degree, name)
        out.append(numpy_helper.from_array(value, name))
    return out


def stored_nodes(graph: Graph, weights: Iterable[StoredWeight]) -> list[onnx.NodeProto]:
    """The stored weights' DequantizeLinear nodes, copied, in the model's order."""
    out = []
    for index in sorted(w.node for w in weights):
        proto = onnx.NodeProto()
        proto.CopyFrom(graph.model.graph.node[index])
        out.append(proto)
    return out
