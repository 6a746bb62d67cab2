"""Which nodes constant folding may evaluate: none whose output would be huge.

onnxscript's folder checks ``output_size_limit`` only after it has evaluated a
node. For ops whose output size comes from input *values* (Range,
ConstantOfShape, Expand, Tile), a large ``--dim`` makes that evaluation itself
allocate gigabytes: ``Range(0, seq)`` with seq = 10^8 took 1.6 GB, 10^9 would be
killed for memory. So the size is predicted from the constant inputs first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # onnx_ir (with sympy) loads only when folding runs
    import onnx_ir as ir

__all__ = ["fold_size_guard"]


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.const_value is None:
        return None
    try:
        return np.asarray(value.const_value.numpy())
    except Exception:  # noqa: BLE001 - an unreadable constant is simply not predicted
        return None


def _range_count(node: ir.Node) -> float | None:
    start, limit, delta = (_const(v) for v in node.inputs[:3])
    if start is None or limit is None or delta is None or float(delta) == 0:
        return None
    return max(math.ceil((float(limit) - float(start)) / float(delta)), 0)


def _shape_count(node: ir.Node, shape_input: int) -> float | None:
    shape = _const(node.inputs[shape_input] if len(node.inputs) > shape_input else None)
    if shape is None:
        return None
    return float(np.prod(np.maximum(shape.astype(np.float64), 1.0)))


def _tile_count(node: ir.Node) -> float | None:
    data, repeats = node.inputs[0], _const(node.inputs[1] if len(node.inputs) > 1 else None)
    if repeats is None or data is None or data.shape is None or not data.shape.is_static():
        return None
    return float(math.prod(int(d) for d in data.shape)) * float(np.prod(repeats.astype(np.float64)))


_PREDICTORS: dict[str, Callable[[ir.Node], float | None]] = {
    "Range": _range_count,
    "ConstantOfShape": lambda node: _shape_count(node, 0),
    "Expand": lambda node: _shape_count(node, 1),
    "Tile": _tile_count,
}


def fold_size_guard(output_size_limit: int) -> Callable[[ir.Node], bool | None]:
    """A ``should_fold`` for onnxscript: False for a node whose output would exceed the limit."""

    def should_fold(node: ir.Node) -> bool | None:
        predict = _PREDICTORS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if predict is None:
            return None
        count = predict(node)
        return False if count is not None and count > output_size_limit else None

    return should_fold
