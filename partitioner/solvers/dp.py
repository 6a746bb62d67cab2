"""Exact dynamic programme over contiguous segments of the block order.

For blocks in a fixed topological order, the best split into K non-empty
contiguous stages is found exactly: ``f[k][j]`` is the best (bottleneck,
latency) pair for blocks ``[0, j)`` on stages ``0..k`` with stage k ending at
j. Every term of a stage's period depends only on its first and last block
(compute by prefix sums, relayed tensors by the cuts at both ends, host I/O by
the inputs it contains), so one vectorised pass over the start position per
(k, j) suffices: O(K · n) numpy operations of length n.

This is the warm start for CP-SAT, and the `dp` solver on its own. It is
optimal among splits contiguous in this order; CP-SAT may still reorder
independent branches of a DAG.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from partitioner.solvers.problem import PipelineProblem

__all__ = ["dp_partition", "segment_dp", "SegmentCosts"]

# (stage k, end j) -> (period[i], latency[i], feasible[i]) for every start i in [0, j)
SegmentCosts = Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]

_TIE = 1e-9  # relative tolerance for equal bottlenecks (then latency decides)


def segment_dp(n: int, k_stages: int, costs: SegmentCosts, objective: str) -> list[int] | None:
    """Best split of ``n`` ordered items into ``k_stages`` non-empty segments, or None.

    Args:
        n: number of items (blocks).
        k_stages: number of segments (stages).
        costs: per-segment period, latency and feasibility for all starts at once.
        objective: "throughput" (min max period, then min latency) or "latency".
    """
    if k_stages < 1 or n < k_stages:
        return None
    inf = np.inf
    best_b = np.full((k_stages, n + 1), inf)
    best_l = np.full((k_stages, n + 1), inf)
    choice = np.full((k_stages, n + 1), -1, dtype=np.int64)
    for k in range(k_stages):
        for j in range(k + 1, n - (k_stages - 1 - k) + 1):
            period, latency, feasible = costs(k, j)
            if k == 0:
                prev_b = np.where(np.arange(j) == 0, 0.0, inf)
                prev_l = prev_b.copy()
            else:
                prev_b, prev_l = best_b[k - 1, :j], best_l[k - 1, :j]
            b = np.maximum(prev_b, period)
            lat = prev_l + latency
            ok = feasible & np.isfinite(b)
            if not ok.any():
                continue
            primary, secondary = (b, lat) if objective == "throughput" else (lat, b)
            primary = np.where(ok, primary, inf)
            lo = primary.min()
            near = ok & (primary <= lo + abs(lo) * _TIE)
            i = int(np.argmin(np.where(near, secondary, inf)))
            best_b[k, j], best_l[k, j], choice[k, j] = b[i], lat[i], i
    if not np.isfinite(best_b[k_stages - 1, n]):
        return None
    stage_of = [0] * n
    j = n
    for k in range(k_stages - 1, -1, -1):
        i = int(choice[k, j])
        stage_of[i:j] = [k] * (j - i)
        j = i
    return stage_of


def _cut_arrays(problem: PipelineProblem) -> tuple[np.ndarray, np.ndarray]:
    """Seconds [boundary k][cut p] and bytes [cut p] relayed across a cut before block p."""
    n, k_stages = problem.num_blocks, problem.num_stages
    seconds = np.zeros((max(k_stages - 1, 0), n + 2))
    nbytes = np.zeros(n + 2)
    for f in problem.relay_flows:
        last = max(f.dsts)
        # crosses the cut before block p for src < p <= last
        nbytes[f.src + 1] += f.bytes
        nbytes[last + 1] -= f.bytes
        for k in range(k_stages - 1):
            seconds[k, f.src + 1] += f.boundary_s[k]
            seconds[k, last + 1] -= f.boundary_s[k]
    return np.cumsum(seconds, axis=1)[:, : n + 1], np.cumsum(nbytes)[: n + 1]


def dp_partition(problem: PipelineProblem) -> list[int] | None:
    """The exact best contiguous split of ``problem`` (None if none fits memory)."""
    n, k_stages = problem.num_blocks, problem.num_stages
    times = np.asarray(problem.block_time_s, dtype=float).reshape(n, k_stages)
    prefix_time = np.vstack([np.zeros(k_stages), np.cumsum(times, axis=0)])
    host_out = np.asarray(problem.block_host_out_s, dtype=float).reshape(n, k_stages)
    prefix_host = np.vstack([np.zeros(k_stages), np.cumsum(host_out, axis=0)])
    resident = np.concatenate([[0], np.cumsum(problem.block_resident_bytes)]).astype(float)
    activation = np.asarray(problem.block_activation_bytes, dtype=float)
    cut_s, cut_bytes = _cut_arrays(problem)
    # next block >= i reading each model input (n if none), for the host-input term
    next_reader = []
    for f in problem.host_flows:
        nxt = np.full(n + 1, n, dtype=np.int64)
        for d in sorted(f.dsts, reverse=True):
            nxt[: d + 1] = np.minimum(nxt[: d + 1], d)
        next_reader.append((nxt, np.asarray(f.stage_s, dtype=float)))
    m = problem.microbatches_in_flight
    last = k_stages - 1

    def costs(k: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        i = np.arange(j)
        compute = prefix_time[j, k] - prefix_time[i, k]
        recv = cut_s[k - 1, i] if k > 0 else np.zeros(j)
        send = np.full(j, cut_s[k, j] if k < last else 0.0)
        host = prefix_host[j, k] - prefix_host[i, k]
        for nxt, stage_s in next_reader:
            host = host + stage_s[k] * (nxt[i] < j)
        if problem.overlap_transfers:
            period = np.maximum.reduce([recv, compute, send, host])
        else:
            period = recv + host + compute + send
        act_peak = np.maximum.accumulate(activation[:j][::-1])[::-1]
        buffers = (cut_bytes[i] if k > 0 else 0.0) + (cut_bytes[j] if k < last else 0.0)
        memory = (resident[j] - resident[i]) + m * act_peak + buffers
        feasible = memory <= problem.capacity_bytes[k]
        return period, compute + send + host, feasible

    return segment_dp(n, k_stages, costs, problem.objective)
