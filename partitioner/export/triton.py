"""A Triton model repository: one ONNX Runtime model per stage and an ensemble wiring them.

The configs are Triton's ``ModelConfig`` in protobuf text format, written here
without importing ``tritonclient`` (a dev-only dependency; the tests parse the
output with its ``model_config_pb2``). Tensor-parallel stages are refused:
Triton's onnxruntime backend cannot run their collective nodes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import onnx
from onnx import TensorProto

from partitioner.export.stages import StageModel
from targets.errors import PartitionError

__all__ = ["TritonError", "triton_repository", "ENSEMBLE_NAME"]

ENSEMBLE_NAME = "ensemble"

_TYPES = {
    TensorProto.FLOAT: "TYPE_FP32",
    TensorProto.FLOAT16: "TYPE_FP16",
    TensorProto.BFLOAT16: "TYPE_BF16",
    TensorProto.DOUBLE: "TYPE_FP64",
    TensorProto.INT8: "TYPE_INT8",
    TensorProto.INT16: "TYPE_INT16",
    TensorProto.INT32: "TYPE_INT32",
    TensorProto.INT64: "TYPE_INT64",
    TensorProto.UINT8: "TYPE_UINT8",
    TensorProto.UINT16: "TYPE_UINT16",
    TensorProto.UINT32: "TYPE_UINT32",
    TensorProto.UINT64: "TYPE_UINT64",
    TensorProto.BOOL: "TYPE_BOOL",
    TensorProto.STRING: "TYPE_STRING",
}


class TritonError(PartitionError):
    """The plan cannot be served by Triton's onnxruntime backend as exported."""


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid protobuf text-format string


def _tensor(kind: str, info: onnx.ValueInfoProto, where: str) -> str:
    t = info.type.tensor_type
    if t.elem_type not in _TYPES:
        raise TritonError(f"{where}: tensor {info.name!r} has a type Triton does not support")
    dims = ", ".join(str(d.dim_value) if d.HasField("dim_value") else "-1" for d in t.shape.dim)
    return (
        f"{kind} {{\n  name: {_q(info.name)}\n  data_type: {_TYPES[t.elem_type]}\n"
        f"  dims: [ {dims} ]\n}}\n"
    )


def _stage_config(stage: StageModel) -> str:
    g = stage.model.graph
    text = f'name: {_q(stage.name)}\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
    text += "".join(_tensor("input", i, stage.name) for i in g.input)
    text += "".join(_tensor("output", o, stage.name) for o in g.output)
    gpus = ", ".join(str(d) for d in stage.devices)
    return text + f"instance_group [\n  {{\n    kind: KIND_GPU\n    gpus: [ {gpus} ]\n  }}\n]\n"


def _map(kind: str, pairs: Sequence[tuple[str, str]]) -> str:
    return "".join(
        f"    {kind} {{\n      key: {_q(k)}\n      value: {_q(v)}\n    }}\n" for k, v in pairs
    )


def _ensemble_config(stages: Sequence[StageModel]) -> str:
    made: set[str] = set()
    host_in: dict[str, onnx.ValueInfoProto] = {}
    steps = []
    for s in stages:
        for i in s.model.graph.input:
            if i.name not in made:
                host_in.setdefault(i.name, i)
        # a relayed tensor is already made upstream: an ensemble tensor has one producer
        outs = [o.name for o in s.model.graph.output if o.name not in made]
        made.update(outs)
        steps.append(
            f"  step {{\n    model_name: {_q(s.name)}\n    model_version: -1\n"
            + _map("input_map", [(i.name, i.name) for i in s.model.graph.input])
            + _map("output_map", [(o, o) for o in outs])
            + "  }\n"
        )
    consumed = {i.name for s in stages for i in s.model.graph.input}
    final = {o.name: o for s in stages for o in s.model.graph.output if o.name not in consumed}
    text = f'name: "{ENSEMBLE_NAME}"\nplatform: "ensemble"\nmax_batch_size: 0\n'
    text += "".join(_tensor("input", i, ENSEMBLE_NAME) for i in host_in.values())
    text += "".join(_tensor("output", o, ENSEMBLE_NAME) for o in final.values())
    return text + "ensemble_scheduling {\n" + "".join(steps) + "}\n"


def triton_repository(stages: Sequence[StageModel]) -> dict[str, str]:
    """config.pbtxt text by model name: one per stage, plus the ensemble.

    Raises:
        TritonError: a stage holds collectives, or a tensor of a type Triton lacks.
    """
    tp = [s.name for s in stages if s.collectives]
    if tp:
        raise TritonError(
            f"stage {tp[0]} is tensor-parallel: Triton's onnxruntime backend cannot run its "
            "collective nodes; export without --triton"
        )
    configs = {s.name: _stage_config(s) for s in stages}
    configs[ENSEMBLE_NAME] = _ensemble_config(stages)
    return configs
