"""An iteration whose rows stream through the stages, as on a layer-pipelined wafer.

On a GPU pipeline a stage runs its kernels for the whole batch and hands the
batch on. A wafer's regions pass each row (token) on as soon as it is done:
region s works on row k while region s + 1 works on row k - 1, so an iteration
of n rows is a flow shop of n identical jobs, row time ``u[s] = d[s] / n``:

    start[s]  = max(free[s], start[s-1] + u[s-1])     (its first row arrives)
    finish[s] = max(start[s] + d[s], finish[s-1] + u[s])   (and its last)

which for stages free at the start gives the classic ``Σ u + (n - 1)·max u``
and for one row the stage-by-stage sum. A stage is busy for ``d[s]`` either
way, so throughput does not change; an iteration's latency (a prompt's TTFT, a
batch's step) does. Both recurrences are prefix maxima, so a pipeline of
hundreds of regions costs a few array operations.

A row's time to cross a stage is the stage's fixed seconds (a region's mesh
reduction, a transfer's hop latency: pipelined, so each row waits for them but
they do not occupy the stage) plus its share of the rest (`row_latency`). The
recurrences above hold with ``u[s]`` that latency and the stage busy ``d[s]``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["batch_finish", "row_latency", "streamed_finish"]


def row_latency(seconds: np.ndarray, fixed_s: np.ndarray | None, rows: int) -> np.ndarray:
    """How long one row takes to cross each stage: the stage's fixed part (pipelined, so
    paid in latency, not in occupancy) plus its share of the rest; ``fixed_s`` None: none."""
    if fixed_s is None:
        return seconds / max(rows, 1)
    fixed = np.minimum(fixed_s, seconds)
    return fixed + (seconds - fixed) / max(rows, 1)


def streamed_finish(
    free: np.ndarray, seconds: np.ndarray, per_row: np.ndarray, start_s: float
) -> np.ndarray:
    """Each stage's finish time for an iteration taking ``seconds[s]`` on stage ``s`` whose
    rows each take ``per_row[s]`` to cross it (`row_latency`), entering stage 0 at
    ``start_s`` at the earliest (module doc)."""
    through = np.cumsum(per_row)  # row time up to and including each stage
    before = through - per_row
    base = free - before
    base[0] = max(start_s, float(free[0]))
    first = before + np.maximum.accumulate(base)
    return through + np.maximum.accumulate(first + seconds - through)


def batch_finish(free: np.ndarray, total: np.ndarray, now: float, lag: np.ndarray) -> None:
    """Each stage's finish time, written into ``free``, for an iteration that holds each
    stage for its whole batch: ``t[s] = max(t[s-1], free[s]) + d[s]``, unrolled as
    ``t[s] = D[s] + max(now, max over j <= s of (free[j] - D[j-1]))`` with ``total`` the
    running sum ``D`` of ``d`` (and any host seconds before stage 0) and ``D[-1] = 0``;
    ``lag``, a scratch array as long as ``free``. Equal to the loop up to float rounding."""
    lag[0] = free[0]
    np.subtract(free[1:], total[:-1], out=lag[1:])
    np.maximum.accumulate(lag, out=lag)
    np.maximum(lag, now, out=lag)
    np.add(total, lag, out=free)
