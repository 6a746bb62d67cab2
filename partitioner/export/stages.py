"""The ONNX model of each plan stage, cut out of the loaded model.

Pipeline stages are cut with `onnx.utils.Extractor`: its inputs are the tensors
the plan transfers into the partition plus the KV-cache inputs resident there,
its outputs the tensors transferred out of it plus the graph outputs that stay
on it (KV-cache ``present.*``), so chaining the stages by tensor name computes
the whole model. Constants folded at load time are handed to the Extractor as
inputs (so it does not walk into the folded nodes) and then turned into
initializers holding their values, except the stored weights
(`passes.analysis.stored_weights`): a quantised weight keeps its initializers
and its DequantizeLinear, so the file holds the bytes the plan counted.

A relayed tensor (received and sent on unchanged) is a graph input that is
also a graph output: a pass-through under the same name, which ONNX and
onnxruntime accept. An Identity node would need a second name for it, and the
chain is wired by name.

Tensor-parallel stages use `passes.transforms.tensor_parallel.rank_graph`, one
model per rank; their collectives stay explicit ``partition.collective`` nodes
that a serving runtime must provide (onnxruntime cannot run them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx.utils
from onnx import numpy_helper

from partitioner.executor.runtime import run_nodes
from partitioner.executor.tensor_parallel import group_sharding
from partitioner.executor.weights import WeightStore
from partitioner.plan import HOST, Partition, Plan
from passes.analysis.partition_io import partition_io
from passes.analysis.sharding import shard_graph
from passes.analysis.stored_weights import stored_weights
from passes.errors import PassError
from passes.functions import expand_nodes
from passes.ir import Graph
from passes.transforms.tensor_parallel import rank_graph

__all__ = ["StageModel", "stage_models", "pipeline_stage_model", "folded_values"]


@dataclass(frozen=True)
class StageModel:
    """One file's worth of a plan: a partition, or one rank of a tensor-parallel one.

    ``model``'s initializers are inline, or still point at the source's weights
    (`partitioner.export.weights` streams them into the stage's own data file).
    """

    partition: int
    stage: int
    rank: int
    devices: tuple[int, ...]
    name: str
    model: onnx.ModelProto
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    collectives: bool


def _unique(names: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def boundary(graph: Graph, plan: Plan, partition: Partition) -> tuple[tuple[str, ...], ...]:
    """(inputs, outputs) of a partition: its transfers, plus what stays resident on it."""
    io = partition_io(graph, partition.nodes)
    received = [t.tensor for t in plan.transfers if t.dst == partition.id]
    sent = [t.tensor for t in plan.transfers if t.src == partition.id]
    # graph outputs no transfer takes to the host (KV-cache outputs) stay on this stage
    hosted = {t.tensor for t in plan.transfers if t.dst == HOST}
    resident_out = [o for o in io.outputs if o in graph.outputs and o not in hosted]
    return _unique(received + list(io.kv_cache)), _unique(sent + resident_out)


def folded_values(graph: Graph, weights: WeightStore, names: set[str]) -> dict[str, np.ndarray]:
    """Values of the folded constants among ``names``, computed from what the folded nodes read."""
    wanted = {n for n in names if graph.tensors[n].kind == "constant"}
    if not wanted:
        return {}
    folded = [i for i in graph.topological_order() if graph.nodes[i].folded]
    needed = {name for i in folded for name in graph.nodes[i].present_inputs}
    values: dict[str, Any] = {n: weights.get(n) for n in needed if n in weights}
    for name in needed - set(values):
        t = graph.tensors.get(name)
        if t is not None and not t.is_param and t.is_static:
            # folded Shape/Size nodes read only the static shape: a zero-stride stand-in
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
            values[name] = np.broadcast_to(np.zeros((), dtype), t.shape)
    opsets = {o.domain: o.version for o in graph.model.opset_import}
    env = run_nodes(expand_nodes(graph, folded), values, opsets, keep=wanted)
    return {n: np.asarray(env[n]) for n in wanted}


def _folded(partitions: list[Partition], graph: Graph) -> set[str]:
    """The folded constants these partitions read whose values a stage file holds: not the
    stored weights, which keep their quantised form and DequantizeLinear."""
    params = {n for p in partitions for n in partition_io(graph, p.nodes).params}
    constants = {n for n in params if graph.tensors[n].kind == "constant"}
    return constants - set(stored_weights(graph, constants))


def _pipeline_stage(
    graph: Graph, plan: Plan, partition: Partition, constants: Mapping[str, np.ndarray]
) -> StageModel:
    inputs, outputs = boundary(graph, plan, partition)
    io = partition_io(graph, partition.nodes)
    stored = stored_weights(graph, io.params)  # the Extractor takes their DequantizeLinear
    folded = [n for n in io.params if graph.tensors[n].kind == "constant" and n not in stored]
    model = onnx.utils.Extractor(graph.model).extract_model(list(inputs) + folded, list(outputs))
    runtime = {
        o for i in [*io.nodes, *(w.node for w in stored.values())] for o in graph.nodes[i].outputs
    }
    stray = [o for n in model.graph.node for o in n.output if o and o not in runtime]
    if stray:  # the plan's transfers do not close this partition off
        raise PassError(
            f"partition {partition.id}: its stage would compute {stray[0]!r}, "
            "which another partition makes; the plan's transfers are incomplete"
        )
    kept = [i for i in model.graph.input if i.name not in set(folded)]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.extend(numpy_helper.from_array(constants[n], n) for n in folded)
    model.graph.name = f"partition{partition.id}"
    return StageModel(
        partition.id, partition.stage, 0, partition.devices, f"partition{partition.id}",
        model, inputs, outputs, False,
    )  # fmt: skip


def pipeline_stage_model(
    graph: Graph, plan: Plan, partition: Partition, weights: WeightStore
) -> StageModel:
    """One single-device partition's model alone (what one rank of a runtime loads)."""
    return _pipeline_stage(
        graph, plan, partition, folded_values(graph, weights, _folded([partition], graph))
    )


def _rank_stages(graph: Graph, plan: Plan, partition: Partition) -> list[StageModel]:
    """One model per rank; parameters are declared (source, split) and streamed later."""
    degree = len(partition.devices)
    sharding = group_sharding(graph, plan, partition, shard_graph(graph, degree))
    stages = []
    for rank, device in enumerate(partition.devices):
        model = rank_graph(graph, sharding, rank, partition.nodes)
        stages.append(
            StageModel(
                partition.id,
                partition.stage,
                rank,
                (device,),
                f"partition{partition.id}_rank{rank}",
                model,
                tuple(i.name for i in model.graph.input),
                tuple(o.name for o in model.graph.output),
                True,
            )  # fmt: skip
        )
    return stages


def stage_models(graph: Graph, plan: Plan, weights: WeightStore) -> list[StageModel]:
    """Every stage file's model, in the plan's partition order (an order that executes)."""
    readers = [p for p in plan.partitions if len(p.devices) == 1]
    constants = folded_values(graph, weights, _folded(readers, graph))
    stages: list[StageModel] = []
    for p in plan.partitions:
        if len(p.devices) > 1:
            stages.extend(_rank_stages(graph, plan, p))
        else:
            stages.append(_pipeline_stage(graph, plan, p, constants))
    return stages
