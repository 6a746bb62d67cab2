"""`simulate_serving`'s progress callback: counts that only grow, and no change to figures."""

from __future__ import annotations

import numpy as np

from partitioner.simulate.serving import Requests, ServingConfig
from partitioner.simulate.serving.simulator import simulate_requests
from tests.partitioner.serving.costs import EveryFieldCost


def test_progress_counts_finished_requests_and_changes_nothing():
    rng = np.random.default_rng(0)
    count = 500
    requests = Requests(np.cumsum(rng.exponential(0.01, count)), rng.integers(1, 40, count),
                        rng.integers(1, 30, count))  # fmt: skip
    config = ServingConfig(100_000)
    calls: list[tuple[int, int]] = []
    with_progress = simulate_requests(requests, EveryFieldCost(2), config,
                                      progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    without = simulate_requests(requests, EveryFieldCost(2), config)
    assert with_progress.to_json() == without.to_json()
    assert [done for done, _ in calls] == list(range(5, count + 1, 5))  # every hundredth
    assert {total for _, total in calls} == {count}
