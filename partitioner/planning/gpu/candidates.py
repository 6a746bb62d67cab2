"""Which tensor-parallel × pipeline shapes to try on a GPU target.

Degrees tp × pp use the devices given (dp is 1: one replica). A tp-group is
``tp`` consecutive devices, so it stays inside one node (NVLink) when tp
divides the GPUs per node; groups may span nodes only when the target says so
(``tp_across_nodes``). ``--tp`` or ``--pp`` pin a degree.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from partitioner.errors import InfeasibleError, UsageError
from partitioner.planning.gpu.candidate import setup_candidate
from partitioner.planning.options import GpuOptions
from partitioner.solvers.dp import dp_partition
from partitioner.units import human_bytes
from passes.analysis.costs import CostReport
from passes.analysis.sharding import ShardingPlan, shard_graph
from passes.ir import Graph
from targets.cost import GpuCostModel

__all__ = ["allowed_tp", "tp_candidates", "parallel_shapes", "fewest_stages"]


def allowed_tp(cost_model: GpuCostModel, devices: int) -> list[int]:
    """Degrees a tp-group may have on the first ``devices`` GPUs of the target."""
    target = cost_model.target
    span = devices if target.tp_across_nodes else min(devices, target.gpus_per_node)
    return [t for t in range(1, span + 1) if span % t == 0 and devices % t == 0]


def tp_candidates(
    cost_model: GpuCostModel, options: GpuOptions, devices: int
) -> list[tuple[int, int]]:
    """(tp, pp) pairs with tp × pp = ``devices``, pinned ones checked (UsageError)."""
    allowed = allowed_tp(cost_model, devices)
    if options.pp is not None:
        if devices % options.pp:
            raise UsageError(f"--pp {options.pp} does not divide the {devices} devices used")
        tps = [devices // options.pp]
        if options.tp is not None and options.tp != tps[0]:
            raise UsageError(
                f"--tp {options.tp} x --pp {options.pp} uses {options.tp * options.pp} devices, "
                f"but {devices} are used; give --devices {options.tp * options.pp} or drop one"
            )
    else:
        tps = allowed if options.tp is None else [options.tp]
    for tp in tps:
        if tp not in allowed:
            raise UsageError(_tp_problem(cost_model, tp, devices))
    return [(tp, devices // tp) for tp in tps]


def parallel_shapes(
    cost_model: GpuCostModel, options: GpuOptions, devices: int
) -> list[tuple[int, int, int]]:
    """(tp, pp, dp) with tp × pp × dp = ``devices``.

    Replicas (dp > 1) only raise throughput, so they are tried for the
    throughput objective and only when ``--pp`` is not pinned; each replica is
    a tp × pp pipeline on its own devices. ``--dp`` pins the replicas: the
    degrees are then searched on each replica's share of the devices.
    """
    if options.dp is not None:
        if devices % options.dp:
            raise UsageError(f"--dp {options.dp} does not divide the {devices} devices used")
        share = devices // options.dp
        return [(tp, pp, options.dp) for tp, pp in tp_candidates(cost_model, options, share)]
    shapes = []
    for tp, pp in tp_candidates(cost_model, options, devices):
        replicated = options.objective == "throughput" and options.pp is None
        for stages in (d for d in range(1, pp + 1) if pp % d == 0) if replicated else (pp,):
            shapes.append((tp, stages, pp // stages))
    return sorted(shapes, key=lambda s: (s[2], s[0], s[1]))


def _tp_problem(cost_model: GpuCostModel, tp: int, devices: int) -> str:
    target = cost_model.target
    if devices % tp:
        return f"--tp {tp} does not divide the {devices} devices used"
    return (
        f"--tp {tp}: a tensor-parallel group stays inside one node of {target.gpus_per_node} "
        f"GPUs on {target.name}; use a tp that divides {min(devices, target.gpus_per_node)}"
    )


def fewest_stages(
    graph: Graph, costs: CostReport, cost_model: GpuCostModel, options: GpuOptions
) -> Iterator[list[tuple[int, int, int]]]:
    """For --devices auto: device counts from the parameters' lower bound up; at each,
    the (tp, pp) candidates the chain DP fits. The caller takes the first count whose
    candidates give a plan (the DP's numbers are coarser than the exact layout's).

    Raises:
        InfeasibleError: no count up to all the target's devices fits.
    """
    target = cost_model.target
    start = max(1, math.ceil(costs.param_bytes / cost_model.capacity_bytes(0)))
    shardings: dict[int, ShardingPlan] = {}
    for devices in range(start, target.num_devices + 1):
        fitting = []
        for tp, pp in tp_candidates_or_none(cost_model, options, devices):
            if tp > 1 and tp not in shardings:
                shardings[tp] = shard_graph(graph, tp)
            setup = setup_candidate(graph, costs, cost_model, options, shardings.get(tp), tp, pp)
            if setup.problem.num_blocks >= pp and dp_partition(setup.problem) is not None:
                fitting.append((tp, pp, 1))
        if fitting:
            yield fitting
    raise InfeasibleError(
        f"no split of the model fits on all {target.num_devices} devices of {target.name} "
        f"(parameters {human_bytes(costs.param_bytes)}, activations and buffers on top); "
        "use a target with more or larger devices"
    )


def tp_candidates_or_none(
    cost_model: GpuCostModel, options: GpuOptions, devices: int
) -> list[tuple[int, int]]:
    """`tp_candidates`, or none where a pinned degree does not fit this device count."""
    try:
        return tp_candidates(cost_model, options, devices)
    except UsageError:
        return []
