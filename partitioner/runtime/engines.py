"""What one rank computes per micro-batch, with onnxruntime or the NumPy kernels.

A rank runs its stage's partitions in plan order (`PartitionStep` each):

- a single-device partition runs as its export stage model
  (`partitioner.export.stages.pipeline_stage_model`) in an onnxruntime session
  whose weights are handed over as external initializers (memory-mapped, never
  copied into the graph), or through `partitioner.executor.run_partition`;
- a tensor-parallel partition runs its rank graph
  (`passes.transforms.tensor_parallel.rank_graph`) segment by segment, the
  nodes between two collectives, each collective performed by the caller's
  `Collectives` (torch.distributed in a run). Under onnxruntime each segment is
  a small session of its own, built on the first micro-batch.

What leaves a tensor-parallel rank is whole: received values as they came,
collective results as every rank holds them, tensors left split on an axis
(a KV cache split on its heads) gathered from the group. Nothing here imports
torch: the collectives arrive as an object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import onnx
from onnx import numpy_helper

from partitioner.executor.graph_run import run_partition
from partitioner.executor.reference import ort_value, session_run
from partitioner.executor.runtime import run_nodes
from partitioner.executor.tensor_parallel import Segment
from partitioner.executor.weights import WeightStore
from partitioner.export.stages import pipeline_stage_model
from partitioner.export.weights import INLINE_LIMIT_BYTES, pointed
from partitioner.plan import Partition, Plan
from passes.analysis.partition_io import partition_io
from passes.ir import Graph
from targets.errors import PartitionError

__all__ = [
    "ENGINES", "Collectives", "CollectiveLog", "EngineConfig", "PartitionStep", "EngineError",
]  # fmt: skip

ENGINES = ("ort", "numpy")


class EngineError(PartitionError):
    """A stage could not be built or run."""


class Collectives(Protocol):
    """A tensor-parallel group's collectives (each rank calls them in the same order)."""

    def all_reduce(self, value: np.ndarray) -> np.ndarray: ...

    def all_gather(self, value: np.ndarray, axis: int) -> np.ndarray: ...


@dataclass
class CollectiveLog:
    """Seconds a step run spent in collectives, each ``(name, start, duration)`` for the
    trace: the plan's own (``planned``), and the gathers that make a tensor-parallel
    group's split outputs whole for rank 0's check and the next stage (``gathered``: not in
    the plan, as a serving runtime keeps, say, a KV cache split across its ranks)."""

    planned: list[tuple[str, float, float]] = field(default_factory=list)
    gathered: list[tuple[str, float, float]] = field(default_factory=list)


@dataclass
class PartitionStep:
    """One partition as one rank runs it: ``run(values, collectives, log) -> kept values``."""

    partition: int
    run: Callable[[Mapping[str, Any], Collectives | None, CollectiveLog], dict[str, Any]]
    inputs: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class EngineConfig:
    """How a rank's onnxruntime sessions run: CPU threads, or on one CUDA device."""

    threads: int = 1
    cuda_device: int | None = None

    def providers(self) -> list[Any]:
        if self.cuda_device is None:
            return ["CPUExecutionProvider"]
        return [("CUDAExecutionProvider", {"device_id": self.cuda_device}), "CPUExecutionProvider"]


def _session(
    model: onnx.ModelProto, external: Mapping[str, np.ndarray], config: EngineConfig
) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # fatal only: its errors reach the user as our one line, not also as its log
    options.log_severity_level = 4
    options.intra_op_num_threads = config.threads
    options.inter_op_num_threads = 1
    if external:
        names = list(external)
        values = [ort_value(external[n]) for n in names]
        options.add_external_initializers(names, values)
    try:
        return ort.InferenceSession(
            model.SerializeToString(), options, providers=config.providers()
        )
    except Exception as err:  # onnxruntime raises its own types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise EngineError(f"onnxruntime cannot load {model.graph.name}: {first[:300]}") from err


def _external_weights(model: onnx.ModelProto, weights: WeightStore) -> dict[str, np.ndarray]:
    """The externally stored initializers of ``model``, memory-mapped: onnxruntime takes
    them from here (`add_external_initializers`) rather than from files of its own."""
    return {
        init.name: weights.get(init.name)
        for init in model.graph.initializer
        if init.data_location == onnx.TensorProto.EXTERNAL
    }


