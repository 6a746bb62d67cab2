"""Baseline splits, as first-class solvers so any comparison runs from one command.

- ``params``: DeepSpeed's ``partition_method="parameters"``: contiguous stages
  with balanced parameter bytes (the min-max split, as DeepSpeed's
  ``partition_balanced`` computes it), blind to compute and memory limits.
- ``uniform``: contiguous stages with equal node counts.
- ``greedy``: fill each stage in order until it holds its share of the
  remaining compute, or until its memory would overflow.

Each returns ``stage_of`` per block, or None if it cannot make K non-empty stages.
"""

from __future__ import annotations

import numpy as np

from partitioner.solvers.dp import segment_dp
from partitioner.solvers.problem import PipelineProblem

__all__ = ["params_partition", "uniform_partition", "greedy_partition"]


def params_partition(problem: PipelineProblem) -> list[int] | None:
    """Contiguous split minimising the largest stage's parameter bytes."""
    n = problem.num_blocks
    prefix = np.concatenate([[0.0], np.cumsum(problem.block_resident_bytes, dtype=float)])

    def costs(k: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        load = prefix[j] - prefix[:j]
        return load, np.zeros(j), np.ones(j, dtype=bool)

    return segment_dp(n, problem.num_stages, costs, "throughput")


def uniform_partition(problem: PipelineProblem) -> list[int] | None:
    """Contiguous split with about the same number of nodes per stage."""
    n, k_stages = problem.num_blocks, problem.num_stages
    if n < k_stages:
        return None
    counts = problem.block_nodes or tuple([1] * n)
    total = sum(counts)
    stage_of, done, k = [], 0, 0
    for b, c in enumerate(counts):
        # Move on when this stage has its share, keeping a block for each later stage.
        has_share = done >= round(total * (k + 1) / k_stages) or n - b == k_stages - 1 - k
        if k < k_stages - 1 and has_share and stage_of and stage_of[-1] == k:
            k += 1
        stage_of.append(k)
        done += c
    return stage_of if len(set(stage_of)) == k_stages else None


def greedy_partition(problem: PipelineProblem) -> list[int] | None:
    """Fill stages in order to their share of the remaining compute, within memory."""
    n, k_stages = problem.num_blocks, problem.num_stages
    if n < k_stages:
        return None
    m = problem.microbatches_in_flight
    stage_of: list[int] = []
    b = 0
    for k in range(k_stages):
        share = sum(problem.block_time_s[c][k] for c in range(b, n)) / (k_stages - k)
        load, resident, act = 0.0, 0, 0
        start = b
        while b < n:
            blocks_needed_later = k_stages - 1 - k
            if b > start and k < k_stages - 1 and n - b <= blocks_needed_later:
                break
            t = problem.block_time_s[b][k]
            new_resident = resident + problem.block_resident_bytes[b]
            new_act = max(act, problem.block_activation_bytes[b])
            fits = new_resident + m * new_act <= problem.capacity_bytes[k]
            if b > start and k < k_stages - 1 and (load + t > share or not fits):
                break
            stage_of.append(k)
            load, resident, act = load + t, new_resident, new_act
            b += 1
    return stage_of if len(stage_of) == n and len(set(stage_of)) == k_stages else None
