"""The serving report: vLLM ``bench serve``'s latency figures, throughput, SLOs and utilisation.

Definitions (vLLM's): TTFT = first token − arrival; TPOT = (E2E − TTFT) /
(output − 1), over requests with more than one output token; ITL = every gap
between consecutive tokens of a request (a preempted request's gap spans its
recompute); E2E = last token − arrival; queueing delay = first scheduled −
arrival. Percentiles interpolate linearly between order statistics (NumPy's
default, as ``bench serve`` uses). Rates are over the run, from the first
arrival to the last completion.

SLOs are checked two ways. Per request (vLLM's ``--goodput``): a request meets
them when its TTFT and its TPOT are within the targets (a one-token request
has no TPOT); ``slo_attainment`` is the fraction of all requests that do,
rejected ones counting as misses, and ``goodput_requests_per_s`` is those
requests per second. On percentiles (MLPerf's server rule): ``meets_slo`` when
p99 TTFT and p99 TPOT are within the targets and no request was rejected.
Without an SLO the three are None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from partitioner.simulate.serving.recorder import Recorder
from partitioner.simulate.serving.workload import Requests, Slo

__all__ = ["LatencyStats", "Utilisation", "ServingReport", "build_report", "PERCENTILES"]

PERCENTILES = (50, 90, 95, 99)


def _lerp(low: float, high: float, weight: float) -> float:
    # NumPy's form: exact at both ends, monotone in weight
    if weight < 0.5:
        return low + (high - low) * weight
    return high - (high - low) * (1 - weight)


def weighted_percentile(values: np.ndarray, counts: np.ndarray, percent: float) -> float:
    """``np.percentile(np.repeat(values, counts), percent)`` without the repeat.

    ``values`` ascending and distinct, ``counts`` positive.
    """
    total = int(counts.sum())
    q = percent / 100
    alpha = beta = 1  # NumPy's "linear" method, written as NumPy computes its virtual index
    virtual = total * q + (alpha + q * (1 - alpha - beta)) - 1
    below = min(max(math.floor(virtual), 0), total - 1)
    above = min(below + 1, total - 1)
    ends = np.cumsum(counts)
    low, high = np.searchsorted(ends, [below, above], side="right")
    return _lerp(float(values[low]), float(values[high]), virtual - math.floor(virtual))


@dataclass(frozen=True)
class LatencyStats:
    """Mean and percentiles of a latency, seconds (all None when nothing was measured)."""

    mean: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None

    @classmethod
    def of(cls, samples: np.ndarray) -> LatencyStats:
        if samples.size == 0:
            return cls(None, None, None, None, None)
        p50, p90, p95, p99 = (float(v) for v in np.percentile(samples, PERCENTILES))
        return cls(float(samples.mean()), p50, p90, p95, p99)

    @classmethod
    def of_counts(cls, values: np.ndarray, counts: np.ndarray) -> LatencyStats:
        """From distinct ascending ``values`` each seen ``counts`` times."""
        if values.size == 0:
            return cls(None, None, None, None, None)
        mean = float((values * counts).sum() / counts.sum())
        p50, p90, p95, p99 = (weighted_percentile(values, counts, p) for p in PERCENTILES)
        return cls(mean, p50, p90, p95, p99)

    def to_json(self) -> dict[str, float | None]:
        return {
            "mean": self.mean,
            "p50": self.p50,
            "p90": self.p90,
            "p95": self.p95,
            "p99": self.p99,
        }


@dataclass(frozen=True)
class Utilisation:
    """Time-weighted mean and peak of a fraction in [0, 1]."""

    mean: float
    max: float


@dataclass(frozen=True)
class ServingReport:
    """Figures of one serving simulation; `to_json` gives them in a stable order.

    Latencies are `LatencyStats` in seconds. ``kv_cache_utilisation`` counts
    blocks held over the blocks the cache has; ``stage_utilisation`` is each
    stage's busy time over ``duration_s``.
    """

    ttft_s: LatencyStats
    tpot_s: LatencyStats
    itl_s: LatencyStats
    e2e_s: LatencyStats
    queue_s: LatencyStats
    throughput_tokens_per_s: float
    input_tokens_per_s: float
    requests_per_s: float
    goodput_requests_per_s: float | None
    slo_attainment: float | None
    meets_slo: bool | None
    slo: Slo | None
    kv_cache_utilisation: Utilisation
    stage_utilisation: tuple[float, ...]
    preemptions: int
    requests: int
    completed: int
    rejected: int
    input_tokens: int
    output_tokens: int
    duration_s: float
    iterations: int
    mean_batch_size: float
    #: Device time attributed to prompt rows over all device time (None when idle).
    prompt_busy_share: float | None = None
    #: Iterations priced beside another, on stages sharing one memory system (None where
    #: the stages share none).
    iterations_beside_another: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: plain floats, ints and None, keys in a fixed order."""
        slo = (
            None
            if self.slo is None
            else {"ttft_p99_s": self.slo.ttft_s, "tpot_p99_s": self.slo.tpot_s}
        )
        return {
            "ttft_s": self.ttft_s.to_json(),
            "tpot_s": self.tpot_s.to_json(),
            "itl_s": self.itl_s.to_json(),
            "e2e_s": self.e2e_s.to_json(),
            "queue_s": self.queue_s.to_json(),
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "input_tokens_per_s": self.input_tokens_per_s,
            "requests_per_s": self.requests_per_s,
            "goodput_requests_per_s": self.goodput_requests_per_s,
            "slo_attainment": self.slo_attainment,
            "meets_slo": self.meets_slo,
            "slo": slo,
            "kv_cache_utilisation": {
                "mean": self.kv_cache_utilisation.mean,
                "max": self.kv_cache_utilisation.max,
            },
            "stage_utilisation": list(self.stage_utilisation),
            "preemptions": self.preemptions,
            "requests": self.requests,
            "completed": self.completed,
            "rejected": self.rejected,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "duration_s": self.duration_s,
            "iterations": self.iterations,
            "mean_batch_size": self.mean_batch_size,
            "prompt_busy_share": self.prompt_busy_share,
            "iterations_beside_another": self.iterations_beside_another,
        }


