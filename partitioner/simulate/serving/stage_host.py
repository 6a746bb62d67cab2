"""Host work on every later pipeline stage: each stage's rank prepares its own iteration.

`ServingConfig.iteration_overhead_s` is the host work before an iteration's first
stage: the scheduler, building inputs, sampling. In a pipeline every later stage's
rank has host work of its own each iteration too (receiving the batch's layout,
gathering its layers' KV caches into the batch and writing them back), which holds
that stage as its kernels do. `with_stage_host` adds it to the cost's seconds of
every stage after the first, so the event loop, the steady loop's runs and the
turns priced ahead (`run_prices`) all see the same figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from partitioner.errors import UsageError
from partitioner.simulate.serving.iteration import IterationCost, IterationShape

__all__ = ["with_stage_host"]


class _StageHostCost:
    """``cost`` with ``overhead_s`` more on each stage after the first, per iteration."""

    def __init__(self, cost: Any, overhead_s: float) -> None:
        self._cost, self.stages = cost, cost.stages
        self._extra = [0.0] + [overhead_s] * (self.stages - 1)
        self._column = np.array(self._extra)[:, None]
        if getattr(cost, "decode_run_seconds", None) is not None:
            self.decode_run_seconds = self._run  # the steady loop prices runs in bulk
        contended = getattr(cost, "contended", None)
        self.contended = None if contended is None else _StageHostCost(contended, overhead_s)

    def stage_seconds(self, shape: IterationShape) -> list[float]:
        seconds = self._cost.stage_seconds(shape)
        return [float(s) + e for s, e in zip(seconds, self._extra, strict=True)]

    def _run(self, first: IterationShape, iterations: int) -> np.ndarray:
        return self._cost.decode_run_seconds(first, iterations) + self._column


def with_stage_host(cost: IterationCost, overhead_s: float) -> IterationCost:
    """``cost`` with each stage after the first taking ``overhead_s`` more host seconds an
    iteration; ``cost`` itself when there is none to add.

    Raises:
        UsageError: rows stream through the stages (a wafer's regions, which run no host
            code between them).
    """
    if not overhead_s or cost.stages < 2:
        return cost
    if getattr(cost, "streams_rows", False):
        raise UsageError(
            "--stage-overhead: a wafer's regions run no host code between them; it applies "
            "to GPU and CPU pipelines"
        )
    return _StageHostCost(cost, overhead_s)  # type: ignore[return-value]