def _ort_pipeline_step(
    graph: Graph, plan: Plan, partition: Partition, weights: WeightStore, config: EngineConfig
) -> PartitionStep:
    stage = pipeline_stage_model(graph, plan, partition, weights)
    model = stage.model
    external = _external_weights(model, weights)
    session = _session(model, external, config)
    names = [o.name for o in session.get_outputs()]

    def run(values: Mapping[str, Any], _c: Collectives | None, _log: CollectiveLog) -> dict:
        feeds = {name: values[name] for name in stage.inputs}
        return dict(zip(names, session_run(session, names, feeds), strict=True))

    return PartitionStep(partition.id, run, stage.inputs)


def _numpy_pipeline_step(
    graph: Graph, partition: Partition, params: Mapping[str, Any], keep: frozenset[str]
) -> PartitionStep:
    io = partition_io(graph, partition.nodes)

    def run(values: Mapping[str, Any], _c: Collectives | None, _log: CollectiveLog) -> dict:
        inbox = {name: values[name] for name in io.inputs if name in values}
        return run_partition(graph, partition, inbox, params, values, keep=keep).outbox

    return PartitionStep(partition.id, run, tuple(io.inputs))


def _segment_runner(
    segment: Segment,
    opsets: Mapping[str, int],
    engine: str,
    config: EngineConfig,
    resident: Mapping[str, np.ndarray],
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Run one segment over a rank's values; under onnxruntime, as its own session, the
    rank's ``resident`` values (its parameters, the same every run) its initializers."""
    if engine == "numpy":
        return lambda env: run_nodes(segment.nodes, env, opsets, keep=segment.keep)
    made = {o for n in segment.nodes for o in n.output if o}
    sessions: dict[str, Any] = {}

    def run(env: dict[str, Any]) -> dict[str, Any]:
        if not segment.nodes:
            return {k: v for k, v in env.items() if k in segment.keep}
        if "s" not in sessions:
            sessions["s"] = _segment_session(segment, env, made, opsets, config, resident)
        session, inputs, outputs = sessions["s"]
        results = session_run(session, outputs, {name: env[name] for name in inputs})
        out = {k: v for k, v in env.items() if k in segment.keep}
        out.update(zip(outputs, results, strict=True))
        return out

    return run


def _segment_session(
    segment: Segment,
    env: Mapping[str, Any],
    made: set[str],
    opsets: Mapping[str, int],
    config: EngineConfig,
    resident: Mapping[str, np.ndarray],
) -> tuple[Any, list[str], list[str]]:
    """The segment as a session: what it reads of ``resident`` as initializers taken from
    memory (onnxruntime pre-packs them; fed every run, one rank's step of a small decode
    model ran 2.3x slower), the rest as inputs; (session, input names, output names)."""
    helper = onnx.helper
    read = list(dict.fromkeys(i for n in segment.nodes for i in n.input if i and i not in made))
    kept = {name: resident[name] for name in read if name in resident}
    # small ones (shapes, scales) inline, where shape inference can read them
    inline = [
        numpy_helper.from_array(v, n) for n, v in kept.items() if v.nbytes <= INLINE_LIMIT_BYTES
    ]
    held = {n: v for n, v in kept.items() if v.nbytes > INLINE_LIMIT_BYTES}
    fed = [name for name in read if name not in kept]
    inputs = [
        helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(np.asarray(env[name]).dtype), None
        )
        for name in fed
    ]
    outputs = sorted(made & segment.keep)
    graph = helper.make_graph(
        list(segment.nodes),
        "segment",
        inputs,
        [helper.make_value_info(o, onnx.TypeProto()) for o in outputs],
        inline + [_in_memory(name, value) for name, value in held.items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()]
    )
    model.ir_version = min(model.ir_version, 10)
    return _session(model, held, config), fed, outputs


def _in_memory(name: str, value: np.ndarray) -> onnx.TensorProto:
    """An initializer whose data onnxruntime takes from ``value`` itself
    (`add_external_initializers`, in `_session`), not from a file or a copy."""
    kind = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
    return pointed(name, kind, value.shape, "in-memory", 0, value.nbytes)


def _collective(
    node: onnx.NodeProto, env: dict[str, Any], collectives: Collectives, log: CollectiveLog
) -> np.ndarray:
    value = np.ascontiguousarray(env.pop(node.input[0]))
    start = time.perf_counter()
    if node.op_type == "AllReduce":
        result = collectives.all_reduce(value)
    else:
        axis = next(a.i for a in node.attribute if a.name == "axis")
        result = collectives.all_gather(value, axis)
    log.planned.append((node.output[0], start, time.perf_counter() - start))
    return result
