"""From an ONNX file to an analysed graph: the IR, transform passes, analyses.

The flow, one call each::

    from passes import load, node_costs, Coarsen

    graph = load("model.onnx", dims={"batch": 1})   # parse, --dim, shapes, fold, names
    costs = node_costs(graph)                        # FLOPs, bytes, params per node
    weights = [c.flops for c in costs.nodes]         # any per-node weight, e.g. seconds
    blocks = Coarsen(costs, weights, 256)(graph).model  # about 256 blocks, still a DAG

- `ir`: `Graph`, `Node`, `Tensor` over one model's top-level graph; nodes keep
  their index in ``graph.node``, which plans use.
- `load`: reading a model safely (external data stays in the model's folder and
  is never loaded for planning) and running the transforms.
- `transforms`: dims, shape inference, constant folding, coarsening.
- `analysis`: costs, activation liveness, edge bytes, attention patterns, and
  what a set of nodes reads, holds and sends (`partition_io`, `residency`,
  `tensor_flows`), shared by coarsening, the planners and the executor.

This layer may import `targets`, never `partitioner`. Names are loaded on first
use, so importing one module of `passes` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Graph": "ir",
    "Node": "ir",
    "Tensor": "ir",
    "load": "load",
    "read_model": "load",
    "CostReport": "analysis",
    "node_costs": "analysis",
    "activation_liveness": "analysis",
    "attention_patterns": "analysis",
    "partition_io": "analysis",
    "residency": "analysis",
    "tensor_flows": "analysis",
    "BlockGraph": "transforms.coarsen",
    "Coarsen": "transforms.coarsen",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` only when it is first used."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
