"""Planning a model onto a GPU target: checks, device count, solver, plan.

1. Check the model can fit at all (`planning.common`), choose the device count.
2. Build the pipeline problem on coarse blocks (`planning.gpu.problem`).
3. Solve it: CP-SAT warm-started from the exact chain DP, or a baseline
   (`partitioner.solvers`).
4. Lay the answer out exactly (`planning.gpu.layout`) and assemble the plan.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from partitioner.errors import InfeasibleError, UsageError
from partitioner.plan import Candidate, Parallelism, Plan, SolverInfo
from partitioner.planning.common import (
    assemble_plan,
    check_model_fits,
    check_total_fits,
    device_count,
    unsized_extra,
)
from partitioner.planning.gpu.layout import (
    PipelineLayout,
    estimate_record,
    layout_pipeline,
    llm_figures,
)
from partitioner.planning.gpu.problem import PipelineSetup, build_pipeline_problem
from partitioner.planning.options import GPU_SOLVERS, GpuOptions
from partitioner.solvers.baselines import greedy_partition, params_partition, uniform_partition
from partitioner.solvers.cpsat_pipeline import cpsat_partition
from partitioner.solvers.dp import dp_partition
from partitioner.solvers.problem import PipelineProblem, check_assignment, lower_bound_s, score
from partitioner.units import human_bytes
from passes.analysis.costs import CostReport, node_costs
from passes.ir import Graph
from targets import GpuTarget
from targets.cost import CostModel, GpuCostModel

__all__ = ["GPU_SOLVERS", "PlanOutcome", "plan_pipeline"]

log = logging.getLogger(__name__)

DEFAULT_TIME_LIMIT_S = 30.0
"""CP-SAT budget for GPU pipelines, in deterministic seconds."""

Progress = Callable[[float, float], None]
Announce = Callable[[str], None]


@dataclass(frozen=True)
class PlanOutcome:
    plan: Plan
    setup: PipelineSetup
    layout: PipelineLayout
    wall_s: float
    interrupted: bool
    devices_auto: bool


@dataclass(frozen=True)
class _Answer:
    """A solver's stage per block, how sure it is, and what it cost."""

    stage_of: list[int]
    status: str
    bound_s: float = 0.0
    effort_s: float = 0.0
    interrupted: bool = False


def _setup(
    graph: Graph, costs: CostReport, cost_model: GpuCostModel, k: int, options: GpuOptions
) -> PipelineSetup:
    return build_pipeline_problem(
        graph,
        costs,
        cost_model,
        list(range(k)),
        objective=options.objective,
        microbatches_in_flight=options.microbatches_in_flight,
        overlap_transfers=options.overlap_transfers,
        target_blocks=options.target_blocks,
    )


def _fewest_devices(
    graph: Graph, costs: CostReport, cost_model: GpuCostModel, options: GpuOptions
) -> int:
    """The smallest device count for which the exact DP finds a split that fits."""
    target = cost_model.target
    start = max(1, math.ceil(costs.param_bytes / cost_model.capacity_bytes(0)))
    for k in range(start, target.num_devices + 1):
        setup = _setup(graph, costs, cost_model, k, options)
        if setup.problem.num_blocks >= k and dp_partition(setup.problem) is not None:
            return k
    raise InfeasibleError(
        f"no split of the model fits on all {target.num_devices} devices of {target.name} "
        f"(parameters {human_bytes(costs.param_bytes)}, activations and buffers on top); "
        "use a target with more or larger devices"
    )


def _no_answer(blocks: int, stages: int, status: str, options: GpuOptions) -> InfeasibleError:
    """Tell a proof that no split fits apart from a search that ran out of time."""
    if status == "INFEASIBLE":
        return InfeasibleError(
            f"proven infeasible: no split of the model's {blocks} blocks into {stages} stages fits "
            "the devices' memory (parameters, activations and buffers); use smaller --dim values, "
            "more devices, or devices with more memory"
        )
    return InfeasibleError(
        f"no plan found within --time-limit {options.time_limit_s:g} s, and none is proven "
        "impossible; give CP-SAT more time (e.g. --time-limit 120) or more devices"
    )


_BASELINES: dict[str, Callable[[PipelineProblem], tuple[int, ...] | list[int] | None]] = {
    "dp": dp_partition,
    "greedy": greedy_partition,
    "params": params_partition,
    "uniform": uniform_partition,
}
"""The closed-form solvers: one answer each, no search."""


def _solve(
    problem: PipelineProblem, options: GpuOptions, progress: Progress | None, say: Announce
) -> _Answer:
    """Run the chosen solver; CP-SAT starts from the DP's answer."""
    k = problem.num_stages
    hint = dp_partition(problem)
    if options.solver != "cpsat":
        chosen = hint if options.solver == "dp" else _BASELINES[options.solver](problem)
        if chosen is None:
            raise InfeasibleError(
                f"the {options.solver} solver found no split of {problem.num_blocks} blocks into {k} stages "
                "that fits memory; try --solver cpsat, or more devices"
            )
        # The DP is optimal among splits contiguous in one topological order, not over
        # every DAG split, so only CP-SAT's status can say OPTIMAL.
        return _Answer(list(chosen), "HEURISTIC")
    say(
        f"solving with CP-SAT: {problem.num_blocks} blocks on {k} stages, up to "
        f"{options.time_limit_s:g} deterministic s (Ctrl-C stops and keeps the best plan)"
    )
    result = cpsat_partition(
        problem, hint=hint, time_limit_s=options.time_limit_s, seed=options.seed, progress=progress
    )
    if result.stage_of is None:
        raise _no_answer(problem.num_blocks, k, result.status, options)
    return _Answer(
        list(result.stage_of),
        result.status,
        result.bound_s,
        result.deterministic_s,
        result.interrupted,
    )


