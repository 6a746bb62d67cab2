"""Decode iterations of pipelined groups, priced a window at a time.

On a pipeline several decode groups take turns through the stages, each one
token further every time it comes round, so the event loop prices each of their
iterations alone (`steady` runs in bulk only a group alone). When the cost can
price a run of decode iterations in one call (``decode_run_seconds``, as plan
costs can), `RunPrices` does so instead: a decode-only shape is priced with the
next few iterations of its run, and the shape each would be is remembered, so
the group's next turn finds its seconds ready. The window starts small, as a
group's members may change after a turn or two, and doubles while the run goes
on. A shape priced this way is the same shape priced alone, to rounding: whose
group it is does not matter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from partitioner.simulate.serving.iteration import IterationCost, IterationShape

__all__ = ["RunPrices", "contended_prices"]

#: The first window's iterations, the most a window grows to, and how many runs are kept.
FIRST_WINDOW, LARGEST_WINDOW, KEPT_RUNS = 4, 64, 256


class RunPrices:
    """`IterationCost.stage_seconds`, decode-only shapes priced a window at a time."""

    def __init__(self, cost: IterationCost) -> None:
        self.cost = cost
        self.bulk = getattr(cost, "decode_run_seconds", None)
        # the next iteration of each run priced: its shape -> (window, column, window size)
        self.ahead: dict[IterationShape, tuple[np.ndarray | None, int, int]] = {}

    def stage_seconds(self, shape: IterationShape) -> Sequence[float]:
        """Each stage's seconds of ``shape`` (module doc)."""
        if self.bulk is None or shape.rows != shape.sequences or shape.prefill_sequences:
            return self.cost.stage_seconds(shape)
        window, column, size = self.ahead.pop(shape, (None, 0, FIRST_WINDOW))
        if window is None:
            if len(self.ahead) > KEPT_RUNS:  # runs whose groups changed are never asked for
                self.ahead.clear()
            window, column = self.bulk(shape, size), 0
        after = shape.decode_step()
        if column + 1 < window.shape[1]:
            self.ahead[after] = (window, column + 1, size)
        else:
            self.ahead[after] = (None, 0, min(2 * size, LARGEST_WINDOW))
        return window[:, column]


def contended_prices(cost: IterationCost, stages: int) -> RunPrices | None:
    """The cost's ``contended`` seconds (its stages running beside another iteration's, on
    devices sharing one memory system), windowed as `RunPrices`; None for one stage or a
    cost without them."""
    contended = getattr(cost, "contended", None) if stages > 1 else None
    return None if contended is None else RunPrices(contended)
