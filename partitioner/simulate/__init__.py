"""Simulate a plan: latency, throughput, bottleneck and link loads from the one cost model.

What it reads: the plan and its ``target.spec``, never the model. Each
partition's ``compute_s`` and each transfer's ``time_s`` were made by the
target's `targets.cost.CostModel` at planning time; the simulators add them up
with the same `targets` formulas the planners use, so simulating a plan
reproduces the ``estimate`` it records (`estimate_differences` lists where not).

- GPU plans (`simulate_gpu` -> `PipelineReport`): partitions are pipeline
  stages in plan order, run with the plan's ``parallelism.overlap_transfers``;
  `targets.pipeline.pipeline_estimate` gives latency, period and bottleneck;
  the transfers give each device-to-device link's load, and with the
  tensor-parallel collectives each GPU's load per link class (`gpu_links`).
  `breakdown_lines` reads the planner's ``estimate.extra["time_breakdown"]``.
- Wafer plans (`simulate_wafer` -> `FabricReport`): partitions are regions of
  cores (``region``); transfers load fabric, inter-wafer and host links
  (`wafer_links`), the busiest links and the regions' compute set the period,
  and latency is the critical path through the partition DAG.
- LLM decode steps (``estimate.extra`` with ``llm_decode_step`` and
  ``batch``): tokens/s, seconds per token and $/token (`decode_figures`, from
  `targets.cost`) in ``report.decode``.

Both reports are a `SimulationReport`: what the plan's estimate records, and
``to_dict()`` for ``--json``.

Typical use::

    from partitioner.simulate import simulate_plan
    report = simulate_plan(plan)
    report.latency_s, report.throughput_per_s, report.bottleneck.where
"""

from __future__ import annotations

import math

from partitioner.plan import Plan
from partitioner.simulate.breakdown import breakdown_lines
from partitioner.simulate.common import (
    SimulateError,
    batches_in_flight,
    decode_figures,
    devices_in_use,
    replica_devices,
)
from partitioner.simulate.gpu import (
    DeviceLinkLoad,
    GpuLinkLoad,
    LinkClassLoad,
    PipelineReport,
    StageLoad,
    pipeline_bottleneck_where,
    simulate_gpu,
)
from partitioner.simulate.report import SimulationReport
from partitioner.simulate.wafer import FabricReport, RegionLoad, estimate_fields, simulate_wafer
from partitioner.simulate.wafer_links import LinkLoad
from targets.cost import CostModel
from targets.errors import TargetError
from targets.gpu import GpuTarget
from targets.loader import target_from_dict

__all__ = [
    "DeviceLinkLoad",
    "FabricReport",
    "GpuLinkLoad",
    "LinkClassLoad",
    "LinkLoad",
    "PipelineReport",
    "RegionLoad",
    "SimulateError",
    "SimulationReport",
    "StageLoad",
    "breakdown_lines",
    "decode_figures",
    "estimate_differences",
    "estimate_fields",
    "pipeline_bottleneck_where",
    "simulate_gpu",
    "simulate_plan",
    "simulate_wafer",
]


def simulate_plan(plan: Plan) -> SimulationReport:
    """Simulate a plan on the target its ``target.spec`` describes (rules in the module doc).

    Raises:
        SimulateError: The target spec is invalid, or the plan is inconsistent.
    """
    try:
        target = target_from_dict(plan.target.spec)
    except TargetError as err:
        raise SimulateError(f"the plan's target spec is invalid: {err}") from None
    report: SimulationReport
    if isinstance(target, GpuTarget):
        report = simulate_gpu(
            plan.partitions,
            plan.transfers,
            target,
            overlap_transfers=plan.parallelism.overlap_transfers,
            collectives=plan.collectives,
            replicas=plan.parallelism.dp,
        )
    else:
        report = simulate_wafer(plan.partitions, plan.transfers, target)
    extra = plan.estimate.extra
    batch = extra.get("batch")
    # A batch is a count of tokens; a hand-edited plan's negative one gets no figures.
    if extra.get("llm_decode_step") and isinstance(batch, int) and batch >= 0:
        devices = replica_devices(devices_in_use(plan.partitions), plan.parallelism.dp)
        cost = CostModel(target)
        in_flight = batches_in_flight(
            plan.partitions, batch, report.latency_s, report.throughput_per_s,
            plan.parallelism.dp,
        )  # fmt: skip
        figures = decode_figures(
            batch, report.latency_s, report.throughput_per_s, cost, devices, in_flight
        )
        report = report.with_decode(figures)
    return report


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def estimate_differences(report: SimulationReport, plan: Plan) -> list[str]:
    """Where the simulation and the plan's recorded estimate disagree (empty when they agree)."""
    recorded = plan.estimate
    out = []
    if not _same(report.latency_s, recorded.latency_s):
        out.append(f"latency {report.latency_s:.6g} s, the plan says {recorded.latency_s:.6g} s")
    if not _same(report.throughput_per_s, recorded.throughput_per_s):
        out.append(
            f"throughput {report.throughput_per_s:.6g}/s, "
            f"the plan says {recorded.throughput_per_s:.6g}/s"
        )
    simulated, said = report.bottleneck, recorded.bottleneck
    if (simulated.kind, simulated.where) != (said.kind, said.where):
        out.append(
            f"bottleneck {simulated.kind} ({simulated.where}), "
            f"the plan says {said.kind} ({said.where})"
        )
    return out
