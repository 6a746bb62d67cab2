"""The report of a fleet simulation: overall, per pool, per request class, per fault.

Overall and per pool, the figures are `ServingReport`'s (vLLM's definitions)
over the requests each served, with these readings for several engines:

- a request's latencies count from its original arrival, also when a fault
  moved it and it started again elsewhere;
- ``kv_cache_utilisation.mean`` is KV blocks held over the blocks all the
  engines have; ``.max`` is the fullest engine's peak;
- ``stage_utilisation`` is each stage's busy time over the run, averaged over
  the pool's engines (overall: only when every pool has the same stage count,
  else empty);
- overall, lost requests count among ``requests`` and as SLO misses.

SLOs: each request is held to its class's targets (the deployment's ``slo``
for its class, else the workload's). ``slo_attainment`` is the fraction of
requests meeting theirs one by one; ``meets_slo`` holds when, in every class,
p99 TTFT and p99 TPOT are within the class's targets and no request was
refused or lost. Without any target these are None.

Faults, each over its window ``[start_s, end_s)`` (to the last arrival when the
pool stays down):

- ``slo_violations``: requests arriving in the window that miss their SLO (lost
  ones included); ``moved_slo_violations``: the same among the requests the fault
  moved;
- ``recovery_s``: how long after the fault the fleet is back in SLO for a
  sustained stretch: the least ``r``, 0 or the time from the fault to an arrival
  after it, such that at least 99 % of the requests arriving in
  ``[start_s + r, start_s + r + recovery_window_s)`` meet their SLO (the
  window holding at least one arrival and ending by the last arrival); None when
  no such stretch exists (not recovered by the end of the run) or without SLOs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from partitioner.simulate.serving.fleet import FaultOutcome, FleetRun
from partitioner.simulate.serving.recorder import Recorder
from partitioner.simulate.serving.report import LatencyStats, Utilisation, build_report
from partitioner.simulate.serving.workload import Requests, Slo

__all__ = ["fleet_report", "recovery_s"]


class _Targets:
    """Each request's SLO and whether it met it (module doc)."""

    def __init__(self, run: FleetRun, slo: Slo | None, class_slos: Mapping[str, Slo]) -> None:
        requests, n = run.requests, len(run.requests)
        self.classes = requests.classes if requests.classes is not None else np.full(n, "")
        self.by_class = {c: class_slos.get(c, slo) for c in np.unique(self.classes).tolist()}
        self.slo = slo
        self.any = any(s is not None for s in self.by_class.values())
        ttft_max, tpot_max = np.full(n, np.inf), np.full(n, np.inf)
        for name, target in self.by_class.items():
            mine = self.classes == name
            if target is not None and target.ttft_s is not None:
                ttft_max[mine] = target.ttft_s
            if target is not None and target.tpot_s is not None:
                tpot_max[mine] = target.tpot_s
        output = requests.output_tokens
        self.ttft = run.first_token_s - requests.arrival_s
        e2e = run.finish_s - requests.arrival_s
        with np.errstate(invalid="ignore", divide="ignore"):
            self.tpot = np.where(output > 1, (e2e - self.ttft) / np.maximum(output - 1, 1), np.nan)
        done = ~np.isnan(run.finish_s)
        tpot_ok = (output == 1) | (self.tpot <= tpot_max)
        self.met = done & (self.ttft <= ttft_max) & tpot_ok
        self.done = done

    def p99_ok(self, mask: np.ndarray) -> bool:
        """Every class's p99s within its targets over ``mask``, with nothing refused or lost."""
        if not self.done[mask].all() or not mask.any():
            return False
        for name, target in self.by_class.items():
            mine = mask & (self.classes == name)
            if target is None or not mine.any():
                continue
            tpot = self.tpot[mine & ~np.isnan(self.tpot)]
            if target.ttft_s is not None and np.percentile(self.ttft[mine], 99) > target.ttft_s:
                return False
            if target.tpot_s is not None and tpot.size and np.percentile(tpot, 99) > target.tpot_s:
                return False
        return True

    def figures(self, mask: np.ndarray, duration_s: float) -> dict[str, Any]:
        if not self.any:
            return {"goodput_requests_per_s": None, "slo_attainment": None, "meets_slo": None}
        met, count = int(self.met[mask].sum()), int(mask.sum())
        return {
            "goodput_requests_per_s": met / duration_s if duration_s > 0 else 0.0,
            "slo_attainment": met / count if count else 0.0,
            "meets_slo": self.p99_ok(mask),
        }


def _served(
    run: FleetRun,
    mask: np.ndarray,
    recorders: Sequence[tuple[Recorder, int]],
    engines: int,
    capacity_blocks: int,
    targets: _Targets,
) -> dict[str, Any]:
    """`ServingReport` figures over the requests in ``mask``, served by ``recorders`` (each
    with its engine's KV blocks), ``engines`` engines holding ``capacity_blocks`` blocks at a
    time (module doc)."""
    r = run.requests
    chosen = Requests(r.arrival_s[mask], r.prompt_tokens[mask], r.output_tokens[mask])
    stage_counts = {len(rec.stage_busy_s) for rec, _ in recorders}
    stages = stage_counts.pop() if len(stage_counts) == 1 else 0
    merged = Recorder(len(chosen), stages)
    merged.first_scheduled_s = run.first_scheduled_s[mask].tolist()
    merged.first_token_s = run.first_token_s[mask].tolist()
    merged.finish_s = run.finish_s[mask].tolist()
    for rec, _ in recorders:
        merged.absorb(rec)
    merged.stage_busy_s = [busy / engines for busy in merged.stage_busy_s]
    report = build_report(merged, chosen, capacity_blocks, None)
    peak = max((rec.kv_peak_blocks / blocks for rec, blocks in recorders), default=0.0)
    kv = Utilisation(report.kv_cache_utilisation.mean, peak)
    doc = replace(report, kv_cache_utilisation=kv, slo=targets.slo).to_json()
    return doc | targets.figures(mask, report.duration_s)


