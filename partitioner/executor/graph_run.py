"""Running a whole graph, or a plan partition by partition, with the NumPy kernels.

`run_graph` executes the model in topological order, dropping every tensor
after its last use. `run_partition` runs one partition on its own, given only
what was sent to it (what a device of a distributed runtime would do).
`run_plan` runs the plan's partitions in plan order with `run_partition`,
handing values over only through the plan's transfers; each partition starts
empty and gets values only from:

- its resident parameters (initializers, and constants computed once at load
  time by the folded nodes) and the KV-cache inputs it reads;
- the plan's transfers into it (``src = -1`` brings a model input from the host).

A tensor a partition needs that no transfer brings is a `PlanExecutionError`
naming the tensor and both partitions, so running a plan also proves that its
transfer list is complete.

A partition with several devices is a tensor-parallel group: it runs through
`partitioner.executor.tensor_parallel.run_group`, every rank in lockstep with
the plan's own shards and collectives, once they agree with what
`passes.analysis.sharding` says for its nodes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from partitioner.executor.errors import ExecutorError
from partitioner.executor.runtime import run_nodes
from partitioner.executor.weights import WeightStore
from partitioner.plan import HOST, Partition, Plan
from passes.analysis.cache_append import in_place_outputs
from passes.analysis.partition_io import PartitionIO, partition_io
from passes.analysis.stored_weights import stored_inputs
from passes.functions import expand_nodes
from passes.ir import Graph

if TYPE_CHECKING:
    from partitioner.executor.tensor_parallel import GroupResult
    from passes.analysis.sharding import ShardingPlan

__all__ = [
    "PlanExecutionError",
    "MissingInputError",
    "PartitionResult",
    "PartitionRun",
    "PlanRun",
    "run_graph",
    "run_partition",
    "run_plan",
    "constant_values",
    "held_bytes_planned",
]


class PlanExecutionError(ExecutorError):
    """The plan cannot be executed as written (a transfer is missing or comes from the wrong place)."""

    exit_code = 1


class MissingInputError(PlanExecutionError):
    """A partition reads a value it neither received nor holds resident.

    `run_plan` turns it into a message naming the partition that should have sent it.
    """

    def __init__(self, partition_id: int, tensor: str) -> None:
        super().__init__(
            f"partition {partition_id} needs tensor {tensor!r}, which it neither received "
            "nor holds resident"
        )
        self.partition_id = partition_id
        self.tensor = tensor


@dataclass(frozen=True)
class PartitionRun:
    """What one partition held while it ran.

    Attributes:
        peak_bytes: bytes actually held at once besides parameters: activations,
            received values (relayed ones too) and KV-cache inputs.
        planned_bytes: what the plan's memory leaves for those with one micro-batch in
            flight (`held_bytes_planned`).
    """

    id: int
    peak_bytes: int
    planned_bytes: int


@dataclass(frozen=True)
class PlanRun:
    """What running a plan gave.

    Attributes:
        outputs: the model's outputs by name.
        partitions: what each partition held.
        transferred: every value a transfer brought, by tensor name.
        collected: every collective's tensor, whole, as its group held it afterwards.
    """

    outputs: dict[str, Any]
    partitions: tuple[PartitionRun, ...]
    transferred: dict[str, Any]
    collected: dict[str, Any] = field(default_factory=dict)


def held_bytes_planned(partition: Partition, microbatches: int) -> int:
    """The plan's memory of a partition less its parameters and the activations of the
    other micro-batches in flight: one micro-batch's activations, its transfer buffers
    and its KV cache, which is what a run of one micro-batch may hold besides weights."""
    extra = max(microbatches, 1) - 1
    return partition.memory_bytes - partition.param_bytes - extra * partition.activation_bytes


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
    wanted |= set(stored_inputs(graph, wanted))  # tensor-parallel ranks keep them quantised
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


@dataclass(frozen=True)
class PartitionResult:
    """What running one partition gave.

    Attributes:
        outbox: the values it was asked to keep, by name: those it produced, and
            those it received and passes on (a relay); everything else was dropped
            after its last use.
        peak_bytes: bytes it held at once while running, parameters excluded
            (activations, received values and KV-cache inputs count).
    """

    outbox: dict[str, Any]
    peak_bytes: int


def _partition_env(
    partition_id: int,
    io: PartitionIO,
    inbox: Mapping[str, Any],
    params: Mapping[str, Any],
    kv_cache: Mapping[str, Any],
) -> dict[str, Any]:
    """The values a partition starts with: what it received, then what it holds resident."""
    env = dict(inbox)
    param_names, kv_names = set(io.params), set(io.kv_cache)
    for name in io.inputs:
        if name in env:
            continue
        if name in param_names:
            if name not in params:
                raise PlanExecutionError(
                    f"partition {partition_id} reads parameter {name!r}, but no value was given for it"
                )
            env[name] = params[name]
        elif name in kv_names and name in kv_cache:
            env[name] = kv_cache[name]  # resident on the stage that reads it
        else:
            raise MissingInputError(partition_id, name)
    return env


def run_partition(
    graph: Graph,
    partition: Partition,
    inbox: Mapping[str, Any],
    params: Mapping[str, Any],
    kv_cache: Mapping[str, Any],
    *,
    keep: Collection[str],
    opsets: Mapping[str, int] | None = None,
    in_place: Collection[str] = (),
) -> PartitionResult:
    """Run one partition's runtime nodes on their own, as one device would.

    Needs nothing of the rest of the plan, so a runtime can run each partition in
    its own process given what was sent to it.

    Args:
        graph: the IR.
        partition: the plan's partition (its ``nodes`` in an order that executes).
        inbox: the values transferred to it (model inputs from the host included).
        params: parameter values by name (`constant_values`); a superset is fine.
        kv_cache: KV-cache graph inputs by name; those it reads are resident here.
        keep: names to return in the outbox: what it sends on and the graph outputs it makes.
        opsets: domain -> opset version; the graph's own by default.
        in_place: outputs the plan's runtime writes into resident memory (a fused
            runtime's KV-cache appends): not counted as held.

    Raises:
        MissingInputError: it reads a value it neither received nor holds resident.
    """
    io = partition_io(graph, partition.nodes)
    env = _partition_env(partition.id, io, inbox, params, kv_cache)
    resident = {name for name in env if name in graph.tensors and graph.tensors[name].is_param}
    resident |= set(in_place)
    peak = 0

    def observe(local: Mapping[str, Any]) -> None:
        nonlocal peak
        peak = max(peak, sum(_nbytes(v) for k, v in local.items() if k not in resident))

    outbox = run_nodes(
        expand_nodes(graph, list(io.nodes)),
        env,
        _opsets(graph) if opsets is None else opsets,
        keep=keep,
        observe=observe,
    )
    return PartitionResult(outbox, peak)


def _no_transfer(graph: Graph, owner: Mapping[int, int], error: MissingInputError) -> str:
    """The plan-level message for a value a partition lacks: who should have sent it."""
    tensor = graph.tensors.get(error.tensor)
    producer = tensor.producer if tensor is not None else None
    where = "the host" if producer is None else f"partition {owner.get(producer)}"
    return (
        f"partition {error.partition_id} needs tensor {error.tensor!r} from {where}, but the plan "
        f"has no transfer bringing it to partition {error.partition_id}"
    )


def _inbox(
    plan: Plan, partition_id: int, outbox: Mapping[int, Mapping[str, Any]]
) -> dict[str, Any]:
    """The values the plan's transfers bring to a partition, from the outboxes of those that ran."""
    inbox: dict[str, Any] = {}
    for t in plan.transfers:
        if t.dst != partition_id:
            continue
        source = outbox.get(t.src)
        if source is None or t.tensor not in source:
            where = "the host" if t.src == HOST else f"partition {t.src}"
            raise PlanExecutionError(
                f"transfer of {t.tensor!r} from {where} to partition {partition_id}: {where} does not hold it "
                "(it runs later, or neither produced nor received it)"
            )
        inbox[t.tensor] = source[t.tensor]
    return inbox


