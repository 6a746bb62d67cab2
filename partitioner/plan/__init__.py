"""The placement plan: a public, versioned JSON contract (../shared/DESIGN.md).

- `document`: the frozen dataclasses (`Plan`, `Partition`, `Transfer`, ...) and
  their deterministic JSON;
- `schema`: the JSON Schema shipped beside it (``plan_schema.json``) and the
  strict, finite JSON reader;
- `io`: reading a plan file safely (`load_plan`);
- `validate`: the independent checker behind ``partition validate``: it uses
  no solver code.

This package imports nothing else of `partitioner`, so every consumer (CLI,
simulator, executor, export, runtime) can read plans without the planner.
"""

from partitioner.plan.document import (
    HOST,
    Bottleneck,
    Candidate,
    Collective,
    Estimate,
    ModelInfo,
    Parallelism,
    Partition,
    Plan,
    Provenance,
    Region,
    Shard,
    SolverInfo,
    TargetInfo,
    Transfer,
    spec_problem,
    transfer_order,
)
from partitioner.plan.io import load_plan, read_plan_text
from partitioner.plan.schema import (
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    PlanError,
    check_schema,
    parse_plan_json,
    plan_schema,
)
from partitioner.plan.validate import validate_plan

__all__ = [
    "SCHEMA_VERSION",
    "READABLE_VERSIONS",
    "HOST",
    "Bottleneck",
    "Candidate",
    "Collective",
    "Estimate",
    "ModelInfo",
    "Parallelism",
    "Partition",
    "Plan",
    "PlanError",
    "Provenance",
    "Region",
    "Shard",
    "SolverInfo",
    "TargetInfo",
    "Transfer",
    "check_schema",
    "load_plan",
    "parse_plan_json",
    "plan_schema",
    "read_plan_text",
    "spec_problem",
    "transfer_order",
    "validate_plan",
]
