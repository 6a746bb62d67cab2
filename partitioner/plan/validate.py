"""The independent plan checker behind `partition validate`.

It shares no code with the solvers: it reads the plan and, when given, the
model's graph, and checks every rule of DESIGN.md's plan contract. Each
violation is one line; the CLI names the first and exits 1.

Semantics it relies on (also documented in the README):

- Parameters (initializers, and constants folded at load time) are resident
  on every partition that uses them, so they never need a transfer; so are
  KV-cache inputs of decode-step graphs (they live where they are consumed).
- Other model inputs arrive from the host: a transfer with ``src = -1``.
- A transfer's source must hold the tensor: it produced it, or an earlier
  transfer brought it there (pipelines relay tensors stage to stage).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from partitioner.plan.document import HOST, Partition, Plan
from partitioner.plan.validate_parallel import (
    check_collectives,
    check_groups,
    check_load_model,
    check_parallelism,
    check_partial_sums,
    check_shards,
    shard_parts,
)
from passes.ir import Graph

__all__ = ["Violation", "validate_plan"]


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


def validate_plan(
    plan: Plan, graph: Graph | None = None, model_sha256: str | None = None
) -> list[Violation]:
    """Every violation of the plan contract, in a stable order (most basic first).

    Args:
        plan: a plan that passed the JSON schema.
        graph: the model's IR; without it the graph-dependent rules are skipped.
        model_sha256: sha256 of the model file, checked against ``plan.model.sha256``.
    """
    found: list[Violation] = []
    if model_sha256 is not None and model_sha256 != plan.model.sha256:
        found.append(
            Violation(
                "model",
                f"the plan is for another model: plan sha256 {plan.model.sha256[:12]}…, "
                f"model file sha256 {model_sha256[:12]}… ({plan.model.path})",
            )
        )
        return found  # nothing else is meaningful against the wrong model
    if plan.target.problem is not None:
        found.append(Violation("target", plan.target.problem))
    facts = _TargetFacts.of(plan)
    found += _check_ids_and_devices(plan, facts)
    found += [Violation(*v) for v in check_groups(plan)]
    found += [Violation(*v) for v in check_parallelism(plan)]
    found += [Violation(*v) for v in check_shards(plan, graph)]
    found += [Violation(*v) for v in check_collectives(plan, graph)]
    found += [Violation(*v) for v in check_load_model(plan)]
    found += _check_memory(plan)
    if plan.target.kind == "wafer":
        found += _check_regions(plan, facts)
    if graph is not None:
        if graph.num_nodes != plan.model.num_nodes:
            found.append(
                Violation(
                    "model", f"plan has {plan.model.num_nodes} nodes, model has {graph.num_nodes}"
                )
            )
            return found
        found += _check_coverage(plan, graph)
        if not any(v.rule == "coverage" for v in found):
            found += _check_order_and_transfers(plan, graph)
            found += _check_param_memory(plan, graph)
            found += [Violation(*v) for v in check_partial_sums(plan, graph)]
    return found


@dataclass(frozen=True)
class _TargetFacts:
    """What the rules need from the target spec; None where the spec does not say (well).

    Read from the spec itself, not from a rebuilt target: plans made in code may
    carry a partial spec. A spec read from a file was rebuilt by `Plan.from_dict`,
    which names any bad field (``plan.target.problem``); here a bad field only
    skips the rules that need it.
    """

    devices: int | None = None
    width: int | None = None
    height: int | None = None
    usable_sram: int | None = None

    @staticmethod
    def of(plan: Plan) -> _TargetFacts:
        spec = plan.target.spec
        if plan.target.kind == "gpu":
            devices = spec.get("devices")
            return _TargetFacts(devices=len(devices) if isinstance(devices, list) else None)
        wafer = spec.get("wafer")
        wafer = wafer if isinstance(wafer, Mapping) else {}
        sram = _count(wafer.get("sram_bytes_per_core"))
        reserve = _count(wafer.get("sram_reserve_bytes_per_core", 0))
        usable = sram - reserve if sram is not None and reserve is not None else None
        return _TargetFacts(
            devices=_count(spec.get("num_wafers")),
            width=_count(wafer.get("width_cores")),
            height=_count(wafer.get("height_cores")),
            usable_sram=usable if usable is not None and usable > 0 else None,
        )


def _count(value: Any) -> int | None:
    """A whole number >= 0 (an integral float, as target files allow), else None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _check_ids_and_devices(plan: Plan, facts: _TargetFacts) -> Iterator[Violation]:
    ids = [p.id for p in plan.partitions]
    if len(set(ids)) != len(ids):
        yield Violation("ids", f"partition ids repeat: {sorted(ids)}")
    known = set(ids) | {HOST}
    for t in plan.transfers:
        for end in (t.src, t.dst):
            if end not in known:
                yield Violation(
                    "transfers",
                    f"transfer of {t.tensor!r} names partition {end}, which does not exist",
                )
        if t.src == t.dst:
            yield Violation(
                "transfers", f"transfer of {t.tensor!r} goes from partition {t.src} to itself"
            )
    yield from _check_devices(plan, facts)


