"""Rate sweep: the highest arrival rate whose report meets the SLO, by bisection.

Each probe simulates the same workload (same seed, so the same requests with
their gaps rescaled) at one rate; latency grows with the rate, so the rates
that meet the SLO form an interval starting at the lowest. The bisection is
geometric (each probe halves the ratio ``high / low``), so a wide bracket costs
few probes, and it stops when the bracket is within ``rel_tol``. Every probe is
kept, in rate order, for latency-against-throughput curves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from partitioner.errors import UsageError
from partitioner.simulate.serving.iteration import IterationCost, ServingConfig
from partitioner.simulate.serving.report import ServingReport
from partitioner.simulate.serving.simulator import simulate_serving
from partitioner.simulate.serving.workload import Workload

__all__ = ["Probe", "SweepResult", "max_rate_under_slo", "rate_runner"]


@dataclass(frozen=True)
class Probe:
    """One simulated rate."""

    rate_per_s: float
    report: ServingReport


@dataclass(frozen=True)
class SweepResult:
    """What a rate sweep found.

    Attributes:
        rate_per_s: The highest rate found to meet the SLO; None if even ``low`` fails.
        report: The report at that rate (None with it).
        probes: Every rate tried, ascending.
        bounded: False when ``high`` itself meets the SLO, so the true maximum may be higher.
    """

    rate_per_s: float | None
    report: ServingReport | None
    probes: tuple[Probe, ...]
    bounded: bool


def max_rate_under_slo(
    run: Callable[[float], ServingReport],
    low: float,
    high: float,
    *,
    rel_tol: float = 0.01,
    max_probes: int = 40,
) -> SweepResult:
    """Bisect on the arrival rate for the highest one whose report ``meets_slo``.

    Args:
        run: Simulates at a rate (requests per second); give it a fixed seed.
        low: A rate expected to meet the SLO.
        high: A rate expected to miss it.
        rel_tol: Stop when ``high / low - 1 <= rel_tol``; the answer is then within
            ``rel_tol`` of the threshold.
        max_probes: Most simulations in all.

    Raises:
        UsageError: The bracket is invalid, or a report has no SLO to meet.
    """
    if not (0 < low < high < math.inf) or not (0 < rel_tol < 1):
        raise UsageError(
            f"rate sweep: need 0 < low < high and 0 < rel_tol < 1, got low={low!r}, "
            f"high={high!r}, rel_tol={rel_tol!r}"
        )
    probes: dict[float, ServingReport] = {}

    def meets(rate: float) -> bool:
        report = run(rate)
        if report.meets_slo is None:
            raise UsageError("rate sweep: the workload has no SLO to meet (add slo: to it)")
        probes[rate] = report
        return report.meets_slo

    def result(rate: float | None, bounded: bool) -> SweepResult:
        ordered = tuple(Probe(r, probes[r]) for r in sorted(probes))
        return SweepResult(rate, None if rate is None else probes[rate], ordered, bounded)

    if not meets(low):
        return result(None, True)
    if meets(high):
        return result(high, False)
    good, bad = low, high
    while bad / good - 1 > rel_tol and len(probes) < max_probes:
        middle = math.sqrt(good * bad)
        if meets(middle):
            good = middle
        else:
            bad = middle
    return result(good, True)


def rate_runner(
    workload: Workload, cost: IterationCost, config: ServingConfig
) -> Callable[[float], ServingReport]:
    """``run`` for `max_rate_under_slo`: ``workload`` at each rate, same seed every time."""

    def run(rate_per_s: float) -> ServingReport:
        return simulate_serving(workload.with_rate(rate_per_s), cost, config)

    return run
