"""Simulate a plan: latency, throughput, bottleneck and link loads from the same cost model.

The simulator reads a plan and its target spec, never the model: each
partition's ``compute_s`` and each transfer's ``time_s`` were made by the
target's `CostModel` at planning time, and `targets` adds them up
(`pipeline_estimate`, fabric geometry), so ``partition simulate`` on a plan
reproduces the estimate the planner wrote.

Typical use::

    from partitioner.simulate import simulate_plan
    report = simulate_plan(plan)        # PipelineReport (GPU) or FabricReport (wafer)
    report.latency_s, report.throughput_per_s, report.bottleneck_where
"""

from __future__ import annotations

import dataclasses
import math

from partitioner.plan import Plan
from partitioner.simulate.common import SimulateError, decode_figures, devices_in_use
from partitioner.simulate.gpu import (
    DeviceLinkLoad,
    LinkClassLoad,
    PipelineReport,
    StageLoad,
    pipeline_bottleneck_where,
    simulate_gpu,
)
from partitioner.simulate.wafer import (
    FabricReport,
    LinkLoad,
    RegionLoad,
    estimate_fields,
    simulate_wafer,
)
from targets.cost import CostModel
from targets.errors import TargetError
from targets.gpu import GpuTarget
from targets.loader import target_from_dict

__all__ = [
    "DeviceLinkLoad",
    "FabricReport",
    "LinkClassLoad",
    "LinkLoad",
    "PipelineReport",
    "RegionLoad",
    "SimulateError",
    "StageLoad",
    "decode_figures",
    "estimate_differences",
    "estimate_fields",
    "pipeline_bottleneck_where",
    "simulate_gpu",
    "simulate_plan",
    "simulate_wafer",
]


def simulate_plan(plan: Plan) -> PipelineReport | FabricReport:
    """Simulate a plan on the target its ``target.spec`` describes.

    GPU plans run with the ``overlap_transfers`` the plan records (default
    False). Plans of LLM decode steps (``estimate.llm_decode_step`` with
    ``batch``) also get tokens/s, seconds per token and $/token when the
    target has prices, in ``report.decode``.

    Raises:
        SimulateError: The target spec is invalid, or the plan is inconsistent.
    """
    try:
        target = target_from_dict(plan.target.spec)
    except TargetError as err:
        raise SimulateError(f"the plan's target spec is invalid: {err}") from None
    if isinstance(target, GpuTarget):
        overlap = bool(plan.estimate.extra.get("overlap_transfers", False))
        report: PipelineReport | FabricReport = simulate_gpu(
            plan.partitions, plan.transfers, target, overlap_transfers=overlap
        )
    else:
        report = simulate_wafer(plan.partitions, plan.transfers, target)
    extra = plan.estimate.extra
    if extra.get("llm_decode_step") and isinstance(extra.get("batch"), int):
        figures = decode_figures(
            extra["batch"],
            report.latency_s,
            report.throughput_per_s,
            CostModel(target),
            devices_in_use(plan.partitions),
        )
        report = dataclasses.replace(report, decode=figures)
    return report


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def estimate_differences(report: PipelineReport | FabricReport, plan: Plan) -> list[str]:
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
    simulated = (report.bottleneck_kind, report.bottleneck_where)
    if simulated != (recorded.bottleneck.kind, recorded.bottleneck.where):
        out.append(
            f"bottleneck {simulated[0]} ({simulated[1]}), the plan says "
            f"{recorded.bottleneck.kind} ({recorded.bottleneck.where})"
        )
    return out
