"""The serving report: percentiles as NumPy computes them, SLO figures by hand, stable JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from partitioner.simulate.serving import (
    LatencyStats,
    Requests,
    ServingConfig,
    Slo,
    load_workload,
    simulate_requests,
    simulate_serving,
)
from partitioner.simulate.serving.report import weighted_percentile
from tests.partitioner.serving.costs import EveryFieldCost, LinearCost


def test_latency_percentiles_are_numpys():
    samples = np.array([0.3, 0.1, 0.7, 0.2, 0.9, 0.4, 0.5])
    stats = LatencyStats.of(samples)
    assert stats.p50 == 0.4  # the median of seven
    assert stats.p90 == pytest.approx(0.7 + 0.4 * (0.9 - 0.7))  # sorted position 5.4 of 0..6
    assert [stats.p50, stats.p90, stats.p95, stats.p99] == np.percentile(
        samples, [50, 90, 95, 99]
    ).tolist()
    assert stats.mean == pytest.approx(3.1 / 7)
    assert LatencyStats.of(np.array([])).to_json() == dict.fromkeys(
        ["mean", "p50", "p90", "p95", "p99"]
    )


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_of_counted_values_equal_numpys_on_the_repeated_values(seed):
    rng = np.random.default_rng(seed)
    values = np.unique(rng.random(rng.integers(1, 40)))
    counts = rng.integers(1, 50, values.size)
    repeated = np.repeat(values, counts)
    for percent in (0, 1, 33.3, 50, 90, 95, 99, 100):
        assert weighted_percentile(values, counts, percent) == np.percentile(repeated, percent)
    stats = LatencyStats.of_counts(values, counts)
    assert stats.mean == pytest.approx(repeated.mean(), rel=1e-12)


def three_requests(*extra: tuple[float, int, int]) -> Requests:
    # one engine slot, 1 s an iteration: A on [0,1]; B on [1,2]; C prefills on [2,3] and
    # decodes on [3,4] and [4,5]. TTFT 1, 2, 3; C's TPOT (5 - 3) / 2 = 1
    rows = [(0.0, 4, 1), (0.0, 4, 1), (0.0, 4, 3), *extra]
    arrival, prompt, output = zip(*rows, strict=True)
    return Requests(np.array(arrival), np.array(prompt), np.array(output))


@pytest.mark.parametrize(
    "slo, met, meets",
    [
        (Slo(ttft_s=2.5, tpot_s=1.5), 2, False),  # C's TTFT misses; p99 TTFT 2.98 > 2.5
        (Slo(ttft_s=3.0, tpot_s=0.5), 2, False),  # C's TPOT misses (and it is the p99)
        (Slo(ttft_s=3.0), 3, True),  # everyone; p99 TTFT 2.98
        (Slo(tpot_s=1.0), 3, True),  # one-token requests have no TPOT to miss
    ],
)
def test_slo_attainment_goodput_and_the_p99_rule(slo, met, meets):
    config = ServingConfig(1024, max_num_seqs=1)
    report = simulate_requests(three_requests(), LinearCost(), config, slo=slo)
    assert report.ttft_s.p99 == pytest.approx(2.98)
    assert report.slo_attainment == pytest.approx(met / 3)
    assert report.goodput_requests_per_s == pytest.approx(met / 5)
    assert report.meets_slo is meets


def test_a_rejected_request_misses_the_slo():
    config = ServingConfig(1024, max_num_seqs=1)
    huge = (0.0, 2000, 1)  # more than the 1024-token cache
    report = simulate_requests(three_requests(huge), LinearCost(), config, slo=Slo(ttft_s=3.0))
    assert (report.rejected, report.slo_attainment, report.meets_slo) == (1, 0.75, False)
    without = simulate_requests(three_requests(), LinearCost(), config)
    assert (without.slo_attainment, without.goodput_requests_per_s, without.meets_slo) == (
        None,
        None,
        None,
    )


KEYS = [
    "ttft_s", "tpot_s", "itl_s", "e2e_s", "queue_s", "throughput_tokens_per_s",
    "input_tokens_per_s", "requests_per_s", "goodput_requests_per_s", "slo_attainment",
    "meets_slo", "slo", "kv_cache_utilisation", "stage_utilisation", "preemptions", "requests",
    "completed", "rejected", "input_tokens", "output_tokens", "duration_s", "iterations",
    "mean_batch_size", "prompt_busy_share", "iterations_beside_another",
]  # fmt: skip


def plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return value is None or type(value) in (bool, int, float)


def test_json_has_stable_keys_and_plain_values_and_is_deterministic():
    workload = load_workload("mlperf-llama2-70b-server").with_requests(300)
    config = ServingConfig(200_000, max_num_batched_tokens=512)
    first = simulate_serving(workload, EveryFieldCost(2), config).to_json()
    assert list(first) == KEYS
    assert list(first["ttft_s"]) == ["mean", "p50", "p90", "p95", "p99"]
    assert first["slo"] == {"ttft_p99_s": 2.0, "tpot_p99_s": 0.2}
    assert plain(first)
    again = simulate_serving(workload, EveryFieldCost(2), config).to_json()
    assert json.dumps(first) == json.dumps(again)
    other = simulate_serving(
        workload, EveryFieldCost(2), ServingConfig(200_000, max_num_batched_tokens=512, seed=1)
    )
    assert json.dumps(other.to_json()) != json.dumps(first)
