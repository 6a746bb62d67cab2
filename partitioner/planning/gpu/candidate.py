"""One parallelism candidate of a GPU plan: tp-groups in a pipeline, solved and laid out.

For a tensor-parallel degree t and p stages, stage k runs on devices
[k·t, (k+1)·t). The pipeline problem is built with the group's costs
(`tensor_parallel`), solved by the chosen solver (CP-SAT warm-started from the
chain DP, or a baseline), and laid out exactly (`layout`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from partitioner.errors import InfeasibleError
from partitioner.plan import Candidate
from partitioner.planning.gpu.layout import PipelineLayout, layout_pipeline
from partitioner.planning.gpu.problem import PipelineSetup, build_pipeline_problem
from partitioner.planning.gpu.tensor_parallel import stage_groups
from partitioner.planning.options import GpuOptions
from partitioner.solvers.baselines import greedy_partition, params_partition, uniform_partition
from partitioner.solvers.cpsat_pipeline import cpsat_partition
from partitioner.solvers.dp import dp_partition
from partitioner.solvers.problem import PipelineProblem, check_assignment, lower_bound_s, score
from partitioner.units import human_bytes
from passes.analysis.costs import CostReport
from passes.analysis.sharding import ShardingPlan
from passes.ir import Graph
from targets.cost import GpuCostModel

__all__ = ["CandidateResult", "Progress", "Announce", "setup_candidate", "solve_candidate"]

Progress = Callable[[float, float], None]
Announce = Callable[[str], None]


@dataclass(frozen=True)
class Answer:
    """A solver's stage per block, how sure it is, and what it cost."""

    stage_of: list[int]
    status: str
    bound_s: float = 0.0
    effort_s: float = 0.0
    interrupted: bool = False


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
) -> Answer:
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
        return Answer(list(chosen), "HEURISTIC")
    say(
        f"solving with CP-SAT: {problem.num_blocks} blocks on {k} stages, up to "
        f"{options.time_limit_s:g} deterministic s (Ctrl-C stops and keeps the best plan)"
    )
    result = cpsat_partition(
        problem, hint=hint, time_limit_s=options.time_limit_s, seed=options.seed, progress=progress
    )
    if result.stage_of is None:
        raise _no_answer(problem.num_blocks, k, result.status, options)
    return Answer(
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


@dataclass(frozen=True)
class CandidateResult:
    """A solved candidate: its setup, answer, exact layout and what the solver proved.

    Attributes:
        objective_s: the solver's objective for its answer (bottleneck period for
            "throughput", latency for "latency"), scored on the solver's numbers.
        bound_s: no plan of this tp × pp beats it (the solver's bound or the problem's own).
        exact_s: the same figure from the exact layout, which candidates are compared on.
    """

    tp: int
    pp: int
    setup: PipelineSetup
    answer: Answer
    layout: PipelineLayout
    objective_s: float
    bound_s: float
    exact_s: float
    dp: int = 1

    def record(self) -> Candidate:
        return Candidate(
            self.tp, self.pp, self.dp, self.answer.status, self.objective_s, self.bound_s
        )

    def replicated(self, dp: int) -> CandidateResult:
        """The same pipeline run as ``dp`` replicas: for throughput, the seconds per item
        of the whole system are the period over the replicas."""
        if dp == 1:
            return self
        throughput = self.setup.problem.objective == "throughput"
        per = (lambda s: s / dp) if throughput else (lambda s: s)
        return dataclasses.replace(
            self,
            dp=dp,
            objective_s=per(self.objective_s),
            bound_s=per(self.bound_s),
            exact_s=per(self.exact_s),
        )


def setup_candidate(
    graph: Graph,
    costs: CostReport,
    cost_model: GpuCostModel,
    options: GpuOptions,
    sharding: ShardingPlan | None,
    tp: int,
    pp: int,
) -> PipelineSetup:
    """The pipeline problem of ``pp`` stages, each on a group of ``tp`` devices."""
    groups = stage_groups(0, tp, pp)
    return build_pipeline_problem(
        graph,
        costs,
        cost_model,
        [g[0] for g in groups],
        objective=options.objective,
        microbatches_in_flight=options.microbatches_in_flight,
        overlap_transfers=options.overlap_transfers,
        target_blocks=options.target_blocks,
        groups=groups if tp > 1 else None,
        sharding=sharding if tp > 1 else None,
    )


def _exact_objective_s(layout: PipelineLayout, objective: str) -> float:
    e = layout.estimate
    return e.latency_s if objective == "latency" else e.period_s


def solve_candidate(
    graph: Graph,
    costs: CostReport,
    cost_model: GpuCostModel,
    setup: PipelineSetup,
    options: GpuOptions,
    progress: Progress | None,
    say: Announce,
) -> CandidateResult:
    """Solve one candidate's problem and lay its answer out (InfeasibleError if none fits)."""
    problem = setup.problem
    answer = _solve(problem, options, progress, say)
    problem_error = check_assignment(problem, answer.stage_of)
    if problem_error is not None:
        raise AssertionError(f"solver {options.solver} returned an invalid answer: {problem_error}")
    layout = layout_pipeline(graph, costs, cost_model, setup, answer.stage_of)
    _check_fits(layout, options.solver)
    scored_s = score(problem, answer.stage_of).objective_s(options.objective)
    bound_s = min(max(answer.bound_s, lower_bound_s(problem)), scored_s)
    tp = len(setup.groups[0]) if setup.groups else 1
    exact_s = _exact_objective_s(layout, options.objective)
    return CandidateResult(
        tp, problem.num_stages, setup, answer, layout, scored_s, bound_s, exact_s
    )
