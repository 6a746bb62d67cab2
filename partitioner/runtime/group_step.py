"""One rank of a tensor-parallel partition, and the choice of step per partition.

The rank runs its rank graph segment by segment (`engines._segment_runner`);
between two segments the group performs the collective through the
`Collectives` it is given. What it returns is whole (see `engines`).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import onnx.inliner

from partitioner.executor.graph_run import PlanExecutionError, _partition_env
from partitioner.executor.tensor_parallel import (
    group_sharding,
    rank_params,
    rank_received,
    segments,
)
from partitioner.executor.weights import WeightStore
from partitioner.plan import Partition, Plan
from partitioner.runtime.engines import (
    CollectiveLog,
    Collectives,
    EngineConfig,
    EngineError,
    PartitionStep,
    _collective,
    _numpy_pipeline_step,
    _ort_pipeline_step,
    _segment_runner,
)
from passes.analysis.partition_io import partition_io
from passes.analysis.sharding import ShardingPlan, shard_graph
from passes.analysis.stored_weights import stored_inputs
from passes.ir import Graph
from passes.transforms.tensor_parallel import rank_graph, tensor_layout

__all__ = ["build_step"]


def _whole_outputs(
    sharding: ShardingPlan,
    env: Mapping[str, Any],
    keep: Collection[str],
    received: Collection[str],
    collected: Collection[str],
    collectives: Collectives,
    where: str,
    log: CollectiveLog,
) -> dict[str, Any]:
    """Each kept name whole; those left split on an axis are gathered (every rank, in name
    order; timed in ``log.gathered``)."""
    out: dict[str, Any] = {}
    for name in sorted(keep):
        if name not in env:
            continue
        layout = tensor_layout(sharding, name)
        if name in received or name in collected or (layout.axis is None and not layout.partial):
            out[name] = env[name]
        elif layout.partial:
            raise PlanExecutionError(
                f"{where}: tensor {name!r} leaves the group as a partial sum on each rank: no "
                "all_reduce follows its producer"
            )
        else:
            start = time.perf_counter()
            out[name] = collectives.all_gather(np.ascontiguousarray(env[name]), layout.axis)
            log.gathered.append((name, start, time.perf_counter() - start))
    return out


def _group_step(
    graph: Graph,
    plan: Plan,
    partition: Partition,
    group_rank: int,
    params: Mapping[str, Any],
    keep: frozenset[str],
    engine: str,
    config: EngineConfig,
) -> PartitionStep:
    degree = len(partition.devices)
    sharding = group_sharding(graph, plan, partition, shard_graph(graph, degree))
    io = partition_io(graph, partition.nodes)
    model = rank_graph(graph, sharding, group_rank, io.nodes)
    stored = stored_inputs(graph, io.params)  # kept quantised: the rank graph dequantises
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    opsets = {o.domain: o.version for o in model.opset_import}
    pieces = segments(model.graph.node, keep)
    # the rank's parameters, cut once: onnxruntime sessions hold them as initializers
    resident = {k: np.ascontiguousarray(v) for k, v in rank_params(model, params).items()}
    runners = [_segment_runner(s, opsets, engine, config, resident) for s in pieces]
    where = f"partition {partition.id}, rank {group_rank} of {degree}"

    def run(values: Mapping[str, Any], collectives: Collectives | None, log: CollectiveLog) -> dict:
        assert collectives is not None
        inbox = {name: values[name] for name in io.inputs if name in values}
        whole = _partition_env(partition.id, io, inbox, params, values)
        whole.update((name, params[name]) for name in stored)
        env = {**resident, **rank_received(sharding, model, whole, group_rank)}
        collected: set[str] = set()
        for piece, runner in zip(pieces, runners, strict=True):
            env = runner(env)
            if piece.collective is not None:
                env[piece.collective.output[0]] = _collective(
                    piece.collective, env, collectives, log
                )
                collected.add(piece.collective.output[0])
        return _whole_outputs(sharding, env, keep, set(inbox), collected, collectives, where, log)

    return PartitionStep(partition.id, run, tuple(io.inputs))


def build_step(
    graph: Graph,
    plan: Plan,
    partition: Partition,
    *,
    group_rank: int,
    engine: str,
    keep: frozenset[str],
    weights: WeightStore,
    params: Mapping[str, Any],
    config: EngineConfig,
) -> PartitionStep:
    """The step that runs ``partition`` on one rank with ``engine`` ("ort" or "numpy").

    Raises:
        EngineError: onnxruntime cannot load the stage's model.
        PlanExecutionError: a tensor-parallel partition's shards differ from the model's.
    """
    if len(partition.devices) > 1:
        return _group_step(graph, plan, partition, group_rank, params, keep, engine, config)
    if engine == "numpy":
        return _numpy_pipeline_step(graph, partition, params, keep)
    if engine != "ort":
        raise EngineError(f"unknown engine {engine!r}")
    return _ort_pipeline_step(graph, plan, partition, weights, config)
