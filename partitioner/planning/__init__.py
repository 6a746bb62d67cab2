"""Planning: from an analysed graph and a target to a `Plan`.

One entry, `plan_model(graph, target, options)`, dispatches on the target's
kind: GPU targets get a pipeline (`planning.gpu`), wafer targets a floorplan
of core regions (`planning.wafer`). Options are typed per kind
(`GpuOptions`, `WaferOptions`): passing one kind's options for the other
kind's target is a `UsageError`. `planning.common` holds what both share: the
fit checks and the plan header.
"""

from __future__ import annotations

from collections.abc import Callable

from partitioner.errors import InfeasibleError, UsageError
from partitioner.planning.gpu.planner import PlanOutcome, plan_pipeline
from partitioner.planning.options import (
    GPU_SOLVERS,
    OBJECTIVES,
    WAFER_SOLVERS,
    GpuOptions,
    PlanOptions,
    WaferOptions,
)
from partitioner.planning.wafer.planner import WaferOutcome, plan_wafer
from passes.ir import Graph
from targets import GpuTarget, Target, WaferTarget

__all__ = [
    "GPU_SOLVERS",
    "OBJECTIVES",
    "WAFER_SOLVERS",
    "GpuOptions",
    "WaferOptions",
    "PlanOptions",
    "PlanOutcome",
    "WaferOutcome",
    "InfeasibleError",
    "UsageError",
    "options_class",
    "plan_model",
    "plan_pipeline",
    "plan_wafer",
]


def options_class(target: Target) -> type[GpuOptions] | type[WaferOptions]:
    """The options type that applies to ``target``'s kind."""
    return WaferOptions if isinstance(target, WaferTarget) else GpuOptions


def plan_model(
    graph: Graph,
    target: Target,
    options: PlanOptions | None = None,
    *,
    progress: Callable[[float, float], None] | None = None,
    announce: Callable[[str], None] | None = None,
) -> PlanOutcome | WaferOutcome:
    """Plan ``graph`` onto ``target`` (see the package docstring).

    Args:
        progress: called with (best objective s, bound s) as CP-SAT improves (GPU).
        announce: called with a one-line description of each long step as it starts.

    Raises:
        UsageError: ``options`` are for the other kind of target.
        InfeasibleError: the model does not fit.
    """
    wanted = options_class(target)
    options = options if options is not None else wanted()
    if not isinstance(options, wanted):
        raise UsageError(
            f"{type(options).__name__} are for {options.kind} targets, but {target.name} is a "
            f"{target.kind} target; use {wanted.__name__}"
        )
    if isinstance(target, GpuTarget):
        assert isinstance(options, GpuOptions)
        return plan_pipeline(graph, target, options, progress, announce)
    assert isinstance(options, WaferOptions)
    return plan_wafer(graph, target, options, announce)
