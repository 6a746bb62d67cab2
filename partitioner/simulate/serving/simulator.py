"""Entry points: simulate a workload, or concrete requests, on one serving engine."""

from __future__ import annotations

from collections.abc import Callable

from partitioner.simulate.serving.engine import Engine
from partitioner.simulate.serving.iteration import IterationCost, ServingConfig
from partitioner.simulate.serving.report import ServingReport, build_report
from partitioner.simulate.serving.workload import Requests, Slo, Workload

__all__ = ["simulate_requests", "simulate_serving"]


def simulate_requests(
    requests: Requests,
    cost: IterationCost,
    config: ServingConfig,
    *,
    slo: Slo | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ServingReport:
    """Serve ``requests`` on one engine priced by ``cost`` (rules in `engine`'s doc).

    Args:
        requests: The requests, in arrival order.
        cost: Prices each iteration, per pipeline stage.
        config: The engine's limits and KV capacity (``config.seed`` is not used here).
        slo: Latency targets to check, if any.
        progress: Called with (requests finished, requests) about a hundred times a run.

    Raises:
        UsageError: The cost model's stage count or a stage time is invalid.
    """
    engine = Engine(requests, cost, config)
    if progress is not None:
        total = len(requests.arrival_s)
        engine.on_progress = lambda finished: progress(finished, total)
    return build_report(engine.run(), requests, config.kv_capacity_blocks, slo)


def simulate_serving(
    workload: Workload,
    cost: IterationCost,
    config: ServingConfig,
    *,
    slo: Slo | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ServingReport:
    """Draw ``workload``'s requests (``config.seed`` overrides its seed) and serve them.

    ``slo`` overrides the workload's own targets when given; ``progress`` as in
    `simulate_requests`.
    """
    requests = workload.sample(config.seed)
    slo = workload.slo if slo is None else slo
    return simulate_requests(requests, cost, config, slo=slo, progress=progress)
