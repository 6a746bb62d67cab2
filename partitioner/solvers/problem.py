"""The pipeline-partitioning problem as plain numbers, and how to score an answer.

Blocks (coarsened nodes) are numbered in a topological order and go to K
ordered stages, stage k on device k. An answer is ``stage_of[block]``; it is
valid when every stage is non-empty, stages never decrease along an edge, and
every stage fits its device's memory.

Transfers follow pipeline semantics: a tensor made on stage s and read up to
stage d is relayed stage to stage, crossing every boundary s..d-1 (boundary k
is the link from stage k's device to stage k+1's). Its seconds on each
boundary come precomputed from the cost model, so no formula lives here. Model
inputs arrive from the host at every stage that reads them, and outputs go
back to the host from the stage that makes them.

Per stage: compute = Σ block seconds on that device; recv/send = relayed
seconds over the boundaries before/after it; host = host I/O seconds.
`score` turns an answer into these figures and the pipeline estimate, with
the pipeline formula from `targets` (never re-derived here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from targets.cost import stage_memory_bytes
from targets.pipeline import PipelineEstimate, pipeline_estimate

__all__ = [
    "RelayFlow",
    "HostFlow",
    "PipelineProblem",
    "StageFigures",
    "Score",
    "score",
    "check_assignment",
]


@dataclass(frozen=True)
class RelayFlow:
    """Runtime tensors made in block ``src`` and read in blocks ``dsts`` (all later)."""

    src: int
    dsts: tuple[int, ...]
    bytes: int
    boundary_s: tuple[float, ...]  # seconds to cross boundary k, k = 0..K-2


@dataclass(frozen=True)
class HostFlow:
    """A model input read in blocks ``dsts``; it comes from the host to each reading stage."""

    dsts: tuple[int, ...]
    bytes: int
    stage_s: tuple[float, ...]  # seconds to deliver it to stage k's device


@dataclass(frozen=True)
class PipelineProblem:
    """Everything a pipeline solver needs, as numbers.

    Attributes:
        num_stages: K.
        block_time_s: [block][stage] compute seconds of the block on that stage's device.
        block_resident_bytes: parameters + KV cache the block keeps resident.
        block_activation_bytes: activation peak while the block runs.
        block_host_out_s: [block][stage] seconds to return the block's outputs to the host.
        edges: (u, v) block precedences, u < v.
        relay_flows: tensors between blocks.
        host_flows: model inputs.
        capacity_bytes: [stage] device memory.
        microbatches_in_flight: activation copies a stage holds at once.
        overlap_transfers: transfers run beside compute (period = max) or not (sum).
        objective: "throughput" (min bottleneck, then latency) or "latency".
        block_nodes: runtime node count per block (for the `uniform` baseline).
        stage_overhead_s: [stage] fixed seconds a stage pays per step on top of its
            blocks (the host's call into the runtime); empty = none.
    """

    num_stages: int
    block_time_s: tuple[tuple[float, ...], ...]
    block_resident_bytes: tuple[int, ...]
    block_activation_bytes: tuple[int, ...]
    block_host_out_s: tuple[tuple[float, ...], ...]
    edges: tuple[tuple[int, int], ...]
    relay_flows: tuple[RelayFlow, ...]
    host_flows: tuple[HostFlow, ...]
    capacity_bytes: tuple[int, ...]
    microbatches_in_flight: int = 1
    overlap_transfers: bool = False
    objective: str = "throughput"
    block_nodes: tuple[int, ...] = ()
    stage_overhead_s: tuple[float, ...] = ()

    @property
    def num_blocks(self) -> int:
        return len(self.block_time_s)


@dataclass(frozen=True)
class StageFigures:
    compute_s: float
    recv_s: float
    send_s: float
    host_s: float
    resident_bytes: int
    activation_bytes: int
    buffer_bytes: int
    memory_bytes: int


@dataclass(frozen=True)
class Score:
    """An answer's figures: per stage, the pipeline estimate, and whether it fits."""

    stages: tuple[StageFigures, ...]
    estimate: PipelineEstimate
    fits: bool

    def objective_s(self, objective: str) -> float:
        """Seconds of ``objective``: the bottleneck period ("throughput") or the latency."""
        return self.estimate.period_s if objective == "throughput" else self.estimate.latency_s


def check_assignment(problem: PipelineProblem, stage_of: Sequence[int]) -> str | None:
    """Why ``stage_of`` is not a valid answer (memory aside), or None."""
    if len(stage_of) != problem.num_blocks:
        return f"{len(stage_of)} stages given for {problem.num_blocks} blocks"
    if any(not 0 <= s < problem.num_stages for s in stage_of):
        return "a block is on a stage that does not exist"
    if len(set(stage_of)) != problem.num_stages:
        return "a stage is empty"
    for u, v in problem.edges:
        if stage_of[u] > stage_of[v]:
            return f"block {u} runs on stage {stage_of[u]} after its consumer {v} on stage {stage_of[v]}"
    return None


def score(problem: PipelineProblem, stage_of: Sequence[int]) -> Score:
    """Per-stage figures and the pipeline estimate of an answer."""
    k_stages = problem.num_stages
    compute = [0.0] * k_stages
    host = [0.0] * k_stages
    resident = [0] * k_stages
    activation = [0] * k_stages
    for b, s in enumerate(stage_of):
        compute[s] += problem.block_time_s[b][s]
        host[s] += problem.block_host_out_s[b][s]
        resident[s] += problem.block_resident_bytes[b]
        activation[s] = max(activation[s], problem.block_activation_bytes[b])
    for s in set(stage_of) if problem.stage_overhead_s else ():
        compute[s] += problem.stage_overhead_s[s]
    boundary_s = [0.0] * max(k_stages - 1, 0)
    boundary_bytes = [0] * max(k_stages - 1, 0)
    for f in problem.relay_flows:
        first, last = stage_of[f.src], max(stage_of[d] for d in f.dsts)
        for k in range(first, last):
            boundary_s[k] += f.boundary_s[k]
            boundary_bytes[k] += f.bytes
    for f in problem.host_flows:
        for s in sorted({stage_of[d] for d in f.dsts}):
            host[s] += f.stage_s[s]
    stages = []
    for k in range(k_stages):
        recv_s = boundary_s[k - 1] if k > 0 else 0.0
        send_s = boundary_s[k] if k < k_stages - 1 else 0.0
        buffers = (boundary_bytes[k - 1] if k > 0 else 0) + (
            boundary_bytes[k] if k < k_stages - 1 else 0
        )
        memory = stage_memory_bytes(
            resident[k], activation[k], problem.microbatches_in_flight, buffers
        )
        stages.append(
            StageFigures(
                compute[k], recv_s, send_s, host[k], resident[k], activation[k], buffers, memory
            )
        )
    estimate = pipeline_estimate(
        [s.compute_s for s in stages],
        [s.send_s for s in stages],
        problem.overlap_transfers,
        stage_host_s=[s.host_s for s in stages],
    )
    fits = all(s.memory_bytes <= cap for s, cap in zip(stages, problem.capacity_bytes, strict=True))
    return Score(tuple(stages), estimate, fits)


def lower_bound_s(problem: PipelineProblem) -> float:
    """A bound no answer can beat, from compute alone (valid for any solver).

    Throughput: the period is at least the busiest stage's compute, so at least
    the slowest block (on its fastest device) and at least the even share of
    all compute. Latency: every block's compute on its fastest device. Either way
    at least one stage pays its per-step overhead.
    """
    fastest = [min(row) for row in problem.block_time_s]
    overhead_s = min(problem.stage_overhead_s, default=0.0)
    if problem.objective == "latency":
        return sum(fastest) + overhead_s
    return max(max(fastest, default=0.0), sum(fastest) / problem.num_stages) + overhead_s
