"""Planning, proving and consuming placement plans. The whole flow::

    from passes import load
    from partitioner import plan_model, validate_plan, verify_plan, simulate_plan
    from targets import load_target

    graph = load("model.onnx", {"batch": 1})         # passes: IR, shapes, folding
    target = load_target("h100x4")                   # targets: hardware + cost model
    plan = plan_model(graph, target).plan            # planning: coarsen, solve, lay out
    assert validate_plan(plan, graph) == []          # plan: the independent checker
    assert verify_plan(graph, plan, inputs).ok       # executor: NumPy run vs onnxruntime
    report = simulate_plan(plan)                     # simulate: latency, throughput, links

Sub-packages, in the order data flows through them:

- `planning`: one entry, `plan_model(graph, target, options)`, dispatching on the
  target's kind to the GPU pipeline planner or the wafer floorplanner; options
  are typed per kind (`GpuOptions`, `WaferOptions`).
- `solvers`: numbers in, assignments out (chain DP, CP-SAT pipeline, baselines,
  region sizing, floorplans); they import only `targets`.
- `plan`: the versioned JSON contract (`Plan`, schema v2, v1 still read), file
  reading, and `validate_plan`; it imports nothing else of `partitioner`.
- `executor`: NumPy kernels, `run_partition`, `run_plan`, `verify_plan`.
- `simulate`: a plan's step latency, throughput and link loads from the cost model.
- `commands` and `cli`: the `partition` console script.

Names are loaded on first use: ``import partitioner`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "plan_model": "planning",
    "GpuOptions": "planning",
    "WaferOptions": "planning",
    "Plan": "plan",
    "PlanError": "plan",
    "load_plan": "plan",
    "validate_plan": "plan",
    "verify_plan": "executor",
    "run_plan": "executor",
    "run_partition": "executor",
    "simulate_plan": "simulate",
    "UsageError": "errors",
    "InfeasibleError": "errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    """Import the sub-package that defines ``name`` only when it is first used."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
