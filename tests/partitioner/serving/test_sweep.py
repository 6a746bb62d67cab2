"""The rate sweep on a queue whose SLO threshold is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from partitioner.errors import UsageError
from partitioner.simulate.serving import (
    Requests,
    ServingConfig,
    ServingReport,
    Slo,
    load_workload,
    max_rate_under_slo,
    rate_runner,
    simulate_requests,
)
from tests.partitioner.serving.costs import LinearCost

COUNT = 101
TTFT_1_99 = Slo(ttft_s=1.99)


def evenly(rate: float, slo: Slo | None = TTFT_1_99) -> ServingReport:
    """101 one-token requests, one every 1/rate s, served one at a time in 1 s each.

    Request k starts at max(k/rate, k) and ends 1 s later. Above 1 per second the queue
    grows: TTFT_k = 1 + k(1 - 1/rate), linear in k, so the p99 (position 0.99·100 = 99)
    is 1 + 99(1 - 1/rate), within 1.99 s while rate <= 1 / (1 - 0.99/99) = 1/0.99.
    """
    arrival = np.arange(COUNT) / rate
    reqs = Requests(arrival, np.ones(COUNT, dtype=np.int64), np.ones(COUNT, dtype=np.int64))
    return simulate_requests(reqs, LinearCost(), ServingConfig(64, max_num_seqs=1), slo=slo)


def test_bisection_finds_the_closed_form_threshold():
    threshold = 1 / 0.99
    assert evenly(threshold * 0.999).meets_slo and not evenly(threshold * 1.001).meets_slo
    sweep = max_rate_under_slo(evenly, 0.5, 4.0, rel_tol=1e-4)
    assert sweep.bounded
    assert sweep.rate_per_s == pytest.approx(threshold, rel=2e-4)
    assert sweep.rate_per_s <= threshold * (1 + 1e-9)
    assert sweep.report is not None and sweep.report.meets_slo
    rates = [p.rate_per_s for p in sweep.probes]
    assert rates == sorted(rates) and rates[0] == 0.5 and rates[-1] == 4.0
    failing = [p.rate_per_s for p in sweep.probes if not p.report.meets_slo]
    assert min(failing) / sweep.rate_per_s - 1 <= 1e-4
    assert len(sweep.probes) <= 2 + 15  # geometric halving of log(8) down to 1e-4


def test_brackets_that_do_not_bracket():
    assert max_rate_under_slo(evenly, 2.0, 4.0).rate_per_s is None  # even the low rate fails
    easy = max_rate_under_slo(evenly, 0.25, 0.5)
    assert (easy.rate_per_s, easy.bounded, len(easy.probes)) == (0.5, False, 2)
    with pytest.raises(UsageError, match="no SLO"):
        max_rate_under_slo(lambda rate: evenly(rate, slo=None), 0.5, 4.0)
    with pytest.raises(UsageError, match="need 0 < low < high"):
        max_rate_under_slo(evenly, 4.0, 0.5)


def test_rate_runner_sweeps_a_workload_with_one_seed():
    workload = load_workload("mlperf-llama2-70b-interactive").with_requests(100)
    cost = LinearCost(base_s=0.03, per_row_s=4e-5)
    run = rate_runner(workload, cost, ServingConfig(100_000))
    assert run(3.0).to_json() == run(3.0).to_json()
    sweep = max_rate_under_slo(run, 1.0, 1000.0, rel_tol=0.05)
    assert sweep.bounded and sweep.rate_per_s is not None and 1.0 < sweep.rate_per_s < 1000.0
    assert all(p.report.requests == 100 for p in sweep.probes)
    above = min(p.rate_per_s for p in sweep.probes if not p.report.meets_slo)
    assert above / sweep.rate_per_s - 1 <= 0.05