def _run_group(
    graph: Graph,
    plan: Plan,
    partition: Partition,
    inbox: Mapping[str, Any],
    params: Mapping[str, Any],
    kv_cache: Mapping[str, Any],
    keep: Collection[str],
    opsets: Mapping[str, int],
    shardings: dict[int, ShardingPlan],
    in_place: Collection[str],
) -> GroupResult:
    """Run a tensor-parallel partition with the plan's shards and collectives."""
    # Imported here: tensor_parallel builds on this module, and only such plans need it.
    from partitioner.executor.tensor_parallel import group_sharding, run_group
    from passes.analysis.sharding import shard_graph

    degree = len(partition.devices)
    if degree not in shardings:
        shardings[degree] = shard_graph(graph, degree)
    sharding = group_sharding(graph, plan, partition, shardings[degree])
    return run_group(
        graph,
        sharding,
        partition.nodes,
        inbox,
        params,
        kv_cache,
        keep=keep,
        opsets=opsets,
        partition_id=partition.id,
        in_place=in_place,
    )


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
    outbox: dict[int, Mapping[str, Any]] = {HOST: dict(feeds)}
    leaving: dict[int, set[str]] = {}
    for t in plan.transfers:
        leaving.setdefault(t.src, set()).add(t.tensor)
    outputs: dict[str, Any] = {}
    transferred: dict[str, Any] = {}
    collected: dict[str, Any] = {}
    shardings: dict[int, ShardingPlan] = {}  # group size -> shard_graph's, computed once
    # what the plan's runtime appends in place, as its memory was counted
    in_place = in_place_outputs(graph, plan.target.spec.get("runtime", ""))
    runs = []
    for p in plan.partitions:
        inbox = _inbox(plan, p.id, outbox)
        transferred.update(inbox)
        io = partition_io(graph, p.nodes)
        made = {o for o in io.outputs if graph.tensors[o].is_graph_output}  # the run returns them
        keep = leaving.get(p.id, set()) | made
        try:
            if len(p.devices) > 1:
                group = _run_group(
                    graph, plan, p, inbox, params, feeds, keep, opsets, shardings, in_place
                )
                collected.update(group.collected)
                result = PartitionResult(group.outbox, group.peak_bytes)
            else:
                result = run_partition(
                    graph, p, inbox, params, feeds, opsets=opsets, keep=keep, in_place=in_place
                )
        except MissingInputError as error:
            raise PlanExecutionError(_no_transfer(graph, owner, error)) from None
        outbox[p.id] = result.outbox
        outputs.update({o: result.outbox[o] for o in graph.outputs if o in result.outbox})
        planned = held_bytes_planned(p, plan.parallelism.microbatches)
        runs.append(PartitionRun(p.id, result.peak_bytes, planned))
    for name in graph.outputs:
        # Outputs no partition makes: parameters, or model inputs passed straight through.
        if name not in outputs and name in params:
            outputs[name] = params[name]
        elif name not in outputs and name in feeds:
            outputs[name] = feeds[name]
    return PlanRun(
        {name: outputs[name] for name in graph.outputs if name in outputs},
        tuple(runs),
        transferred,
        collected,
    )
