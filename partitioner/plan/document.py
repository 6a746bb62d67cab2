"""The placement plan (schema_version 2): a public, versioned JSON contract.

Serving stacks and CI read plans, so the field names and meanings here are
fixed by ../shared/DESIGN.md and by ``plan_schema.json`` shipped beside this
module. Changing them means a new ``schema_version``.

The JSON is deterministic: the same model, target, options and seed give
byte-identical bytes. There are no timestamps in the plan, and ``solver.effort_s``
holds solver effort measured in CP-SAT's *deterministic* seconds (0 for the
closed-form baselines); the measured wall-clock time is printed by the CLI.

Version 1 plans are still read: `Plan.from_dict` upgrades them (`plan.v1`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from partitioner.plan.load_model import LoadModel, load_model_from_dict
from partitioner.plan.schema import (
    SCHEMA_VERSION,
    PlanError,
    check_schema,
    parse_plan_json,
    plan_schema,
)
from partitioner.plan.target import TargetInfo, spec_problem
from partitioner.plan.v1 import upgrade_v1
from targets.gpu import HOST

__all__ = [
    "SCHEMA_VERSION",
    "ModelInfo",
    "TargetInfo",
    "SolverInfo",
    "Candidate",
    "Parallelism",
    "Region",
    "Shard",
    "Collective",
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

# HOST (-1) is the partition id of transfers from or to the host (model inputs
# and outputs); it is the cost model's host device id too.

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
class Candidate:
    """One parallelism the search tried; objective and bound are None without a plan."""

    tp: int
    pp: int
    dp: int
    status: str
    objective_s: float | None
    bound_s: float | None


@dataclass(frozen=True)
class SolverInfo:
    """What the solver proved: status, objective, bound and gap, and its effort.

    Attributes:
        effort_s: solver effort in CP-SAT's deterministic seconds (machine
            independent, so plans stay byte-identical; 0 for closed forms).
        candidates: every parallelism tried, the chosen one included.
    """

    name: str
    status: str
    objective_s: float
    bound_s: float
    gap: float
    effort_s: float
    seed: int
    time_limit_s: float
    candidates: tuple[Candidate, ...] = ()


@dataclass(frozen=True)
class Parallelism:
    """How the model is parallelised.

    Attributes:
        tp: devices per stage (tensor parallel).
        pp: pipeline stages (GPU: tp groups in a chain; wafer: wafers).
        dp: replicas of the whole pipeline.
        microbatches: micro-batches in flight per stage.
        overlap_transfers: transfers overlap compute (period = max, not sum).
        objective: what the solver minimised ("throughput" or "latency").
    """

    tp: int = 1
    pp: int = 1
    dp: int = 1
    microbatches: int = 1
    overlap_transfers: bool = False
    objective: str = "throughput"


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
    """Nodes that run together on one stage's devices; sizes are per device.

    Attributes:
        stage: the pipeline stage (GPU: one per tp group; wafer: the wafer index).
        devices: the stage's tensor-parallel group (GPU indices, or the wafer).
        kv_cache_bytes: KV-cache inputs resident here (part of memory_bytes).
        region: wafer targets only, in core units.
    """

    id: int
    stage: int
    devices: tuple[int, ...]
    nodes: tuple[int, ...]
    param_bytes: int
    activation_bytes: int
    kv_cache_bytes: int
    memory_bytes: int
    capacity_bytes: int
    flops: int
    compute_s: float
    region: Region | None = None


@dataclass(frozen=True)
class Shard:
    """A tensor split ``parts`` ways along ``axis`` across a partition's devices."""

    tensor: str
    partition: int
    axis: int
    parts: int


@dataclass(frozen=True)
class Collective:
    """A collective over a partition's devices; ``bytes`` is the payload per device."""

    kind: str
    tensor: str
    partition: int
    bytes: int
    time_s: float


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
    comm_s: float = 0.0


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
    parallelism: Parallelism
    partitions: tuple[Partition, ...]
    transfers: tuple[Transfer, ...]
    estimate: Estimate
    provenance: Provenance
    shards: tuple[Shard, ...] = ()
    collectives: tuple[Collective, ...] = ()
    schema_version: int = SCHEMA_VERSION
    load_model: LoadModel | None = None

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
            d["devices"] = list(p.devices)
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
            "comm_s": self.estimate.comm_s,
            **dict(self.estimate.extra),
        }
        return {
            "schema_version": self.schema_version,
            "model": {**asdict(self.model), "dims": dict(self.model.dims)},
            "target": {**self.target.to_dict(), "spec": _plain(self.target.spec)},
            "solver": {
                **asdict(self.solver),
                "candidates": [asdict(c) for c in self.solver.candidates],
            },
            "parallelism": asdict(self.parallelism),
            "partitions": partitions,
            "shards": [asdict(x) for x in self.shards],
            "collectives": [asdict(x) for x in self.collectives],
            "transfers": transfers,
            "estimate": _plain(estimate),
            **({"load_model": self.load_model.to_dict()} if self.load_model else {}),
            "provenance": asdict(self.provenance),
        }

    def to_json(self) -> str:
        """Deterministic JSON text (ends with a newline)."""
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    @staticmethod
    def from_dict(doc: Mapping[str, Any]) -> Plan:
        """Build a Plan from a document that already passed `check_schema` (v1 is upgraded)."""
        if doc["schema_version"] == 1:
            doc = upgrade_v1(doc)
        parts = []
        for p in doc["partitions"]:
            region = Region(**p["region"]) if p.get("region") is not None else None
            fields = {k: v for k, v in p.items() if k != "region"}
            fields["nodes"] = tuple(fields["nodes"])
            fields["devices"] = tuple(fields["devices"])
            parts.append(Partition(region=region, **fields))
        est = dict(doc["estimate"])
        core = {k: est.pop(k) for k in ("latency_s", "throughput_per_s", "bottleneck", "comm_s")}
        solver = dict(doc["solver"])
        candidates = tuple(Candidate(**c) for c in solver.pop("candidates"))
        return Plan(
            schema_version=doc["schema_version"],
            model=ModelInfo(**doc["model"]),
            target=TargetInfo.from_dict(doc["target"]),
            solver=SolverInfo(**solver, candidates=candidates),
            parallelism=Parallelism(**doc["parallelism"]),
            partitions=tuple(parts),
            shards=tuple(Shard(**x) for x in doc["shards"]),
            collectives=tuple(Collective(**x) for x in doc["collectives"]),
            transfers=tuple(Transfer(**t) for t in doc["transfers"]),
            estimate=Estimate(
                latency_s=core["latency_s"],
                throughput_per_s=core["throughput_per_s"],
                bottleneck=Bottleneck(**core["bottleneck"]),
                comm_s=core["comm_s"],
                extra=est,
            ),
            provenance=Provenance(**doc["provenance"]),
            load_model=load_model_from_dict(doc["load_model"]) if "load_model" in doc else None,
        )

    @staticmethod
    def from_json(text: str, *, source: str = "plan") -> Plan:
        """Parse and schema-check plan JSON.

        Raises:
            PlanError: not JSON, or not a plan of a schema version this reads (names the
                first problem).
        """
        doc = parse_plan_json(text, source=source)
        problems = check_schema(doc)
        if problems:
            raise PlanError(f"{source} is not a valid plan: {problems[0]}")
        try:
            return Plan.from_dict(doc)
        except ValueError as err:  # a load model in a basis this version does not read
            raise PlanError(f"{source} is not a valid plan: {err}") from None


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
