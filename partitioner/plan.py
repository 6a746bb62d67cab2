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
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from targets.errors import PartitionError

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
    "transfer_order",
    "HOST",
]

SCHEMA_VERSION = 1
HOST = -1
"""Partition id used by transfers from or to the host (model inputs and outputs)."""

SOLVER_STATUSES = ("OPTIMAL", "FEASIBLE", "HEURISTIC")


class PlanError(PartitionError):
    """A plan file is unreadable, not JSON, or not a plan of a schema version we know."""


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
    name: str
    kind: str
    sha256: str
    spec: Mapping[str, Any]


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
            "target": {**asdict(self.target), "spec": _plain(self.target.spec)},
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
            target=TargetInfo(**doc["target"]),
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


def _refuse_constant(name: str) -> Any:
    raise PlanError(f"holds {name}; plans hold finite numbers only")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise PlanError(f"holds the number {text[:40]}, which overflows; plans hold finite numbers")
    return value


def parse_plan_json(text: str, *, source: str = "plan") -> Any:
    """The JSON document of a plan file, not yet schema-checked.

    NaN, Infinity and numbers that overflow a double are refused (JSON has no
    such values; Python's parser accepts them), as are documents nested too
    deeply to walk.

    Raises:
        PlanError: the text is not JSON, or not finite JSON.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except PlanError as err:
        raise PlanError(f"{source} {err}") from None
    except json.JSONDecodeError as err:
        raise PlanError(
            f"{source} is not JSON ({err.msg} at line {err.lineno}); is it a plan file?"
        ) from err
    except RecursionError:
        raise PlanError(f"{source} is nested too deeply to be a plan file") from None
    except ValueError as err:  # e.g. an integer literal longer than Python converts
        raise PlanError(f"{source} is not a plan file: {str(err)[:120]}") from None


def _plain(value: Any) -> Any:
    """Mappings and tuples as JSON-ready dicts and lists; reject NaN/inf early."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("plans hold finite numbers only")
    return value


def plan_schema() -> dict[str, Any]:
    """The JSON Schema shipped in the package (partitioner/plan_schema.json)."""
    text = resources.files("partitioner").joinpath("plan_schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def check_schema(doc: Any) -> list[str]:
    """Schema violations of ``doc`` as one-line messages, first the most relevant."""
    import jsonschema

    if isinstance(doc, Mapping) and doc.get("schema_version") not in (None, SCHEMA_VERSION):
        return [
            f"schema_version {doc.get('schema_version')!r} is not supported "
            f"(this partition reads version {SCHEMA_VERSION}); upgrade partition"
        ]
    validator = jsonschema.Draft202012Validator(plan_schema())
    try:
        errors = sorted(
            validator.iter_errors(doc),
            key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))),
        )
    except RecursionError:
        return ["(top level): nested too deeply to be a plan"]
    out = []
    for e in errors:
        where = "/".join(str(p)[:60] for p in e.absolute_path) or "(top level)"
        out.append(f"{where}: {_short(e.message)}")
    return out


def _short(message: str, limit: int = 200) -> str:
    """One line of at most ``limit`` characters: jsonschema quotes whole values in messages."""
    line = " ".join(message.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