def _check_devices(plan: Plan, facts: _TargetFacts) -> Iterator[Violation]:
    """Devices exist, repeat in no group, and (on GPUs) serve one stage each."""
    count = facts.devices
    owner: dict[int, int] = {}
    for p in plan.partitions:
        if len(set(p.devices)) != len(p.devices):
            yield Violation("devices", f"partition {p.id} lists a device twice: {list(p.devices)}")
        for d in p.devices:
            if count is not None and not 0 <= d < count:
                yield Violation(
                    "devices", f"partition {p.id} is on device {d}; the target has {count}"
                )
            # A wafer holds many regions; a GPU runs one stage.
            elif plan.target.kind == "gpu" and owner.setdefault(d, p.stage) != p.stage:
                yield Violation(
                    "devices",
                    f"device {d} serves stages {owner[d]} and {p.stage}; a GPU runs one stage",
                )


def _check_memory(plan: Plan) -> Iterator[Violation]:
    """Each partition within capacity, with a KV cache for every decode batch the plan
    says it keeps in flight (``estimate.extra["batches_in_flight"]``; the memory counts one)."""
    in_flight = plan.estimate.extra.get("batches_in_flight", 1)
    extra_batches = in_flight - 1 if isinstance(in_flight, int) and in_flight > 1 else 0
    for p in plan.partitions:
        needs = p.memory_bytes + extra_batches * p.kv_cache_bytes
        if p.memory_bytes > p.capacity_bytes:
            yield Violation(
                "memory",
                f"partition {p.id} needs {p.memory_bytes} bytes but its capacity is {p.capacity_bytes}",
            )
        elif needs > p.capacity_bytes:
            yield Violation(
                "memory",
                f"partition {p.id} needs {needs} bytes for the KV caches of the {in_flight} "
                f"batches the plan keeps in flight, but its capacity is {p.capacity_bytes}",
            )


def _check_regions(plan: Plan, facts: _TargetFacts) -> Iterator[Violation]:
    width, height, usable = facts.width, facts.height, facts.usable_sram
    by_wafer: dict[int, list] = defaultdict(list)
    for p in plan.partitions:
        r = p.region
        if r is None:
            yield Violation("regions", f"partition {p.id} on a wafer target has no region")
            continue
        if p.devices != (r.wafer,):
            yield Violation(
                "regions",
                f"partition {p.id} is on devices {list(p.devices)} but its region is on wafer {r.wafer}",
            )
        if width is not None and height is not None and (r.x + r.w > width or r.y + r.h > height):
            yield Violation(
                "regions",
                f"partition {p.id} region x={r.x} y={r.y} w={r.w} h={r.h} leaves the {width}x{height} grid",
            )
        if usable is not None and p.memory_bytes > r.cores * usable:
            per_core = p.memory_bytes / r.cores
            yield Violation(
                "regions",
                f"partition {p.id} needs {per_core:.0f} bytes per core, more than the "
                f"{usable} usable bytes of SRAM per core",
            )
        by_wafer[r.wafer].append(p)
    for parts in by_wafer.values():
        parts.sort(key=lambda p: (p.region.x, p.region.y, p.id))
        for i, a in enumerate(parts):
            for b in parts[i + 1 :]:
                ra, rb = a.region, b.region
                if rb.x >= ra.x + ra.w:
                    break  # sorted by x: no later region can overlap a
                if rb.y < ra.y + ra.h and ra.y < rb.y + rb.h:
                    yield Violation(
                        "regions",
                        f"regions of partitions {a.id} and {b.id} overlap on wafer {ra.wafer}",
                    )


