"""`RunPrices`: pipelined groups' decode iterations priced a window at a time."""

from __future__ import annotations

import numpy as np
import pytest

from partitioner.simulate.serving import IterationShape
from partitioner.simulate.serving.run_prices import FIRST_WINDOW, RunPrices
from tests.partitioner.serving.costs import BulkEveryFieldCost


class _Counted(BulkEveryFieldCost):
    """Counts the bulk calls and the iterations they price."""

    def __init__(self, stages: int) -> None:
        super().__init__(stages)
        object.__setattr__(self, "windows", [])

    def decode_run_seconds(self, first: IterationShape, iterations: int) -> np.ndarray:
        self.windows.append(iterations)
        return super().decode_run_seconds(first, iterations)


def test_a_decode_step_is_one_token_further_for_every_sequence():
    # 4 sequences whose caches sum to 40 after the iteration, the longest 20
    shape = IterationShape(4, 4, 44, 40, 20)
    assert shape.decode_step() == IterationShape(4, 4, 48, 44, 21)
    assert shape.decode_step(3) == IterationShape(4, 4, 56, 52, 23)
    assert shape.decode_step(0) == shape


def test_two_groups_taking_turns_are_priced_a_growing_window_at_a_time():
    cost = _Counted(3)
    prices = RunPrices(cost)
    a, b = IterationShape(4, 4, 44, 44, 20), IterationShape(2, 2, 300, 300, 200)
    for _ in range(30):  # the groups alternate, as in a pipeline
        for shape in (a, b):
            assert list(prices.stage_seconds(shape)) == pytest.approx(cost.stage_seconds(shape),
                                                                      rel=1e-15)  # fmt: skip
        a, b = a.decode_step(), b.decode_step()
    # each group: windows of 4, 8 and 16 iterations, then one of 32 for the last two
    assert cost.windows == [FIRST_WINDOW] * 2 + [8] * 2 + [16] * 2 + [32] * 2


def test_a_group_that_changes_is_priced_afresh_and_mixed_shapes_alone():
    cost = _Counted(2)
    prices = RunPrices(cost)
    shape = IterationShape(4, 4, 44, 44, 20)
    prices.stage_seconds(shape)
    changed = IterationShape(5, 5, 60, 60, 21)  # a member joined: not the run's next shape
    assert list(prices.stage_seconds(changed)) == pytest.approx(cost.stage_seconds(changed))
    assert cost.windows == [FIRST_WINDOW, FIRST_WINDOW]
    chunk = IterationShape(12, 5, 200, 70, 21, 1, 8, 36, 8)  # a prompt's chunk among them
    assert list(prices.stage_seconds(chunk)) == list(cost.stage_seconds(chunk))
    assert len(cost.windows) == 2  # priced alone