def _slo_figures(
    slo: Slo | None,
    ttft: np.ndarray,
    tpot: np.ndarray,
    multi: np.ndarray,
    requests: int,
    rejected: int,
) -> tuple[int | None, bool | None]:
    """Requests meeting ``slo`` one by one, and whether the p99s meet it (module doc)."""
    if slo is None:
        return None, None
    met = np.ones(ttft.size, dtype=bool)
    p99_ok = rejected == 0 and ttft.size > 0
    if slo.ttft_s is not None:
        met &= ttft <= slo.ttft_s
        p99_ok = p99_ok and float(np.percentile(ttft, 99)) <= slo.ttft_s
    if slo.tpot_s is not None:
        met[multi] &= tpot <= slo.tpot_s
        p99_ok = p99_ok and (tpot.size == 0 or float(np.percentile(tpot, 99)) <= slo.tpot_s)
    return int(met.sum()), bool(p99_ok)


def build_report(
    rec: Recorder, requests: Requests, capacity_blocks: int, slo: Slo | None
) -> ServingReport:
    """The report of a finished simulation."""
    finish_s = np.array(rec.finish_s)
    done = ~np.isnan(finish_s)
    arrival, output = requests.arrival_s[done], requests.output_tokens[done]
    ttft = np.array(rec.first_token_s)[done] - arrival
    e2e = finish_s[done] - arrival
    multi = output > 1
    tpot = (e2e[multi] - ttft[multi]) / (output[multi] - 1)
    start = float(requests.arrival_s.min()) if len(requests) else 0.0
    duration = float(finish_s[done].max()) - start if done.any() else 0.0

    def per_s(amount: float) -> float:
        return float(amount / duration) if duration > 0 else 0.0

    met, meets = _slo_figures(slo, ttft, tpot, multi, len(requests), rec.rejected)
    input_tokens, output_tokens = int(requests.prompt_tokens[done].sum()), int(output.sum())
    return ServingReport(
        ttft_s=LatencyStats.of(ttft),
        tpot_s=LatencyStats.of(tpot),
        itl_s=LatencyStats.of_counts(*rec.itl_distribution()),
        e2e_s=LatencyStats.of(e2e),
        queue_s=LatencyStats.of(np.array(rec.first_scheduled_s)[done] - arrival),
        throughput_tokens_per_s=per_s(output_tokens),
        input_tokens_per_s=per_s(input_tokens),
        requests_per_s=per_s(int(done.sum())),
        goodput_requests_per_s=None if met is None else per_s(met),
        slo_attainment=None if met is None else (met / len(requests) if len(requests) else 0.0),
        meets_slo=meets,
        slo=slo,
        kv_cache_utilisation=Utilisation(
            per_s(rec.kv_block_seconds) / capacity_blocks, rec.kv_peak_blocks / capacity_blocks
        ),
        stage_utilisation=tuple(per_s(busy) for busy in rec.stage_busy_s),
        preemptions=rec.preemptions,
        requests=len(requests),
        completed=int(done.sum()),
        rejected=rec.rejected,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        duration_s=duration,
        iterations=rec.iterations,
        mean_batch_size=rec.batched_sequences / rec.iterations if rec.iterations else 0.0,
        prompt_busy_share=_share(rec.prompt_busy_s, float(sum(rec.stage_busy_s))),
        iterations_beside_another=rec.iterations_beside_another,
    )


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None