def _class_figures(run: FleetRun, mask: np.ndarray, targets: _Targets, name: str) -> dict[str, Any]:
    r, lost = run.requests, run.pool_of < 0
    target = targets.by_class[name]
    served = run.pool_of[mask & ~lost]
    figures = targets.figures(mask, 0.0)
    del figures["goodput_requests_per_s"]
    return {
        "requests": int(mask.sum()),
        "completed": int((mask & targets.done).sum()),
        "lost": int((mask & lost).sum()),
        "restarted": int((mask & (run.moves > 0) & ~lost).sum()),
        "pools": {
            pool: int((served == k).sum())
            for k, pool in enumerate(run.pool_names)
            if (served == k).any()
        },
        "ttft_s": LatencyStats.of(targets.ttft[mask & targets.done]).to_json(),
        "tpot_s": LatencyStats.of(targets.tpot[mask & ~np.isnan(targets.tpot)]).to_json(),
        "e2e_s": LatencyStats.of((run.finish_s - r.arrival_s)[mask & targets.done]).to_json(),
        "queue_s": LatencyStats.of(
            (run.first_scheduled_s - r.arrival_s)[mask & targets.done]
        ).to_json(),
        "slo": None
        if target is None
        else {"ttft_p99_s": target.ttft_s, "tpot_p99_s": target.tpot_s},
        **figures,
    }


def recovery_s(
    arrival_s: np.ndarray, met: np.ndarray, start_s: float, window_s: float
) -> float | None:
    """The recovery time after a fault at ``start_s`` (module doc); None if never."""
    if arrival_s.size == 0:
        return None
    starts = np.concatenate(([start_s], arrival_s[arrival_s > start_s]))
    met_before = np.concatenate(([0], np.cumsum(met, dtype=np.int64)))
    low = np.searchsorted(arrival_s, starts, side="left")
    high = np.searchsorted(arrival_s, starts + window_s, side="left")
    count, kept = high - low, met_before[high] - met_before[low]
    ok = (count > 0) & (100 * kept >= 99 * count) & (starts + window_s <= arrival_s[-1])
    first = np.flatnonzero(ok)
    return float(starts[first[0]] - start_s) if first.size else None


def _fault_figures(
    run: FleetRun, outcome: FaultOutcome, targets: _Targets, window_s: float
) -> dict[str, Any]:
    fault, arrival = outcome.fault, run.requests.arrival_s
    end = fault.end_s
    inside = (arrival >= fault.start_s) & (arrival < (np.inf if end is None else end))
    moved = np.zeros(len(run.requests), dtype=bool)
    moved[list(outcome.moved)] = True
    return {
        "pool": fault.pool,
        "start_s": fault.start_s,
        "end_s": end,
        "moved_requests": outcome.moved_queued + outcome.moved_running,
        "moved_running": outcome.moved_running,
        "restarted_requests": outcome.restarted,
        "rerouted_arrivals": outcome.rerouted,
        "lost_requests": outcome.lost,
        "arrivals": int(inside.sum()),
        "slo_violations": int((inside & ~targets.met).sum()) if targets.any else None,
        "moved_slo_violations": int((moved & ~targets.met).sum()) if targets.any else None,
        "recovery_s": (
            recovery_s(arrival, targets.met, fault.start_s, window_s) if targets.any else None
        ),
        "recovery_window_s": window_s,
    }


def fleet_report(
    run: FleetRun,
    *,
    slo: Slo | None = None,
    class_slos: Mapping[str, Slo] | None = None,
    recovery_window_s: float = 10.0,
) -> dict[str, Any]:
    """The JSON-ready report of ``run`` (module doc), keys in a fixed order.

    Args:
        run: The simulation.
        slo: The workload's SLO (requests of a class without its own are held to it).
        class_slos: Targets per request class.
        recovery_window_s: The sustained stretch ``recovery_s`` asks for.
    """
    targets = _Targets(run, slo, class_slos or {})
    everyone = np.ones(len(run.requests), dtype=bool)
    engines, capacity = run.engines, run.capacity_blocks
    blocks = [[(rec, capacity[k]) for rec in recs] for k, recs in enumerate(run.recorders)]
    total_blocks = sum(n * c for n, c in zip(engines, capacity, strict=True))
    overall = _served(run, everyone, sum(blocks, []), sum(engines), total_blocks, targets)
    overall["lost_requests"] = int((run.pool_of < 0).sum())
    overall["restarted_requests"] = sum(outcome.restarted for outcome in run.faults)
    pools = {}
    for k, name in enumerate(run.pool_names):
        mine = run.pool_of == k
        figures = _served(run, mine, blocks[k], engines[k], engines[k] * capacity[k], targets)
        pools[name] = {"engines": engines[k], "routed_requests": int((run.routed_to == k).sum())}
        pools[name] |= figures
    classes = {}
    if run.requests.classes is not None:
        for name in targets.by_class:
            classes[name] = _class_figures(run, targets.classes == name, targets, name)
    return {
        "serving": overall,
        "pools": pools,
        "classes": classes,
        "faults": [_fault_figures(run, o, targets, recovery_window_s) for o in run.faults],
    }
