"""`compare`'s search for the parallelism that serves best on a GPU target.

The planner picks tp × pp for one stream's latency. Serving at a load is a
different question: replicas of a smaller tensor-parallel group each make fewer
collective calls per step and batch their own share of the requests, so they
may carry more tokens per second at the same SLO. For each replica count that
divides the target's GPUs, the planner lays out one replica (tp × pp searched on
its share, as ``partition --dp N`` does), the workload is served on it, and the
shape that serves most is kept:

- with an SLO: the highest arrival rate meeting it, then the most tokens/s;
- offline (every request at once): the most tokens/s;
- otherwise: the lowest mean end-to-end latency at the workload's own load.

Replica counts whose replica cannot hold the model are recorded with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from partitioner.errors import InfeasibleError
from partitioner.plan import Plan
from partitioner.planning import GpuOptions

__all__ = ["replica_counts", "shape_score", "best_shape"]

Serve = Callable[[Plan], dict[str, Any]]
"""Serves the workload on a plan: `commands.serving.serve`'s document."""
PlanWith = Callable[[GpuOptions], Plan]
"""Plans the model with the options given (raises InfeasibleError when it does not fit)."""


def replica_counts(num_devices: int) -> list[int]:
    """Every replica count whose replicas share ``num_devices`` GPUs evenly, fewest first."""
    return [dp for dp in range(1, num_devices + 1) if num_devices % dp == 0]


def shape_score(doc: dict[str, Any], offline: bool = False) -> tuple[float, float]:
    """Larger is better: (max rate at the SLO, tokens/s) when swept, (tokens/s, 0) offline,
    else (-mean E2E, tokens/s). Offline, each replica serves every request (one replica is
    simulated for all, `commands.serving`), so latencies of different replica counts are
    of different amounts of work; the system's tokens/s compare."""
    figures = doc.get("serving") or {}
    tokens_per_s = float(figures.get("throughput_tokens_per_s") or 0.0)
    if offline and "max_rate_per_s" not in doc:
        return (tokens_per_s, 0.0)
    if "max_rate_per_s" in doc:
        rate = doc["max_rate_per_s"]
        return (-1.0 if rate is None else float(rate), tokens_per_s)
    mean_s = (figures.get("e2e_s") or {}).get("mean")
    return (float("-inf") if mean_s is None else -float(mean_s), tokens_per_s)


def _tried(dp: int, plan: Plan | None, doc: dict[str, Any] | None, reason: str) -> dict[str, Any]:
    """One candidate's line in the row: its degrees and what it served, or why not."""
    if plan is None or doc is None:
        return {"dp": dp, "fits": False, "reason": reason}
    par = plan.parallelism
    figures = doc.get("serving") or {}
    return {
        "dp": dp, "tp": par.tp, "pp": par.pp, "fits": True,
        "max_rate_per_s": doc.get("max_rate_per_s"),
        "throughput_tokens_per_s": figures.get("throughput_tokens_per_s"),
        "e2e_mean_s": (figures.get("e2e_s") or {}).get("mean"),
    }  # fmt: skip


def best_shape(
    options: GpuOptions,
    num_devices: int,
    plan_with: PlanWith,
    serve: Serve,
    say: Callable[[str], None],
    offline: bool = False,
) -> tuple[Plan, dict[str, Any], list[dict[str, Any]]]:
    """Plan and serve each replica count; the best plan, its serving document, and every try.

    Raises:
        InfeasibleError: no replica count fits (the reason for the largest replica).
    """
    best: tuple[Plan, dict[str, Any]] | None = None
    tried: list[dict[str, Any]] = []
    last_error: InfeasibleError | None = None
    for dp in replica_counts(num_devices):
        share = num_devices // dp
        say(f"{_plural(dp, 'replica')} of {_plural(share, 'GPU')}: planning ...")
        try:
            plan = plan_with(dataclasses.replace(options, devices=num_devices, dp=dp))
        except InfeasibleError as err:
            last_error = last_error or err
            tried.append(_tried(dp, None, None, str(err)))
            continue
        par = plan.parallelism
        say(f"{_plural(dp, 'replica')} (tp{par.tp} pp{par.pp}): serving ...")
        doc = serve(plan)
        tried.append(_tried(dp, plan, doc, ""))
        if best is None or shape_score(doc, offline) > shape_score(best[1], offline):
            best = (plan, doc)
    if best is None:
        assert last_error is not None
        raise last_error
    return best[0], best[1], tried


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"