def _check_coverage(plan: Plan, graph: Graph) -> Iterator[Violation]:
    owner: dict[int, int] = {}
    for p in plan.partitions:
        for n in p.nodes:
            if not 0 <= n < graph.num_nodes:
                yield Violation(
                    "coverage", f"partition {p.id} lists node {n}, which the model does not have"
                )
            elif n in owner:
                yield Violation(
                    "coverage",
                    f"node {n} ({graph.nodes[n].name}) is in partitions {owner[n]} and {p.id}",
                )
            else:
                owner[n] = p.id
    missing = [n for n in range(graph.num_nodes) if n not in owner]
    if missing:
        names = ", ".join(f"{n} ({graph.nodes[n].name})" for n in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        yield Violation("coverage", f"nodes in no partition: {names}{more}")


@dataclass(frozen=True)
class _Flow:
    """Where each node runs and each tensor is held, derived from the plan alone."""

    position: Mapping[int, int]
    owner: Mapping[int, int]
    resident: frozenset[str]
    held: dict[str, set[int]]


def _check_order_and_transfers(plan: Plan, graph: Graph) -> Iterator[Violation]:
    owner = {n: p.id for p in plan.partitions for n in p.nodes}
    # KV-cache inputs live on the stage that consumes them, like parameters.
    resident = frozenset(t.name for t in graph.iter_tensors() if t.is_param or t.is_kv_cache)
    # Where each runtime tensor is available: its producer, plus transfer destinations.
    held: dict[str, set[int]] = defaultdict(set)
    for name in graph.inputs:
        held[name].add(HOST)
    for t in graph.iter_tensors():
        if t.producer is not None and t.name not in resident:
            held[t.name].add(owner[t.producer])
    position = {p.id: k for k, p in enumerate(plan.partitions)}
    flow = _Flow(position, owner, resident, held)
    yield from _check_transfers(plan, graph, flow)
    for p in plan.partitions:
        yield from _check_reads(p, graph, flow)


def _check_transfers(plan: Plan, graph: Graph, flow: _Flow) -> Iterator[Violation]:
    """Transfers in listed order; a relay needs its source to hold the tensor already."""
    position, resident, held = flow.position, flow.resident, flow.held
    for tr in plan.transfers:
        if tr.tensor not in graph.tensors:
            yield Violation(
                "transfers", f"transfer names tensor {tr.tensor!r}, which the model does not have"
            )
            continue
        t = graph.tensors[tr.tensor]
        if tr.tensor in resident:
            continue  # moving a parameter is allowed, never required
        if tr.src not in held[tr.tensor]:
            yield Violation(
                "transfers",
                f"transfer of {tr.tensor!r} leaves partition {tr.src}, which neither produces nor received it",
            )
        if t.is_static and tr.bytes != t.nbytes:
            yield Violation(
                "transfers",
                f"transfer of {tr.tensor!r} says {tr.bytes} bytes; the tensor has {t.nbytes}",
            )
        if (
            tr.dst != HOST
            and tr.src != HOST
            and position.get(tr.dst, -1) < position.get(tr.src, -1)
        ):
            yield Violation(
                "order",
                f"tensor {tr.tensor!r} flows from partition {tr.src} back to earlier partition {tr.dst}",
            )
        held[tr.tensor].add(tr.dst)


def _check_reads(p: Partition, graph: Graph, flow: _Flow) -> Iterator[Violation]:
    """Every value a partition reads is made earlier in it, or brought to it in time."""
    position, owner, resident, held = flow.position, flow.owner, flow.resident, flow.held
    produced_here: set[str] = set()
    for n in p.nodes:
        node = graph.nodes[n]
        if node.folded:
            continue  # computed once at load time; reads only constants and static shapes
        for name in node.present_inputs:
            t = graph.tensors.get(name)
            if t is None or name in resident:
                continue
            if t.producer is not None and owner[t.producer] == p.id:
                if name not in produced_here:
                    yield Violation(
                        "order",
                        f"in partition {p.id}, node {n} ({node.name}) uses {name!r} before node "
                        f"{t.producer} produces it",
                    )
                continue
            source = owner[t.producer] if t.producer is not None else HOST
            if source != HOST and position[source] > position[p.id]:
                yield Violation(
                    "order",
                    f"partition {p.id} uses {name!r} from partition {source}, which runs later",
                )
            elif p.id not in held[name]:
                where = "the host" if source == HOST else f"partition {source}"
                yield Violation(
                    "transfers",
                    f"partition {p.id} uses {name!r} from {where} but no transfer brings it there",
                )
        produced_here.update(node.present_outputs)


def _check_param_memory(plan: Plan, graph: Graph) -> Iterator[Violation]:
    """Memory per device covers the parameters read there; a sharded one counts 1/parts."""
    parts = shard_parts(plan)
    for p in plan.partitions:
        used: dict[str, int] = {}
        for n in p.nodes:
            node = graph.nodes[n]
            if node.folded:
                continue
            for name in node.present_inputs:
                t = graph.tensors.get(name)
                if t is not None and t.is_param and t.is_static:
                    used[name] = t.nbytes // parts.get((p.id, name), 1)
        need = sum(used.values())
        if p.memory_bytes < need:
            yield Violation(
                "memory",
                f"partition {p.id} declares {p.memory_bytes} bytes of memory but its nodes use "
                f"{need} bytes of parameters",
            )
