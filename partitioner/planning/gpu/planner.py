"""Planning a model onto a GPU target: tensor-parallel degree × pipeline stages.

1. Check the model can fit at all (`planning.common`) and how many devices to use.
2. List the candidates tp × pp = devices (`candidates`): tp inside a node and
   dividing it, or pinned with ``--tp``/``--pp``.
3. For each, shard the graph t ways (`passes.analysis.sharding`), build the
   pipeline problem over tp-groups, solve it (CP-SAT warm-started from the chain
   DP, or a baseline) and lay the answer out exactly (`candidate`).
4. Pick the best candidate for the objective, record every candidate tried, and
   assemble the plan.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from partitioner.errors import InfeasibleError
from partitioner.plan import Candidate as CandidateRecord
from partitioner.plan import Parallelism, Plan, SolverInfo
from partitioner.planning.common import (
    assemble_plan,
    check_model_fits,
    check_total_fits,
    device_count,
    resolve_objective,
    runtime_costs,
    unsized_extra,
)
from partitioner.planning.gpu.breakdown import stage_times, time_breakdown
from partitioner.planning.gpu.candidate import (
    Announce,
    CandidateResult,
    Progress,
    setup_candidate,
    solve_candidate,
)
from partitioner.planning.gpu.candidates import fewest_stages, parallel_shapes
from partitioner.planning.gpu.layout import PipelineLayout, estimate_record, llm_figures
from partitioner.planning.gpu.problem import PipelineSetup
from partitioner.planning.load_fit import with_load_model
from partitioner.planning.options import GPU_SOLVERS, GpuOptions
from partitioner.planning.serving_dims import serving_dims
from partitioner.simulate.common import replica_devices
from passes.analysis.costs import CostReport
from passes.analysis.sharding import ShardingPlan, shard_graph
from passes.ir import Graph
from targets import GpuTarget
from targets.cost import CostModel, GpuCostModel

__all__ = ["GPU_SOLVERS", "PlanOutcome", "plan_pipeline"]

log = logging.getLogger(__name__)

DEFAULT_TIME_LIMIT_S = 30.0
"""CP-SAT budget for GPU pipelines, in deterministic seconds, shared by the candidates."""


@dataclass(frozen=True)
class PlanOutcome:
    plan: Plan
    setup: PipelineSetup
    layout: PipelineLayout
    wall_s: float
    interrupted: bool
    devices_auto: bool


def _shardings(graph: Graph, degrees: Sequence[int]) -> dict[int, ShardingPlan]:
    return {t: shard_graph(graph, t) for t in sorted(set(degrees)) if t > 1}


def _try(
    graph: Graph,
    costs: CostReport,
    cost_model: GpuCostModel,
    options: GpuOptions,
    shardings: dict[int, ShardingPlan],
    shape: tuple[int, int, int],
    progress: Progress | None,
    say: Announce,
) -> CandidateResult | CandidateRecord:
    """Solve one tp × pp × dp candidate; a candidate with no plan is recorded, not raised."""
    tp, pp, dp = shape
    capacity = sum(cost_model.capacity_bytes(d) for d in range(tp * pp))
    if costs.param_bytes > capacity * tp:  # even fully sharded, the weights do not fit
        return CandidateRecord(tp, pp, dp, "INFEASIBLE", None, None)
    setup = setup_candidate(graph, costs, cost_model, options, shardings.get(tp), tp, pp)
    if setup.problem.num_blocks < pp:
        return CandidateRecord(tp, pp, dp, "INFEASIBLE", None, None)
    try:
        result = solve_candidate(graph, costs, cost_model, setup, options, progress, say)
    except InfeasibleError as err:
        log.info("tp %d x pp %d x dp %d: %s", tp, pp, dp, err)
        status = "INFEASIBLE" if "proven infeasible" in str(err) else "UNKNOWN"
        return CandidateRecord(tp, pp, dp, status, None, None)
    return result.replicated(dp)


def _choose(results: Sequence[CandidateResult]) -> CandidateResult:
    """The best exact objective; ties go to fewer devices per group (less communication)."""
    return min(results, key=lambda r: (r.exact_s, r.tp))


def _solver_info(
    chosen: CandidateResult,
    results: Sequence[CandidateResult],
    records: Sequence[CandidateRecord],
    options: GpuOptions,
) -> SolverInfo:
    """The chosen candidate's figures; its bound holds for every candidate tried.

    OPTIMAL needs the chosen candidate proven optimal and no other candidate's
    bound below its objective; the bound is the least over all candidates.
    """
    objective_s = chosen.objective_s
    bound_s = min(min(r.bound_s for r in results), objective_s)
    others_below = any(r.bound_s < chosen.objective_s for r in results if r is not chosen)
    status = chosen.answer.status
    if status == "OPTIMAL" and others_below:
        status = "FEASIBLE"
    gap = (objective_s - bound_s) / objective_s if objective_s > 0 else 0.0
    return SolverInfo(
        name=options.solver,
        status=status,
        objective_s=objective_s,
        bound_s=bound_s,
        gap=max(gap, 0.0),
        effort_s=round(sum(r.answer.effort_s for r in results), 6),
        seed=options.seed,
        time_limit_s=options.time_limit_s,  # type: ignore[arg-type]
        candidates=tuple(records),
    )


def _assemble(
    graph: Graph,
    costs: CostReport,
    cost_model: GpuCostModel,
    options: GpuOptions,
    chosen: CandidateResult,
    solver: SolverInfo,
) -> Plan:
    """The plan of the chosen candidate: estimate with decode figures, parallelism, header."""
    setup, layout = chosen.setup, chosen.layout
    # Replicas repeat the pipeline on the next devices: together they serve dp times
    # the requests, each at the same latency.
    used = replica_devices([d for p in layout.partitions for d in p.devices], chosen.dp)
    estimate = dataclasses.replace(
        layout.estimate, throughput_per_s=layout.estimate.throughput_per_s * chosen.dp
    )
    extra = llm_figures(graph, estimate, cost_model, used, layout.partitions, chosen.dp)
    extra.update(unsized_extra(graph, layout.transfers))
    extra["devices_used"] = len(used)
    stages = stage_times(
        graph,
        costs,
        cost_model,
        setup,
        layout.partitions,
        layout.transfers,
        layout.collectives,
    )
    in_turn = not all(cost_model.target.devices[d].compute_memory_overlap for d in used)
    extra["time_breakdown"] = time_breakdown(stages, in_turn)
    extra["coarsening"] = {
        "blocks": setup.blocks.report.num_blocks,
        "runtime_nodes": setup.blocks.report.num_runtime_nodes,
    }
    parallelism = Parallelism(
        tp=chosen.tp,
        pp=chosen.pp,
        dp=chosen.dp,
        microbatches=options.microbatches_in_flight,
        overlap_transfers=options.overlap_transfers,
        objective=options.objective,
    )
    return dataclasses.replace(
        assemble_plan(
            graph,
            costs,
            target=cost_model.target,
            options=options,
            solver=solver,
            parallelism=parallelism,
            partitions=layout.partitions,
            transfers=layout.transfers,
            estimate=estimate_record(dataclasses.replace(layout, estimate=estimate), extra),
            collectives=layout.collectives,
        ),
        shards=layout.shards,
    )


def _search(
    graph: Graph,
    costs: CostReport,
    cost_model: GpuCostModel,
    options: GpuOptions,
    shapes: Sequence[tuple[int, int, int]],
    progress: Progress | None,
    say: Announce,
) -> tuple[CandidateResult, SolverInfo]:
    """Every candidate in turn, the CP-SAT budget shared between them."""
    shardings = _shardings(graph, [shape[0] for shape in shapes])
    each = dataclasses.replace(options, time_limit_s=options.time_limit_s / len(shapes))  # type: ignore[operator]
    results: list[CandidateResult] = []
    records: list[CandidateRecord] = []
    for shape in shapes:
        if len(shapes) > 1:
            say(
                f"trying tensor-parallel degree {shape[0]} x {shape[1]} pipeline stages "
                f"x {shape[2]} replicas (candidate {len(records) + 1} of {len(shapes)})"
            )
        outcome = _try(graph, costs, cost_model, each, shardings, shape, progress, say)
        if isinstance(outcome, CandidateRecord):
            records.append(outcome)
            continue
        results.append(outcome)
        records.append(outcome.record())
        if outcome.answer.interrupted:
            break  # Ctrl-C: keep the best plan so far, try no more candidates
    if not results:
        raise _no_candidate(records, options)
    chosen = _choose(results)
    return chosen, _solver_info(chosen, results, records, options)


def _no_candidate(records: Sequence[CandidateRecord], options: GpuOptions) -> InfeasibleError:
    tried = ", ".join(f"tp {r.tp} x pp {r.pp} x dp {r.dp}" for r in records)
    if all(r.status == "INFEASIBLE" for r in records):
        return InfeasibleError(
            f"proven infeasible: no split of the model fits the devices' memory ({tried}); use "
            "smaller --dim values, more devices, or devices with more memory"
        )
    return InfeasibleError(
        f"no plan found within --time-limit {options.time_limit_s:g} s ({tried}), and none is "
        "proven impossible; give CP-SAT more time (e.g. --time-limit 120) or more devices"
    )


def _fewest(
    graph: Graph,
    costs: CostReport,
    cost_model: GpuCostModel,
    options: GpuOptions,
    progress: Progress | None,
    say: Announce,
) -> tuple[CandidateResult, SolverInfo]:
    """--devices auto: the fewest devices whose candidates give a plan."""
    say("finding the fewest devices that fit")
    for shapes in fewest_stages(graph, costs, cost_model, options):
        log.info("candidates (tp, pp): %s", shapes)
        try:
            return _search(graph, costs, cost_model, options, shapes, progress, say)
        except InfeasibleError as err:
            log.info("%d devices: %s", shapes[0][0] * shapes[0][1] * shapes[0][2], err)
    raise AssertionError("fewest_stages ends by raising")  # pragma: no cover


def plan_pipeline(
    graph: Graph,
    target: GpuTarget,
    options: GpuOptions | None = None,
    progress: Progress | None = None,
    announce: Announce | None = None,
) -> PlanOutcome:
    """Plan ``graph`` over the target's GPUs: tensor-parallel groups in a pipeline.

    Args:
        graph: the loaded model.
        target: the GPU target.
        options: solver, devices, degrees, objective, limits (checked when built).
        progress: called with (best objective s, bound s) as CP-SAT improves.
        announce: called with a one-line description of each long step as it starts.
    """
    say = announce or (lambda message: None)
    options = options or GpuOptions()
    if options.time_limit_s is None:
        options = dataclasses.replace(options, time_limit_s=DEFAULT_TIME_LIMIT_S)
    options = dataclasses.replace(options, objective=resolve_objective(graph, options.objective))
    started = time.perf_counter()
    cost_model = CostModel(target)
    assert isinstance(cost_model, GpuCostModel)
    costs = runtime_costs(graph, target.runtime)
    check_model_fits(graph, costs, cost_model, "device")
    k = device_count(options, target)
    check_total_fits(costs, cost_model, target.num_devices if k is None else k)
    if k is None:
        chosen, solver = _fewest(graph, costs, cost_model, options, progress, say)
    else:
        shapes = parallel_shapes(cost_model, options, k)
        log.info("candidates (tp, pp, dp): %s", shapes)
        chosen, solver = _search(graph, costs, cost_model, options, shapes, progress, say)
    plan = _assemble(graph, costs, cost_model, options, chosen, solver)
    if serving_dims(graph) is not None and not chosen.answer.interrupted:
        say("solving the load model: the analysis at 7 more (batch, past) points")
        plan = with_load_model(plan, graph, target.runtime)
    wall_s = time.perf_counter() - started
    return PlanOutcome(
        plan, chosen.setup, chosen.layout, wall_s, chosen.answer.interrupted, k is None
    )
