"""NumPy reference executor: runs a model, or a plan partition by partition.

Every ONNX op the executor supports is a vectorised NumPy kernel registered per
op and opset (``kernels/``, looked up through ``registry``). On top of them:

- `run_nodes` / `run_model` (``runtime``): run ONNX nodes or a whole model;
- `run_graph` (``graph_run``): the project IR's graph, in topological order;
- `run_partition`: one plan partition on its own, given only the values sent
  to it (what one device of a distributed runtime does);
- `run_plan`: a whole plan, partition by partition, values moving only through
  its transfers, so a run proves the transfer list complete;
- `run_group` (``tensor_parallel``): one tensor-parallel partition, every rank
  in lockstep over its rank graph, collectives performed across the ranks;
- `verify_plan` (``verify``): `run_plan`'s outputs against onnxruntime's
  (``reference``), naming the first partition that diverges.

The names below are loaded on first use: ``import partitioner.executor`` stays
cheap (no kernels, no onnxruntime) for commands that only need an error class.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from partitioner.executor.errors import (
        ExecutorError,
        FeedError,
        KernelError,
        MissingValueError,
        UnsupportedOpError,
    )
    from partitioner.executor.graph_run import (
        MissingInputError,
        PartitionResult,
        PartitionRun,
        PlanExecutionError,
        PlanRun,
        constant_values,
        run_graph,
        run_partition,
        run_plan,
    )
    from partitioner.executor.runtime import (
        PreparedModel,
        missing_kernels,
        prepare_model,
        run_model,
        run_nodes,
    )
    from partitioner.executor.tensor_parallel import (
        GroupResult,
        check_group_sharding,
        group_sharding,
        run_group,
    )
    from partitioner.executor.verify import VerifyReport, make_inputs, verify_plan
    from partitioner.executor.weights import WeightStore

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ("ExecutorError", "FeedError", "KernelError", "MissingValueError", "UnsupportedOpError"),
        "errors",
    ),
    **dict.fromkeys(
        (
            "MissingInputError",
            "PartitionResult",
            "PartitionRun",
            "PlanExecutionError",
            "PlanRun",
            "constant_values",
            "run_graph",
            "run_partition",
            "run_plan",
        ),
        "graph_run",
    ),
    **dict.fromkeys(
        ("PreparedModel", "missing_kernels", "prepare_model", "run_model", "run_nodes"),
        "runtime",
    ),
    **dict.fromkeys(
        ("GroupResult", "check_group_sharding", "group_sharding", "run_group"), "tensor_parallel"
    ),
    **dict.fromkeys(("VerifyReport", "make_inputs", "verify_plan"), "verify"),
    "WeightStore": "weights",
}

__all__ = [
    "ExecutorError",
    "FeedError",
    "GroupResult",
    "KernelError",
    "MissingInputError",
    "MissingValueError",
    "PartitionResult",
    "PartitionRun",
    "PlanExecutionError",
    "PlanRun",
    "PreparedModel",
    "UnsupportedOpError",
    "VerifyReport",
    "WeightStore",
    "check_group_sharding",
    "constant_values",
    "group_sharding",
    "make_inputs",
    "missing_kernels",
    "prepare_model",
    "run_graph",
    "run_group",
    "run_model",
    "run_nodes",
    "run_partition",
    "run_plan",
    "verify_plan",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` only when it is first used."""
    module = _EXPORTS.get(name)
    if module is None:
        # Not ours: the import system then looks for a sub-module of that name.
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
