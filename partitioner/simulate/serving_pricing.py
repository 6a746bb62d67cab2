"""Price an iteration's stages with one matrix product (`serving_cost`'s inner loop).

A serving simulation prices every iteration, hundreds of thousands of times a
run, so the arithmetic is laid out once as a matrix over the twelve monomials
of an `IterationShape` (six read per row, six per sequence, `serving_cost`):

- a **kernel** is two rows, its FLOPs already times seconds per FLOP and its bytes
  times seconds per byte; its seconds are the larger (the roofline) plus its launches;
- a **link** (collective or transfer) is one row of its bytes; its seconds are its
  fixed seconds when it moves anything (or always, ``always_fixed``) plus its bytes
  times seconds per byte;
- identical kernels and links of a stage are one row with their count, so a stage
  with 161 identical all-reduces costs one row, not 161.

Per iteration that is one product, a few element-wise maxima and one product
with the stage-by-row count matrix, the same formulas as before in fewer numpy
calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from partitioner.plan.load_model import MONOMIALS

__all__ = ["KernelRow", "LinkRow", "StagePricing"]

N = len(MONOMIALS)


@dataclass(frozen=True)
class KernelRow:
    """``count`` kernels on ``stage``: max(FLOPs · s/FLOP, bytes · s/B) + launch seconds."""

    stage: int
    count: float
    flops: tuple[float, ...]
    s_per_flop: float
    bytes: tuple[float, ...]
    s_per_byte: float
    launch_s: float


@dataclass(frozen=True)
class LinkRow:
    """``count`` links on ``stage``: fixed seconds + bytes · s/B, the bytes a polynomial in
    the per-sequence monomials (``per_sequence``) or the per-row ones."""

    stage: int
    count: float
    bytes: tuple[float, ...]
    fixed_s: float
    s_per_byte: float
    per_sequence: bool
    always_fixed: bool = False


def _merged(rows: Sequence[KernelRow] | Sequence[LinkRow]) -> list:
    """Rows equal but for their count, as one row with the counts added, in first order."""
    merged: dict[tuple, float] = {}
    first: dict[tuple, KernelRow | LinkRow] = {}
    for row in rows:
        key = tuple(v for k, v in vars(row).items() if k != "count")
        merged[key] = merged.get(key, 0.0) + row.count
        first.setdefault(key, row)
    return [(first[key], count) for key, count in merged.items()]


class StagePricing:
    """Seconds per stage at an iteration's twelve monomials (see the module docstring)."""

    def __init__(
        self,
        stages: int,
        kernels: Sequence[KernelRow],
        links: Sequence[LinkRow],
        constant_s: Sequence[float],
    ) -> None:
        kernel_rows, link_rows = _merged(kernels), _merged(links)
        k, m = len(kernel_rows), len(link_rows)
        self._k = k
        weights = np.zeros((2 * k + m, 2 * N))
        counts = np.zeros((stages, k + m))
        launches = np.zeros(stages)
        for i, (row, count) in enumerate(kernel_rows):
            weights[i, :N] = np.asarray(row.flops) * row.s_per_flop
            weights[k + i, N:] = np.asarray(row.bytes) * row.s_per_byte
            counts[row.stage, i] += count
            launches[row.stage] += count * row.launch_s
        self._fixed_s, self._s_per_byte = np.zeros(m), np.zeros(m)
        self._always = np.zeros(m, dtype=bool)
        for j, (row, count) in enumerate(link_rows):
            half = slice(N, 2 * N) if row.per_sequence else slice(0, N)
            weights[2 * k + j, half] = row.bytes
            self._fixed_s[j], self._always[j] = row.fixed_s, row.always_fixed
            self._s_per_byte[j] = row.s_per_byte
            counts[row.stage, k + j] += count
        self._weights, self._counts = weights, counts
        self._constant_s = np.asarray(constant_s, dtype=float) + launches
        # per stage, what no row count changes: its constant and its links' fixed seconds
        fixed_links = np.concatenate((np.zeros(k), self._fixed_s))
        self.fixed_s: np.ndarray = self._constant_s + counts @ fixed_links

    def seconds(self, monomials: Sequence[float]) -> list[float]:
        """Each stage's seconds; ``monomials``: the six per-row values, then the six
        per-sequence ones."""
        v = self._weights @ np.asarray(monomials)
        np.maximum(v, 0.0, out=v)
        k = self._k
        kernels = np.maximum(v[:k], v[k : 2 * k])
        moved = v[2 * k :]
        links = self._fixed_s * ((moved > 0) | self._always) + self._s_per_byte * moved
        per_row = np.concatenate((kernels, links))
        return (self._constant_s + self._counts @ per_row).tolist()
