"""A vocabulary-split embedding lookup in a rank graph, spelled with standard ONNX ops.

`passes.analysis.sharding_embedding` splits ``Gather(table [V, E...], ids,
axis=0)`` by rows: rank r of n holds rows ``[lo, lo + V/n)`` with ``lo =
r·V/n``. The original node would index that slice with global ids, so rank r
runs instead::

    neg    = Less(ids, 0)                 # ONNX Gather counts negative ids from the end
    ids'   = Where(neg, ids + V, ids)
    local  = ids' - lo
    inside = And(Greater(local, -1), Less(local, V/n))
    safe   = Where(inside, local, 0)      # any in-range row: masked below
    rows   = Gather(table_local, safe, axis=0)
    out    = Where(Unsqueeze(inside, [-1, ...]), rows, 0)

Every rank writes its own rows and zeros elsewhere, so the ranks' outputs sum to
the whole lookup: the all-reduce after the node (named by the sharding) finishes
it. ``Greater(local, -1)`` is ``local >= 0`` for integers without
GreaterOrEqual, which older opsets lack. ``Where`` rather than a multiply by the
mask keeps a non-finite value in a row the rank does not own out of the sum.

The constants are initializers named after the node's output: only ``lo``
differs between ranks, so every rank runs the same nodes on its own values
(the lockstep executor runs rank 0's node list on every rank's values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from passes.errors import PassError
from passes.ir import Graph

if TYPE_CHECKING:
    from passes.analysis.sharding import ShardingPlan

__all__ = ["VocabLookup", "vocab_split_table", "vocab_lookup"]

_VOCAB_AXIS = 0
_UNSQUEEZE_AXES_INPUT_OPSET = 13  # Unsqueeze took its axes as an input from opset 13


@dataclass(frozen=True)
class VocabLookup:
    """What replaces one vocabulary-split Gather on one rank.

    Attributes:
        nodes: the replacement, in order; the last one writes the Gather's output.
        constants: the initializers the nodes read (``lo`` differs per rank).
    """

    nodes: tuple[onnx.NodeProto, ...]
    constants: tuple[TensorProto, ...]


def vocab_split_table(graph: Graph, sharding: ShardingPlan, index: int) -> str | None:
    """The table of node ``index`` when it is a Gather whose table the sharding splits on the
    looked-up axis (the vocabulary split), else None."""
    node = graph.nodes[index]
    if node.op_type != "Gather" or node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
        return None
    table = node.inputs[0]
    shape = graph.tensors[table].shape if table in graph.tensors else None
    axis = int(node.attributes.get("axis", 0))
    if shape and axis < 0:
        axis += len(shape)
    if axis != _VOCAB_AXIS or sharding.weights.get(table) != _VOCAB_AXIS:
        return None
    return table


def _table_dims(graph: Graph, table: str, degree: int) -> tuple[int, int]:
    """(V, table rank); the table has embedding dims and V splits into ``degree`` blocks."""
    shape = graph.tensors[table].shape or ()
    dims = [d for d in shape if isinstance(d, int)]
    if len(dims) != len(shape) or len(dims) < 2 or dims[0] % degree:
        raise PassError(
            f"embedding table {table!r} of shape {shape} does not split into {degree} equal "
            "row blocks"
        )
    return dims[0], len(dims)


def _constants(
    graph: Graph, index: int, rank: int, degree: int
) -> tuple[dict[str, np.ndarray], list[int]]:
    """The lookup's constants by key, and the mask's trailing axes (one per embedding dim)."""
    node = graph.nodes[index]
    table, ids = node.inputs[0], node.inputs[1]
    vocab, table_rank = _table_dims(graph, table, degree)
    rows = vocab // degree
    id_type = helper.tensor_dtype_to_np_dtype(graph.tensors[ids].elem_type)
    values = {
        "zero": np.asarray(0, id_type),
        "minus_one": np.asarray(-1, id_type),
        "vocab": np.asarray(vocab, id_type),
        "lo": np.asarray(rank * rows, id_type),
        "rows": np.asarray(rows, id_type),
        "fill": np.asarray(0, helper.tensor_dtype_to_np_dtype(graph.tensors[table].elem_type)),
    }
    trailing = list(range(-(table_rank - 1), 0))
    if graph.opset >= _UNSQUEEZE_AXES_INPUT_OPSET:
        values["axes"] = np.asarray(trailing, np.int64)
    return values, trailing


def vocab_lookup(graph: Graph, index: int, output: str, rank: int, degree: int) -> VocabLookup:
    """Rank ``rank``'s replacement for the vocabulary-split Gather ``index`` (module doc),
    writing ``output`` (the Gather's output, or what a collective then reads).

    Raises:
        PassError: the table does not split into equal row blocks, or a name the
            replacement needs is already a tensor of the model.
    """
    node = graph.nodes[index]
    table, ids = node.inputs[0], node.inputs[1]
    values, trailing = _constants(graph, index, rank, degree)
    base = node.outputs[0] + "__vocab"
    steps_out = ("neg", "shifted", "wrapped", "local", "ge", "lt", "inside", "safe", "rows", "mask")
    c = {k: f"{base}_{k}" for k in values}
    t = {k: f"{base}_{k}_out" for k in steps_out}
    taken = [n for n in (*c.values(), *t.values()) if n in graph.tensors]
    if taken:
        raise PassError(f"rank graph name {taken[0]!r} would shadow a tensor of the model")
    axes = [c["axes"]] if "axes" in c else []
    steps = [
        ("Less", [ids, c["zero"]], t["neg"], {}),
        ("Add", [ids, c["vocab"]], t["shifted"], {}),
        ("Where", [t["neg"], t["shifted"], ids], t["wrapped"], {}),
        ("Sub", [t["wrapped"], c["lo"]], t["local"], {}),
        ("Greater", [t["local"], c["minus_one"]], t["ge"], {}),
        ("Less", [t["local"], c["rows"]], t["lt"], {}),
        ("And", [t["ge"], t["lt"]], t["inside"], {}),
        ("Where", [t["inside"], t["local"], c["zero"]], t["safe"], {}),
        ("Gather", [table, t["safe"]], t["rows"], {"axis": _VOCAB_AXIS}),
        ("Unsqueeze", [t["inside"], *axes], t["mask"], {} if axes else {"axes": trailing}),
        ("Where", [t["mask"], t["rows"], c["fill"]], output, {}),
    ]
    nodes = tuple(
        helper.make_node(op, inputs, [out], name=f"{node.name or base}/vocab_{k}", **attrs)
        for k, (op, inputs, out, attrs) in enumerate(steps)
    )
    constants = tuple(numpy_helper.from_array(v, c[k]) for k, v in values.items())
    return VocabLookup(nodes, constants)
