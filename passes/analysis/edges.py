"""Bytes that would cross a cut, per tensor.

Only runtime values cross between devices: activations and the model's inputs.
Parameters (initializers and folded constants) are resident wherever they are
used, so they never travel; a tensor with no static shape is listed apart.

A plan still moves a tensor whose size is unknown: every value a partition reads
from another must arrive by a transfer. Such a transfer records 0 bytes (a plan's
sizes are integers) and the plan lists the tensor as unsized, so the unknown is
reported rather than passed off as a known zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from passes.ir import Graph, Tensor

__all__ = ["EdgeBytes", "cut_bytes", "transfer_bytes", "unsized_tensors"]


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


def transfer_bytes(t: Tensor) -> int:
    """The bytes a transfer of ``t`` records: its size, or 0 when its shape is unknown
    (`unsized_tensors` lists those)."""
    return t.nbytes if t.is_static else 0


def unsized_tensors(graph: Graph, names: Iterable[str]) -> list[str]:
    """The tensors among ``names`` whose size is unknown, sorted and without repeats."""
    return sorted({n for n in names if n in graph.tensors and not graph.tensors[n].is_static})