def _check_fits(layout: PipelineLayout, solver: str) -> None:
    """A baseline may split without looking at memory: refuse what it overfills."""
    over = [p for p in layout.partitions if p.memory_bytes > p.capacity_bytes]
    if over:
        p = over[0]
        raise InfeasibleError(
            f"the {solver} split puts {human_bytes(p.memory_bytes)} on stage {p.stage} "
            f"(device {p.devices[0]}), more than its {human_bytes(p.capacity_bytes)}; use --solver cpsat or dp, "
            "or more devices"
        )


def _solver_info(problem: PipelineProblem, answer: _Answer, options: GpuOptions) -> SolverInfo:
    """Status, objective and a bound no split can beat (CP-SAT's or the problem's own)."""
    objective_s = score(problem, answer.stage_of).objective_s(options.objective)
    bound_s = min(max(answer.bound_s, lower_bound_s(problem)), objective_s)
    gap = (objective_s - bound_s) / objective_s if objective_s > 0 else 0.0
    return SolverInfo(
        name=options.solver,
        status=answer.status,
        objective_s=objective_s,
        bound_s=bound_s,
        gap=max(gap, 0.0),
        effort_s=round(answer.effort_s, 6),
        seed=options.seed,
        time_limit_s=options.time_limit_s,  # type: ignore[arg-type]
        candidates=(Candidate(1, problem.num_stages, 1, answer.status, objective_s, bound_s),),
    )


def _stage_count(
    graph: Graph, costs: CostReport, cost_model: GpuCostModel, options: GpuOptions, say: Announce
) -> tuple[int, bool]:
    """How many stages: the requested count, or the fewest devices that fit (auto)."""
    k = device_count(options, cost_model.target)
    check_total_fits(costs, cost_model, cost_model.target.num_devices if k is None else k)
    if k is not None:
        return k, False
    say("finding the fewest devices that fit")
    return _fewest_devices(graph, costs, cost_model, options), True


def _assemble(
    graph: Graph,
    costs: CostReport,
    cost_model: GpuCostModel,
    setup: PipelineSetup,
    options: GpuOptions,
    answer: _Answer,
    layout: PipelineLayout,
) -> Plan:
    """The plan of a laid-out answer: estimate with decode figures, parallelism, header."""
    k = setup.problem.num_stages
    extra = llm_figures(graph, layout.estimate, cost_model, setup.devices)
    extra.update(unsized_extra(graph, layout.transfers))
    extra["devices_used"] = k
    extra["coarsening"] = {
        "blocks": setup.blocks.report.num_blocks,
        "runtime_nodes": setup.blocks.report.num_runtime_nodes,
    }
    parallelism = Parallelism(
        tp=1,
        pp=k,
        dp=1,
        microbatches=options.microbatches_in_flight,
        overlap_transfers=options.overlap_transfers,
        objective=options.objective,
    )
    return assemble_plan(
        graph,
        costs,
        target=cost_model.target,
        options=options,
        solver=_solver_info(setup.problem, answer, options),
        parallelism=parallelism,
        partitions=layout.partitions,
        transfers=layout.transfers,
        estimate=estimate_record(layout, extra),
    )


def plan_pipeline(
    graph: Graph,
    target: GpuTarget,
    options: GpuOptions | None = None,
    progress: Progress | None = None,
    announce: Announce | None = None,
) -> PlanOutcome:
    """Plan ``graph`` as a pipeline over the target's GPUs.

    Args:
        graph: the loaded model.
        target: the GPU target.
        options: solver, devices, objective, limits (checked when built).
        progress: called with (best objective s, bound s) as CP-SAT improves.
        announce: called with a one-line description of each long step as it starts.
    """
    say = announce or (lambda message: None)
    options = options or GpuOptions()
    if options.time_limit_s is None:
        options = dataclasses.replace(options, time_limit_s=DEFAULT_TIME_LIMIT_S)
    started = time.perf_counter()
    cost_model = CostModel(target)
    assert isinstance(cost_model, GpuCostModel)
    costs = node_costs(graph)
    check_model_fits(graph, costs, cost_model, "device")
    k, auto = _stage_count(graph, costs, cost_model, options, say)
    setup = _setup(graph, costs, cost_model, k, options)
    problem = setup.problem
    if problem.num_blocks < k:
        raise UsageError(
            f"the model has only {problem.num_blocks} runtime blocks for {k} stages; use --devices {problem.num_blocks} or fewer"
        )
    log.info("pipeline problem: %d blocks on %d stages", problem.num_blocks, k)
    answer = _solve(problem, options, progress, say)
    problem_error = check_assignment(problem, answer.stage_of)
    if problem_error is not None:
        raise AssertionError(f"solver {options.solver} returned an invalid answer: {problem_error}")
    layout = layout_pipeline(graph, costs, cost_model, setup, answer.stage_of)
    _check_fits(layout, options.solver)
    plan = _assemble(graph, costs, cost_model, setup, options, answer, layout)
    wall_s = time.perf_counter() - started
    return PlanOutcome(plan, setup, layout, wall_s, answer.interrupted, auto)
