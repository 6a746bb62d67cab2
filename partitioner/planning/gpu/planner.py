"""Planning a model onto a GPU target: checks, device count, solver, plan.

Everything user-fixable surfaces as an `InfeasibleError` or `UsageError` with
one line that says what is wrong, the numbers involved and what to do.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from partitioner import __version__
from partitioner.errors import UsageError
from partitioner.gpu_plan import (
    PipelineLayout,
    estimate_record,
    layout_pipeline,
    llm_figures,
    unsized_extra,
)
from partitioner.pipeline import PipelineSetup, build_pipeline_problem
from partitioner.plan import ModelInfo, Plan, Provenance, SolverInfo, TargetInfo
from partitioner.solvers.baselines import greedy_partition, params_partition, uniform_partition
from partitioner.solvers.cpsat_pipeline import cpsat_partition
from partitioner.solvers.dp import dp_partition
from partitioner.solvers.problem import check_assignment, lower_bound_s, score
from partitioner.units import human_bytes
from passes.analysis.costs import CostReport, node_costs
from passes.ir import Graph, Tensor
from targets import GpuTarget, WaferTarget
from targets.cost import CostModel, GpuCostModel
from targets.errors import PartitionError

__all__ = [
    "InfeasibleError",
    "UsageError",
    "PlanOptions",
    "PlanOutcome",
    "PIPELINE_SOLVERS",
    "plan_pipeline",
    "model_info",
    "target_info",
    "check_model_fits",
    "check_total_fits",
    "device_count",
]

PIPELINE_SOLVERS = ("cpsat", "dp", "greedy", "params", "uniform")
DEFAULT_TIME_LIMIT_S = 30.0
"""CP-SAT budget for GPU pipelines, in deterministic seconds."""


class InfeasibleError(PartitionError):
    """The model cannot be placed on the devices given."""


Progress = Callable[[float, float], None]


@dataclass(frozen=True)
class PlanOptions:
    devices: int | str | None = None  # None: all; "auto": fewest that fit
    solver: str = "cpsat"
    objective: str = "throughput"
    time_limit_s: float | None = None  # None: the default of the target's planner
    seed: int = 0
    microbatches_in_flight: int = 1
    overlap_transfers: bool = False
    target_blocks: int | None = None
    command: str = ""
    regions_per_wafer: int | None = None  # wafer targets: regions (blocks) per wafer
    tile_cores: int | None = None  # wafer targets: floorplanning tile side, in cores


@dataclass(frozen=True)
class PlanOutcome:
    plan: Plan
    setup: PipelineSetup
    layout: PipelineLayout
    wall_s: float
    interrupted: bool
    devices_auto: bool


def model_info(graph: Graph, costs: CostReport) -> ModelInfo:
    return ModelInfo(
        path=str(graph.path) if graph.path else "",
        sha256=graph.sha256 or "",
        opset=graph.opset,
        num_nodes=graph.num_nodes,
        param_bytes=costs.param_bytes,
        flops=costs.total_flops,
        dims=dict(graph.dims),
    )


def target_info(target) -> TargetInfo:  # noqa: ANN001 - GpuTarget | WaferTarget
    return TargetInfo(
        name=target.name, kind=target.kind, sha256=target.sha256, spec=target.to_dict()
    )


def check_runtime_work(graph: Graph) -> None:
    """Some node runs at inference time; a model that folds entirely into constants has no plan."""
    if graph.num_nodes == 0:
        raise InfeasibleError("the model has no nodes: there is nothing to plan")
    if not any(not node.folded for node in graph.nodes):
        raise InfeasibleError(
            f"the model has nothing to run on devices: all {graph.num_nodes} of its nodes "
            "compute constants, folded once at load time (its outputs do not depend on its "
            "inputs); check that the export kept the model's inputs"
        )


def check_nodes_fit(graph: Graph, costs: CostReport, cost: CostModel, noun: str = "device") -> None:
    """No single node needs more parameter memory than the largest device (or wafer) has."""
    largest_device = max(cost.capacity_bytes(d) for d in range(cost.target.num_devices))
    for node, c in zip(graph.nodes, costs.nodes, strict=True):
        if c.param_bytes > largest_device:
            raise InfeasibleError(
                f"node {node.index} '{node.name}' ({node.op_type}) alone needs {human_bytes(c.param_bytes)} "
                f"of parameters, more than one {noun} holds ({human_bytes(largest_device)}); "
                f"split that op in the model or use {noun}s with more memory"
            )


def _runtime_tensors(graph: Graph) -> list[Tensor]:
    """Inputs and activations some device must hold whole (parameters: `check_nodes_fit`)."""
    return [
        t
        for t in graph.iter_tensors()
        if t.is_static
        and (t.kind == "input" or (t.kind == "activation" and not graph.nodes[t.producer].folded))
    ]


def check_tensors_fit(graph: Graph, cost: CostModel, noun: str = "device") -> None:
    """No input or activation is larger than the largest device: a tensor is never split."""
    largest_device = max(cost.capacity_bytes(d) for d in range(cost.target.num_devices))
    biggest = max(_runtime_tensors(graph), key=lambda t: t.nbytes, default=None)
    if biggest is not None and biggest.nbytes > largest_device:
        shape = "×".join(str(d) for d in biggest.shape or ())  # type: ignore[union-attr]
        raise InfeasibleError(
            f"tensor '{biggest.name}' ({biggest.dtype or 'unknown type'} [{shape}]) alone needs "
            f"{human_bytes(biggest.nbytes)}, more than one {noun} holds "
            f"({human_bytes(largest_device)}); check the model's declared shapes, or give "
            "smaller --dim values"
        )


def check_model_fits(graph: Graph, costs: CostReport, cost: CostModel, noun: str) -> None:
    """The checks before any split: runtime work exists, and no node or tensor outgrows a device."""
    check_runtime_work(graph)
    check_nodes_fit(graph, costs, cost, noun)
    check_tensors_fit(graph, cost, noun)


def check_total_fits(
    costs: CostReport, cost: CostModel, devices: int, noun: str = "device"
) -> None:
    """The parameters fit the first ``devices`` devices together; else say how many are needed."""
    capacity = sum(cost.capacity_bytes(d) for d in range(devices))
    if costs.param_bytes > capacity:
        per_device = cost.capacity_bytes(0)
        minimum = math.ceil(costs.param_bytes / per_device)
        raise InfeasibleError(
            f"the model's parameters need {human_bytes(costs.param_bytes)} but {devices} {noun}(s) of "
            f"{cost.target.name} hold {human_bytes(capacity)}; it needs at least {minimum} {noun}s "
            f"(use a target with {minimum} or more, with --devices auto)"
        )


def device_count(options: PlanOptions, target: GpuTarget | WaferTarget) -> int | None:
    """The number of devices to use: all, a given count (checked), or None for 'auto'."""
    if options.devices in (None, "all"):
        return target.num_devices
    if options.devices == "auto":
        return None
    count = int(options.devices)  # type: ignore[arg-type]
    if not 1 <= count <= target.num_devices:
        raise UsageError(
            f"--devices {count}: target {target.name} has {target.num_devices} devices; "
            f"use 1..{target.num_devices} or auto"
        )
    return count


def _setup(
    graph: Graph, costs: CostReport, cost: GpuCostModel, k: int, options: PlanOptions
) -> PipelineSetup:
    return build_pipeline_problem(
        graph,
        costs,
        cost,
        list(range(k)),
        objective=options.objective,
        microbatches_in_flight=options.microbatches_in_flight,
        overlap_transfers=options.overlap_transfers,
        target_blocks=options.target_blocks,
    )


def _fewest_devices(
    graph: Graph, costs: CostReport, cost: GpuCostModel, options: PlanOptions
) -> int:
    """The smallest device count for which the exact DP finds a split that fits."""
    target = cost.target
    start = max(1, math.ceil(costs.param_bytes / cost.capacity_bytes(0)))
    for k in range(start, target.num_devices + 1):
        setup = _setup(graph, costs, cost, k, options)
        if setup.problem.num_blocks >= k and dp_partition(setup.problem) is not None:
            return k
    raise InfeasibleError(
        f"no split of the model fits on all {target.num_devices} devices of {target.name} "
        f"(parameters {human_bytes(costs.param_bytes)}, activations and buffers on top); "
        "use a target with more or larger devices"
    )


def _no_answer(blocks: int, stages: int, status: str, options: PlanOptions) -> InfeasibleError:
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


def plan_pipeline(
    graph: Graph,
    target: GpuTarget,
    options: PlanOptions,
    progress: Progress | None = None,
    announce: Callable[[str], None] | None = None,
) -> PlanOutcome:
    """Plan ``graph`` as a pipeline over the target's GPUs.

    Args:
        graph: the loaded model.
        target: the GPU target.
        options: solver, devices, objective, limits.
        progress: called with (best objective s, bound s) as CP-SAT improves.
        announce: called with a one-line description of each long step as it starts.
    """
    say = announce or (lambda message: None)
    if options.solver not in PIPELINE_SOLVERS:
        raise UsageError(f"--solver {options.solver}: choose one of {', '.join(PIPELINE_SOLVERS)}")
    if options.time_limit_s is None:
        options = dataclasses.replace(options, time_limit_s=DEFAULT_TIME_LIMIT_S)
    if not (math.isfinite(options.time_limit_s) and options.time_limit_s > 0):
        raise UsageError(f"--time-limit {options.time_limit_s}: give a positive number of seconds")
    if options.microbatches_in_flight < 1:
        raise UsageError(f"--microbatches {options.microbatches_in_flight}: give at least 1")
    started = time.perf_counter()
    cost = CostModel(target)
    assert isinstance(cost, GpuCostModel)
    costs = node_costs(graph)
    check_model_fits(graph, costs, cost, "device")
    k = device_count(options, target)
    auto = k is None
    check_total_fits(costs, cost, target.num_devices if k is None else k)
    if k is None:
        say("finding the fewest devices that fit")
        k = _fewest_devices(graph, costs, cost, options)
    setup = _setup(graph, costs, cost, k, options)
    problem = setup.problem
    if problem.num_blocks < k:
        raise UsageError(
            f"the model has only {problem.num_blocks} runtime blocks for {k} stages; use --devices {problem.num_blocks} or fewer"
        )
    hint = dp_partition(problem)
    interrupted = False
    deterministic_s = 0.0
    bound_s = 0.0
    if options.solver == "cpsat":
        say(
            f"solving with CP-SAT: {problem.num_blocks} blocks on {k} stages, up to "
            f"{options.time_limit_s:g} deterministic s (Ctrl-C stops and keeps the best plan)"
        )
        result = cpsat_partition(
            problem,
            hint=hint,
            time_limit_s=options.time_limit_s,
            seed=options.seed,
            progress=progress,
        )
        if result.stage_of is None:
            raise _no_answer(problem.num_blocks, k, result.status, options)
        stage_of, status = list(result.stage_of), result.status
        bound_s, deterministic_s, interrupted = (
            result.bound_s,
            result.deterministic_s,
            result.interrupted,
        )
    else:
        chosen = {
            "dp": lambda: hint,
            "greedy": lambda: greedy_partition(problem),
            "params": lambda: params_partition(problem),
            "uniform": lambda: uniform_partition(problem),
        }[options.solver]()
        if chosen is None:
            raise InfeasibleError(
                f"the {options.solver} solver found no split of {problem.num_blocks} blocks into {k} stages "
                "that fits memory; try --solver cpsat, or more devices"
            )
        stage_of = list(chosen)
        status = "OPTIMAL" if options.solver == "dp" else "HEURISTIC"
    problem_error = check_assignment(problem, stage_of)
    if problem_error is not None:
        raise AssertionError(f"solver {options.solver} returned an invalid answer: {problem_error}")
    layout = layout_pipeline(graph, costs, cost, setup, stage_of)
    over = [p for p in layout.partitions if p.memory_bytes > p.capacity_bytes]
    if over:
        p = over[0]
        raise InfeasibleError(
            f"the {options.solver} split puts {human_bytes(p.memory_bytes)} on stage {p.stage} "
            f"(device {p.device}), more than its {human_bytes(p.capacity_bytes)}; use --solver cpsat or dp, "
            "or more devices"
        )
    objective_s = score(problem, stage_of).objective_s(options.objective)
    # The DP is optimal among splits contiguous in one topological order, not over
    # every DAG split, so only CP-SAT's status can say OPTIMAL.
    if options.solver == "dp":
        status = "HEURISTIC"
    bound_s = min(max(bound_s, lower_bound_s(problem)), objective_s)
    gap = (objective_s - bound_s) / objective_s if objective_s > 0 else 0.0
    solver_info = SolverInfo(
        name=options.solver,
        status=status,
        objective_s=objective_s,
        bound_s=bound_s,
        gap=max(gap, 0.0),
        wall_s=round(deterministic_s, 6),
        seed=options.seed,
        time_limit_s=options.time_limit_s,
    )
    extra = llm_figures(graph, layout.estimate, cost, setup.devices)
    extra.update(unsized_extra(graph, layout.transfers))
    extra["devices_used"] = k
    extra["overlap_transfers"] = options.overlap_transfers
    extra["microbatches_in_flight"] = options.microbatches_in_flight
    extra["coarsening"] = {
        "blocks": setup.blocks.report.num_blocks,
        "runtime_nodes": setup.blocks.report.num_runtime_nodes,
    }
    plan = Plan(
        model=model_info(graph, costs),
        target=target_info(target),
        solver=solver_info,
        partitions=layout.partitions,
        transfers=layout.transfers,
        estimate=estimate_record(layout, extra),
        provenance=Provenance("partition", __version__, options.command),
    )
    return PlanOutcome(plan, setup, layout, time.perf_counter() - started, interrupted, auto)
