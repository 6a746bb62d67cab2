"""The placement plan (schema_version 1): a public, versioned JSON contract.

Serving stacks and CI read plans, so the field names and meanings here are
fixed by ../shared/DESIGN.md and by ``plan_schema.json`` shipped beside this
module. Changing them means a new ``schema_version``.

The JSON is deterministic: the same model, target, options and seed give
byte-identical bytes. There are no timestamps in the plan, and ``solver.wall_s``
holds solver effort measured in CP-SAT's *deterministic* seconds (0 for the
closed-form baselines); the measured wall-clock time is printed by the CLI.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from partitioner.plan.schema import (
    SCHEMA_VERSION,
    PlanError,
    check_schema,
    parse_plan_json,
    plan_schema,
)
from targets.errors import TargetError
from targets.loader import target_from_dict

__all__ = [
    "SCHEMA_VERSION",
    "ModelInfo",
    "TargetInfo",
    "SolverInfo",
    "Region",
    "Partition",
    "Transfer",
    "Bottleneck",
    "Estimate",
    "Provenance",
    "Plan",
    "PlanError",
    "plan_schema",
    "parse_plan_json",
    "spec_problem",
    "transfer_order",
    "HOST",
]

HOST = -1
"""Partition id used by transfers from or to the host (model inputs and outputs)."""

SOLVER_STATUSES = ("OPTIMAL", "FEASIBLE", "HEURISTIC")


@dataclass(frozen=True)
class ModelInfo:
    path: str
    sha256: str
    opset: int
    num_nodes: int
    param_bytes: int
    flops: int
    dims: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetInfo:
    """The target a plan was made for; ``spec`` is the full canonical target spec.

    Attributes:
        problem: Set when the plan was read from JSON (`Plan.from_dict`) and its
            spec does not rebuild into a target, or rebuilds into another kind or
            sha256; `validate_plan` reports it. Not part of the JSON, nor of equality.
    """

    name: str
    kind: str
    sha256: str
    spec: Mapping[str, Any]
    problem: str | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "sha256": self.sha256, "spec": self.spec}

    @staticmethod
    def from_dict(doc: Mapping[str, Any]) -> TargetInfo:
        """Read a schema-checked ``target`` section, rebuilding its spec with `targets.loader`."""
        info = TargetInfo(doc["name"], doc["kind"], doc["sha256"], doc["spec"])
        return replace(info, problem=spec_problem(info))


def spec_problem(info: TargetInfo) -> str | None:
    """What is wrong with a plan's target spec, as one line (None when nothing is).

    The spec is rebuilt with `targets.loader.target_from_dict`, which checks
    every field and its bounds, and must describe a target of the plan's kind
    whose canonical sha256 is the plan's ``target.sha256``.
    """
    try:
        target = target_from_dict(info.spec)
    except TargetError as err:
        return f"plan target spec: {err}; re-plan, or restore the spec the planner wrote"
    if target.kind != info.kind:
        return (
            f"plan target kind is '{info.kind}' but its spec describes a '{target.kind}' "
            "target; re-plan, or restore the kind the planner wrote"
        )
    if target.sha256 != info.sha256:
        return (
            f"plan target sha256 {info.sha256[:12]}… does not match its spec "
            f"({target.sha256[:12]}…): the spec changed after planning; re-plan for this target"
        )
    return None


@dataclass(frozen=True)
class SolverInfo:
    name: str
    status: str
    objective_s: float
    bound_s: float
    gap: float
    wall_s: float
    seed: int
    time_limit_s: float


@dataclass(frozen=True)
class Region:
    """A rectangle of cores (PEs) on one wafer: origin (x, y), size w x h."""

    wafer: int
    x: int
    y: int
    w: int
    h: int

    @property
    def cores(self) -> int:
        return self.w * self.h


@dataclass(frozen=True)
class Partition:
    id: int
    device: int
    stage: int
    nodes: tuple[int, ...]
    param_bytes: int
    activation_bytes: int
    memory_bytes: int
    capacity_bytes: int
    flops: int
    compute_s: float
    region: Region | None = None


@dataclass(frozen=True)
class Transfer:
    tensor: str
    bytes: int
    src: int
    dst: int
    time_s: float
    hops: int | None = None


@dataclass(frozen=True)
class Bottleneck:
    kind: str
    where: str


@dataclass(frozen=True)
class Estimate:
    """Latency, throughput and the bottleneck, plus target-specific figures in ``extra``."""

    latency_s: float
    throughput_per_s: float
    bottleneck: Bottleneck
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Provenance:
    tool: str
    version: str
    command: str


@dataclass(frozen=True)
class Plan:
    model: ModelInfo
    target: TargetInfo
    solver: SolverInfo
    partitions: tuple[Partition, ...]
    transfers: tuple[Transfer, ...]
    estimate: Estimate
    provenance: Provenance
    schema_version: int = SCHEMA_VERSION

    def partition(self, partition_id: int) -> Partition:
        for p in self.partitions:
            if p.id == partition_id:
                return p
        raise KeyError(partition_id)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document, keys in the order DESIGN.md lists them."""
        partitions = []
        for p in self.partitions:
            d = asdict(p)
            d["nodes"] = list(p.nodes)
            if p.region is None:
                del d["region"]
            partitions.append(d)
        transfers = []
        for t in self.transfers:
            d = asdict(t)
            if t.hops is None:
                del d["hops"]
            transfers.append(d)
        estimate = {
            "latency_s": self.estimate.latency_s,
            "throughput_per_s": self.estimate.throughput_per_s,
            "bottleneck": asdict(self.estimate.bottleneck),
            **dict(self.estimate.extra),
        }
        return {
            "schema_version": self.schema_version,
            "model": {**asdict(self.model), "dims": dict(self.model.dims)},
            "target": {**self.target.to_dict(), "spec": _plain(self.target.spec)},
            "solver": asdict(self.solver),
            "partitions": partitions,
            "transfers": transfers,
            "estimate": _plain(estimate),
            "provenance": asdict(self.provenance),
        }

    def to_json(self) -> str:
        """Deterministic JSON text (ends with a newline)."""
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    @staticmethod
    def from_dict(doc: Mapping[str, Any]) -> Plan:
        """Build a Plan from a document that already passed `check_schema`."""
        parts = []
        for p in doc["partitions"]:
            region = Region(**p["region"]) if p.get("region") is not None else None
            fields = {k: v for k, v in p.items() if k != "region"}
            fields["nodes"] = tuple(fields["nodes"])
            parts.append(Partition(region=region, **fields))
        est = dict(doc["estimate"])
        core = {k: est.pop(k) for k in ("latency_s", "throughput_per_s", "bottleneck")}
        return Plan(
            schema_version=doc["schema_version"],
            model=ModelInfo(**doc["model"]),
            target=TargetInfo.from_dict(doc["target"]),
            solver=SolverInfo(**doc["solver"]),
            partitions=tuple(parts),
            transfers=tuple(Transfer(**t) for t in doc["transfers"]),
            estimate=Estimate(
                latency_s=core["latency_s"],
                throughput_per_s=core["throughput_per_s"],
                bottleneck=Bottleneck(**core["bottleneck"]),
                extra=est,
            ),
            provenance=Provenance(**doc["provenance"]),
        )

    @staticmethod
    def from_json(text: str, *, source: str = "plan") -> Plan:
        """Parse and schema-check plan JSON.

        Raises:
            PlanError: not JSON, or not a schema_version 1 plan (names the first problem).
        """
        doc = parse_plan_json(text, source=source)
        problems = check_schema(doc)
        if problems:
            raise PlanError(f"{source} is not a valid plan: {problems[0]}")
        return Plan.from_dict(doc)


def transfer_order(t: Transfer) -> tuple[int, int, str]:
    """Sort key of a plan's transfers: by source (host first), destination (host last), tensor.

    A relayed tensor then always leaves a partition after it arrived there, and
    the order is deterministic.
    """
    return (t.src, t.dst if t.dst != HOST else 1 << 30, t.tensor)


def _plain(value: Any) -> Any:
    """Mappings and tuples as JSON-ready dicts and lists; reject NaN/inf early."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("plans hold finite numbers only")
    return value
