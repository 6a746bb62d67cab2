"""The split of a model across wafers: one contiguous pipeline stage per wafer."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

from partitioner.errors import InfeasibleError
from partitioner.planning.gpu.problem import stage_flows
from partitioner.planning.options import WaferOptions
from partitioner.planning.wafer.layout import budget
from partitioner.planning.wafer.regions import BlockRegion
from partitioner.solvers.cpsat_pipeline import cpsat_partition
from partitioner.solvers.dp import dp_partition
from partitioner.solvers.problem import PipelineProblem
from partitioner.units import human_bytes
from passes.ir import Graph
from passes.transforms.coarsen import BlockGraph
from targets import HOST
from targets.cost import WaferCostModel

__all__ = ["SPLIT_FILL", "split_across_wafers", "memory_balanced_split"]


# Share of a wafer's usable SRAM the split across wafers may fill (the rest is packing room).
SPLIT_FILL = 0.97


def _wafer_transfer_s(cost_model: WaferCostModel, nbytes: int, a: int, b: int) -> float:
    """Seconds to move ``nbytes`` from wafer ``a`` to wafer ``b`` (-1: the host)."""
    if a == b:
        return 0.0
    if HOST in (a, b):
        return cost_model.host_transfer_s(nbytes)
    return cost_model.inter_wafer_transfer_s(nbytes)


def split_across_wafers(
    graph: Graph,
    blocks: BlockGraph,
    regions: Sequence[BlockRegion],
    node_s: Sequence[float],
    cost_model: WaferCostModel,
    k: int,
    options: WaferOptions,
) -> tuple[list[int], str, float, bool]:
    """One contiguous pipeline stage of blocks per wafer (stage k on wafer k).

    Returns:
        (wafer of each block, solver status, deterministic seconds, interrupted by Ctrl-C).
    """
    if k == 1:
        return [0] * len(regions), "OPTIMAL", 0.0, False

    devices = list(range(k))
    relay, host_in, host_out_s = stage_flows(
        graph, blocks, functools.partial(_wafer_transfer_s, cost_model), devices
    )
    times = tuple(tuple([sum(node_s[n] for n in r.runtime)] * k) for r in regions)
    problem, hint = memory_balanced_split(
        PipelineProblem(
            num_stages=k,
            block_time_s=times,
            # a wafer keeps every block's parameters and activations in SRAM at once
            block_resident_bytes=tuple(r.memory_bytes for r in regions),
            block_activation_bytes=tuple(0 for _ in regions),
            block_host_out_s=host_out_s,
            edges=tuple((e.src, e.dst) for e in blocks.edges),
            relay_flows=relay,
            host_flows=host_in,
            capacity_bytes=(cost_model.capacity_bytes(0),) * k,
            overlap_transfers=True,
            objective=options.objective,
            block_nodes=tuple(len(r.runtime) for r in regions),
        )
    )
    if options.solver != "cpsat":
        if hint is None:
            raise InfeasibleError(
                f"no split of the model across {k} wafers fits their SRAM; use more wafers"
            )
        return hint, "HEURISTIC", 0.0, False
    result = cpsat_partition(
        problem, hint=hint, time_limit_s=budget(options, k)[0], seed=options.seed
    )
    if result.stage_of is None:
        raise InfeasibleError(
            f"no split of the model across {k} wafers fits their SRAM (parameters {human_bytes(sum(r.param_bytes for r in regions))}); "
            "use more wafers, e.g. --devices auto on a larger target"
        )
    return list(result.stage_of), result.status, result.deterministic_s, result.interrupted


def memory_balanced_split(problem: PipelineProblem) -> tuple[PipelineProblem, list[int] | None]:
    """Cap every wafer's SRAM near the average fill, so no wafer is too full to pack.

    Rectangles pack to about 95 % of a wafer, so a wafer at 97 % fails even when
    the wafers' average is 94 %. The cap starts just above the average and
    loosens until the exact DP finds a split under it.
    """
    capacity = problem.capacity_bytes[0]
    average = sum(problem.block_resident_bytes) / (problem.num_stages * capacity)
    steps = sorted(
        {min(SPLIT_FILL, average + d) for d in (0.005, 0.01, 0.02, 0.04, 0.08)} | {SPLIT_FILL}
    )
    for fill in steps:
        capped = dataclasses.replace(
            problem, capacity_bytes=(int(capacity * fill),) * problem.num_stages
        )
        hint = dp_partition(capped)
        if hint is not None:
            return capped, hint
    return dataclasses.replace(
        problem, capacity_bytes=(int(capacity * SPLIT_FILL),) * problem.num_stages
    ), None
