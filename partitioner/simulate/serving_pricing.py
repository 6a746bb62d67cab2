"""Price an iteration's stages with one matrix product (`serving_cost`'s inner loop).

A serving simulation prices every iteration, millions of times a run, so the
arithmetic is laid out once as a matrix over the twelve monomials of an
`IterationShape` (six read per row, six per sequence, `serving_cost`):

- a **kernel** takes the larger of its FLOPs times seconds per FLOP and its bytes
  times seconds per byte (the roofline), plus its launches. The larger of the two
  is the bytes' time plus whatever the FLOPs' time exceeds it by, so its bytes join
  its stage's one row of everything linear, and it keeps one row of its own: FLOPs'
  time less bytes' time, of which only the positive part counts. On a device that
  does not overlap the two (one CPU thread) it takes their sum: both terms join the
  linear row, and it keeps no row of its own;
- a **link** (collective or transfer) takes its fixed seconds when it moves
  anything (or always, ``always_fixed``) plus its bytes times seconds per byte: the
  bytes' time joins the stage's linear row, a fixed time paid always joins the
  stage's constant, and a fixed time paid only when bytes move keeps one row, of
  its bytes, to tell whether they do;
- identical kernels and links of a stage are one row with their count, so a stage
  with 161 identical all-reduces costs one row, not 161.

A kernel's count multiplies its own row (the positive part of count·x is count
times that of x), and a stage's kernel rows lie together, so per iteration that
is one product, one maximum, one sum per stage's slice of rows (``reduceat``) and,
for links that pay only when they move bytes, one comparison and one small
product; a run of iterations (`seconds_many`) is the same few operations on a
matrix of monomials.
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
    """``count`` kernels on ``stage``: max(FLOPs · s/FLOP, bytes · s/B) + launch seconds, or
    the sum of the two terms where the device does not overlap them (``overlap`` false,
    `targets.gpu.GpuDevice.compute_memory_overlap`)."""

    stage: int
    count: float
    flops: tuple[float, ...]
    s_per_flop: float
    bytes: tuple[float, ...]
    s_per_byte: float
    launch_s: float
    overlap: bool = True


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
        kernel_rows.sort(key=lambda pair: pair[0].stage)  # each stage's rows together
        linear = np.zeros((stages, 2 * N))
        constant = np.asarray(constant_s, dtype=float).copy()
        fixed = constant.copy()  # what no row count changes, for `fixed_s`
        for row, count in kernel_rows:
            linear[row.stage, N:] += count * np.asarray(row.bytes) * row.s_per_byte
            if not row.overlap:  # compute and memory in turn: both terms are linear
                linear[row.stage, :N] += count * np.asarray(row.flops) * row.s_per_flop
            constant[row.stage] += count * row.launch_s
            fixed[row.stage] += count * row.launch_s
        kernel_rows = [(row, count) for row, count in kernel_rows if row.overlap]
        excess = np.zeros((len(kernel_rows), 2 * N))
        for i, (row, count) in enumerate(kernel_rows):
            # the positive part of count·x is count times that of x: counts fold in here
            excess[i, :N] = count * np.asarray(row.flops) * row.s_per_flop
            excess[i, N:] = -count * np.asarray(row.bytes) * row.s_per_byte
        moving, moving_fixed = [], []
        for row, count in link_rows:
            half = slice(N, 2 * N) if row.per_sequence else slice(0, N)
            linear[row.stage, half] += count * row.s_per_byte * np.asarray(row.bytes)
            fixed[row.stage] += count * row.fixed_s
            if row.always_fixed:
                constant[row.stage] += count * row.fixed_s
            elif row.fixed_s:
                moved = np.zeros(2 * N)
                moved[half] = row.bytes
                moving.append(moved)
                column = np.zeros(stages)
                column[row.stage] = count * row.fixed_s
                moving_fixed.append(column)
        self._stages, self._k = stages, len(kernel_rows)
        self._weights = (
            np.vstack([linear, excess, *moving]) if moving else np.vstack([linear, excess])
        )
        # each stage's kernel rows are one slice of the excess rows, summed with reduceat
        row_stages = np.array([row.stage for row, _ in kernel_rows], dtype=int)
        self._kernel_stages, self._kernel_starts = np.unique(row_stages, return_index=True)
        self._every_stage = np.array_equal(self._kernel_stages, np.arange(stages))
        self._moving_fixed = np.array(moving_fixed).T.reshape(stages, len(moving))
        self._constant, self._constant_col = constant, constant[:, None]
        #: Per stage, what no row count changes: its constant and its links' fixed seconds.
        self.fixed_s: np.ndarray = fixed

    def seconds(self, monomials: Sequence[float]) -> list[float]:
        """Each stage's seconds; ``monomials``: the six per-row values, then the six
        per-sequence ones."""
        return self.seconds_many(np.asarray(monomials, dtype=float)).tolist()

    def seconds_many(self, monomials: np.ndarray) -> np.ndarray:
        """Seconds of many iterations at once, one per column of ``monomials`` (twelve rows,
        as `seconds` reads them): an array of stages by iterations. A run of decode
        iterations costs one call, not one per iteration (`serving.steady`). One iteration's
        twelve monomials as a vector give a vector of stages."""
        v = self._weights @ monomials
        s, k = self._stages, self._k
        seconds = v[:s] + (self._constant_col if v.ndim == 2 else self._constant)
        if k:
            excess = v[s : s + k]
            np.maximum(excess, 0.0, out=excess)
            per_stage = np.add.reduceat(excess, self._kernel_starts, axis=0)
            if self._every_stage:
                seconds += per_stage
            else:
                seconds[self._kernel_stages] += per_stage
        if self._moving_fixed.shape[1]:
            seconds += self._moving_fixed @ (v[s + k :] > 0.0)
        return seconds
