"""Running a whole graph, or a plan partition by partition, with the NumPy kernels.

`run_graph` executes the model in topological order, dropping every tensor
after its last use. `run_plan` executes the plan's partitions in plan order;
each partition starts empty and gets values only from:

- its resident parameters (initializers, and constants computed once at load
  time by the folded nodes) and the KV-cache inputs it reads;
- the plan's transfers into it (``src = -1`` brings a model input from the host).

A tensor a partition needs that no transfer brings is a `PlanExecutionError`
naming the tensor and both partitions, so running a plan also proves that its
transfer list is complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from partitioner.executor.errors import ExecutorError
from partitioner.executor.runtime import run_nodes
from partitioner.executor.weights import WeightStore
from partitioner.plan import HOST, Plan
from passes.functions import expand_nodes
from passes.ir import Graph

__all__ = [
    "PlanExecutionError",
    "PartitionRun",
    "PlanRun",
    "run_graph",
    "run_plan",
    "constant_values",
]


class PlanExecutionError(ExecutorError):
    """The plan cannot be executed as written (a transfer is missing or comes from the wrong place)."""

    exit_code = 1


@dataclass(frozen=True)
class PartitionRun:
    """What one partition held while it ran.

    Attributes:
        peak_bytes: activation bytes actually held at once (parameters excluded).
        planned_bytes: the plan's ``activation_bytes`` estimate for it.
    """

    id: int
    peak_bytes: int
    planned_bytes: int


@dataclass(frozen=True)
class PlanRun:
    outputs: dict[str, Any]
    partitions: tuple[PartitionRun, ...]
    transferred: dict[str, Any]


def _opsets(graph: Graph) -> dict[str, int]:
    return {o.domain: o.version for o in graph.model.opset_import}


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, list):
        return sum(_nbytes(v) for v in value)
    return 0


def constant_values(graph: Graph, weights: WeightStore) -> dict[str, Any]:
    """Values of every parameter a runtime node reads: initializers and folded constants."""
    folded = [i for i in graph.topological_order() if graph.nodes[i].folded]
    wanted = {
        name
        for n in graph.nodes
        if not n.folded
        for name in n.present_inputs
        if name in graph.tensors and graph.tensors[name].is_param
    }
    wanted |= {o for o in graph.outputs if graph.tensors[o].is_param}
    needed_by_folded = {name for i in folded for name in graph.nodes[i].present_inputs}
    values: dict[str, Any] = {
        name: weights.get(name) for name in (wanted | needed_by_folded) if name in weights
    }
    for name in needed_by_folded - set(values):
        t = graph.tensors.get(name)
        if t is not None and not t.is_param and t.is_static:
            # Folded Shape/Size nodes read only the static shape: a zero-stride stand-in.
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
            values[name] = np.broadcast_to(np.zeros((), dtype), t.shape)
    if folded:
        values = run_nodes(expand_nodes(graph, folded), values, _opsets(graph), keep=wanted)
    return {name: values[name] for name in wanted if name in values}


def run_graph(
    graph: Graph, feeds: Mapping[str, Any], weights: WeightStore | None = None
) -> dict[str, Any]:
    """The model's outputs for ``feeds``, executing every node in topological order."""
    weights = weights or WeightStore(graph)
    order = graph.topological_order()
    used = {name for n in graph.nodes for name in n.present_inputs}
    values = {name: weights.get(name) for name in used if name in weights}
    values.update(feeds)
    env = run_nodes(expand_nodes(graph, order), values, _opsets(graph), keep=graph.outputs)
    return {name: env[name] for name in graph.outputs}


def _external_inputs(graph: Graph, nodes: list[int]) -> list[str]:
    """Values the nodes read that none of them produces, in first-use order."""
    produced: set[str] = set()
    needed: dict[str, None] = {}
    for i in nodes:
        node = graph.nodes[i]
        for name in node.present_inputs:
            if name not in produced:
                needed.setdefault(name)
        produced.update(node.present_outputs)
    return list(needed)


def run_plan(
    graph: Graph,
    plan: Plan,
    feeds: Mapping[str, Any],
    weights: WeightStore | None = None,
) -> PlanRun:
    """Execute ``plan`` partition by partition; tensors move only through its transfers."""
    weights = weights or WeightStore(graph)
    params = constant_values(graph, weights)
    opsets = _opsets(graph)
    owner = {n: p.id for p in plan.partitions for n in p.nodes}
    host: dict[str, Any] = dict(feeds)
    outbox: dict[int, dict[str, Any]] = {HOST: host}
    leaving: dict[int, set[str]] = {}
    for t in plan.transfers:
        leaving.setdefault(t.src, set()).add(t.tensor)
    outputs: dict[str, Any] = {}
    transferred: dict[str, Any] = {}
    runs = []
    for p in plan.partitions:
        env: dict[str, Any] = {}
        for t in plan.transfers:
            if t.dst != p.id:
                continue
            source = outbox.get(t.src)
            if source is None or t.tensor not in source:
                where = "the host" if t.src == HOST else f"partition {t.src}"
                raise PlanExecutionError(
                    f"transfer of {t.tensor!r} from {where} to partition {p.id}: {where} does not hold it "
                    "(it runs later, or neither produced nor received it)"
                )
            env[t.tensor] = source[t.tensor]
            transferred[t.tensor] = source[t.tensor]
        runtime = [n for n in p.nodes if not graph.nodes[n].folded]
        for name in _external_inputs(graph, runtime):
            tensor = graph.tensors.get(name)
            if name in env:
                continue
            if tensor is not None and tensor.is_param:
                env[name] = params[name]
            elif tensor is not None and tensor.is_kv_cache and name in feeds:
                env[name] = feeds[name]  # resident on the stage that reads it
            else:
                producer = tensor.producer if tensor is not None else None
                where = "the host" if producer is None else f"partition {owner.get(producer)}"
                raise PlanExecutionError(
                    f"partition {p.id} needs tensor {name!r} from {where}, but the plan has no transfer "
                    f"bringing it to partition {p.id}"
                )
        resident = {
            name
            for name in env
            if graph.tensors.get(name) is not None and graph.tensors[name].is_param
        }
        keep = leaving.get(p.id, set()) | {
            o for o in graph.outputs if any(o in graph.nodes[n].outputs for n in runtime)
        }
        peak = 0

        def observe(local: Mapping[str, Any], resident: set[str] = resident) -> None:
            nonlocal peak
            peak = max(peak, sum(_nbytes(v) for k, v in local.items() if k not in resident))

        result = run_nodes(expand_nodes(graph, runtime), env, opsets, keep=keep, observe=observe)
        outbox[p.id] = result
        outputs.update({o: result[o] for o in graph.outputs if o in result})
        runs.append(PartitionRun(p.id, peak, p.activation_bytes))
    for name in graph.outputs:
        # Outputs no partition makes: parameters, or model inputs passed straight through.
        if name not in outputs and name in params:
            outputs[name] = params[name]
        elif name not in outputs and name in feeds:
            outputs[name] = feeds[name]
    return PlanRun(
        {name: outputs[name] for name in graph.outputs if name in outputs}, tuple(runs), transferred
    )
