"""Bytes that would cross a cut, per tensor.

Only runtime values cross between devices: activations and the model's inputs.
Parameters (initializers and folded constants) are resident wherever they are
used, so they never travel; a tensor with no static shape is listed apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from passes.ir import Graph

__all__ = ["EdgeBytes", "cut_bytes"]


@dataclass(frozen=True)
class EdgeBytes:
    """Per-tensor transfer sizes.

    Attributes:
        bytes_by_tensor: tensor name -> bytes, for every activation and runtime input.
        unknown: runtime tensors without a static shape.
    """

    bytes_by_tensor: Mapping[str, int] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()


def cut_bytes(graph: Graph) -> EdgeBytes:
    """The bytes each runtime tensor would put on a link if a cut separated its ends."""
    sizes: dict[str, int] = {}
    unknown: list[str] = []
    for t in graph.iter_tensors():
        if t.is_param:
            continue
        if t.is_static:
            sizes[t.name] = t.nbytes
        else:
            unknown.append(t.name)
    return EdgeBytes(sizes, tuple(unknown))
