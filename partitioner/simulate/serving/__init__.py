"""Request-level serving simulation: arrivals, continuous batching, KV cache, pipelines.

A discrete-event simulation of one serving engine (vLLM-style iteration-level
continuous batching with chunked prefill, paged KV cache, preemption by
recompute, pipeline stages in flight at once), priced iteration by iteration
by an `IterationCost`, and reported with vLLM ``bench serve``'s metrics.

Typical use::

    from partitioner.simulate.serving import ServingConfig, load_workload, simulate_serving
    workload = load_workload("chat")                 # or a path to a YAML file
    report = simulate_serving(workload, cost, ServingConfig(kv_capacity_tokens=500_000))
    report.ttft_s.p99, report.throughput_tokens_per_s, report.to_json()

    from partitioner.simulate.serving import max_rate_under_slo, rate_runner
    sweep = max_rate_under_slo(rate_runner(workload, cost, config), low=0.5, high=64)

Several pools of engines behind a router, with pools failing mid-run::

    from partitioner.simulate.serving import Fault, fleet_report, load_deployment, simulate_fleet
    run = simulate_fleet(requests, pools, deployment.routing, fallback=deployment.fallback,
                         faults=[Fault("wafer", 30.0, 20.0)])
    fleet_report(run, slo=workload.slo)["faults"][0]["recovery_s"]

Modules: `iteration` (the cost interface and config), `workload` and
`workload_file` (requests and their file format), `engine` and `decode_run`
(the event loop), `report` (metrics), `sweep` (rate bisection), `deployment`
(pools and routing, as a file a router could read), `routing` (the policies),
`fleet` (pools on one clock, faults) and `fleet_report` (its figures).
"""

from __future__ import annotations

from partitioner.simulate.serving.deployment import Deployment, Fault, PoolSpec, load_deployment
from partitioner.simulate.serving.fleet import FleetPool, FleetRun, simulate_fleet
from partitioner.simulate.serving.fleet_report import fleet_report
from partitioner.simulate.serving.iteration import IterationCost, IterationShape, ServingConfig
from partitioner.simulate.serving.lengths import (
    FixedLength,
    LengthSpec,
    LognormalLength,
    NormalLength,
    UniformLength,
)
from partitioner.simulate.serving.report import LatencyStats, ServingReport, Utilisation
from partitioner.simulate.serving.simulator import simulate_requests, simulate_serving
from partitioner.simulate.serving.sweep import Probe, SweepResult, max_rate_under_slo, rate_runner
from partitioner.simulate.serving.workload import (
    Arrivals,
    Requests,
    Slo,
    Workload,
    workload_from_args,
)
from partitioner.simulate.serving.workload_file import bundled_workloads, load_workload

__all__ = [
    "Arrivals",
    "Deployment",
    "Fault",
    "FleetPool",
    "FleetRun",
    "PoolSpec",
    "FixedLength",
    "IterationCost",
    "IterationShape",
    "LatencyStats",
    "LengthSpec",
    "LognormalLength",
    "NormalLength",
    "Probe",
    "Requests",
    "ServingConfig",
    "ServingReport",
    "Slo",
    "SweepResult",
    "UniformLength",
    "Utilisation",
    "Workload",
    "bundled_workloads",
    "fleet_report",
    "load_deployment",
    "load_workload",
    "max_rate_under_slo",
    "rate_runner",
    "simulate_fleet",
    "simulate_requests",
    "simulate_serving",
    "workload_from_args",
]
