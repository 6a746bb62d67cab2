"""The contract's tensor-parallel rules: shards, collectives and device groups.

Plans without tensor parallelism have one device per partition and no shards
or collectives, and pass trivially; these rules hold every plan that has them
to what ../shared/DESIGN.md promises a runtime.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from partitioner.plan.document import HOST, Plan
from partitioner.plan.load_model import evaluate
from passes.ir import Graph

__all__ = [
    "check_parallelism",
    "check_groups",
    "check_shards",
    "check_collectives",
    "check_partial_sums",
    "shard_parts",
]


def shard_parts(plan: Plan) -> dict[tuple[int, str], int]:
    """(partition id, tensor) -> the number of parts it is split into, for sharded tensors."""
    return {(s.partition, s.tensor): s.parts for s in plan.shards}


def _gpus_per_node(spec: Mapping[str, Any]) -> int | None:
    value = spec.get("gpus_per_node")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def check_groups(plan: Plan) -> Iterator[tuple[str, str]]:
    """A GPU stage's tensor-parallel group lies inside one node (NVLink), unless the
    target lets groups span nodes (``tp_across_nodes``)."""
    if plan.target.kind != "gpu" or plan.target.spec.get("tp_across_nodes") is True:
        return
    per_node = _gpus_per_node(plan.target.spec)
    if per_node is None:
        return
    for p in plan.partitions:
        nodes = sorted({d // per_node for d in p.devices})
        if len(nodes) > 1:
            yield (
                "devices",
                f"partition {p.id}'s tensor-parallel group {list(p.devices)} spans nodes "
                f"{nodes} ({per_node} GPUs a node); a group stays inside one node",
            )


def check_shards(plan: Plan, graph: Graph | None) -> Iterator[tuple[str, str]]:
    """A shard names an existing partition, splits into its device count, along an
    axis that exists and divides evenly; a tensor is sharded once per partition."""
    devices = {p.id: len(p.devices) for p in plan.partitions}
    seen: set[tuple[int, str]] = set()
    for s in plan.shards:
        where = f"shard of {s.tensor!r} on partition {s.partition}"
        if s.partition not in devices:
            yield ("shards", f"{where}: the partition does not exist")
            continue
        if (s.partition, s.tensor) in seen:
            yield ("shards", f"{where}: the tensor is sharded twice on that partition")
        seen.add((s.partition, s.tensor))
        if s.parts != devices[s.partition]:
            yield (
                "shards",
                f"{where}: {s.parts} parts, but the partition has {devices[s.partition]} devices",
            )
        tensor = graph.tensors.get(s.tensor) if graph is not None else None
        if graph is not None and tensor is None:
            yield ("shards", f"{where}: the model has no such tensor")
        elif tensor is not None and tensor.shape is not None:
            yield from _check_axis(where, tuple(tensor.shape), s.axis, s.parts)


def _check_axis(
    where: str, shape: tuple[int | str | None, ...], axis: int, parts: int
) -> Iterator[tuple[str, str]]:
    if not -len(shape) <= axis < len(shape):
        yield ("shards", f"{where}: axis {axis} does not exist in a tensor of rank {len(shape)}")
        return
    size = shape[axis]
    if isinstance(size, int) and size % parts != 0:
        yield ("shards", f"{where}: axis {axis} of size {size} does not split into {parts} parts")


def check_collectives(plan: Plan, graph: Graph | None) -> Iterator[tuple[str, str]]:
    """A collective runs over an existing partition of two or more devices, on a
    tensor of the model."""
    devices = {p.id: len(p.devices) for p in plan.partitions}
    for c in plan.collectives:
        where = f"{c.kind} of {c.tensor!r} on partition {c.partition}"
        if c.partition not in devices:
            yield ("collectives", f"{where}: the partition does not exist")
        elif devices[c.partition] < 2:
            yield ("collectives", f"{where}: the partition has one device, nothing to exchange")
        if graph is not None and c.tensor not in graph.tensors:
            yield ("collectives", f"{where}: the model has no such tensor")


def _contraction_axis(graph: Graph, index: int) -> int | None:
    """The axis of a MatMul/Gemm's second input (a weight) that the product sums over."""
    node = graph.nodes[index]
    weight = graph.tensors.get(node.inputs[1]) if len(node.inputs) > 1 else None
    if weight is None or not weight.shape or len(weight.shape) < 2:
        return None
    if node.op_type == "MatMul":
        return len(weight.shape) - 2
    if node.op_type == "Gemm":
        return 1 if node.attributes.get("transB", 0) else 0
    return None


def check_partial_sums(plan: Plan, graph: Graph) -> Iterator[tuple[str, str]]:
    """A MatMul whose weight is split along the summed axis leaves each device a partial
    sum: an all-reduce of its output must follow, before anything else reads it."""
    axes = {(s.partition, s.tensor): s.axis for s in plan.shards}
    reduced = {(c.partition, c.tensor) for c in plan.collectives if c.kind == "all_reduce"}
    for p in plan.partitions:
        if len(p.devices) < 2:
            continue
        for n in p.nodes:
            node = graph.nodes[n]
            if node.folded or node.op_type not in ("MatMul", "Gemm") or len(node.inputs) < 2:
                continue
            axis = axes.get((p.id, node.inputs[1]))
            contraction = _contraction_axis(graph, n)
            rank = len(graph.tensors[node.inputs[1]].shape or ())
            if axis is None or contraction is None or axis % max(rank, 1) != contraction:
                continue
            out = node.outputs[0]
            if (p.id, out) not in reduced:
                yield (
                    "collectives",
                    f"node {n} ({node.name}) in partition {p.id} splits {node.inputs[1]!r} along "
                    f"the summed axis, so {out!r} is a partial sum, but no all_reduce of it follows",
                )


def check_parallelism(plan: Plan) -> Iterator[tuple[str, str]]:
    """On GPUs the degrees describe the partitions: pp stages, tp devices in the widest
    group, and tp × pp × dp devices in all (the replicas repeat the pipeline on the
    next devices), no more than the target has."""
    if plan.target.kind != "gpu" or not plan.partitions:
        return
    par = plan.parallelism
    stages = len({p.stage for p in plan.partitions})
    widest = max(len(p.devices) for p in plan.partitions)
    if (par.pp, par.tp) != (stages, widest):
        yield (
            "parallelism",
            f"parallelism says tp {par.tp} x pp {par.pp}, but the partitions form {stages} "
            f"stage(s) of at most {widest} device(s)",
        )
    devices = plan.target.spec.get("devices")
    used = max(d for p in plan.partitions for d in p.devices) + 1
    if isinstance(devices, list) and used * par.dp > len(devices):
        yield (
            "parallelism",
            f"{par.dp} replica(s) of a pipeline on {used} device(s) need {used * par.dp}; "
            f"the target has {len(devices)}",
        )


def check_load_model(plan: Plan) -> Iterator[tuple[str, str]]:
    """A load model describes this plan: one stage per partition, its transfers in order,
    and at the plan's own dims its KV cache is each partition's."""
    load = plan.load_model
    if load is None:
        return
    ids = [s.partition for s in load.stages]
    if sorted(ids) != sorted(p.id for p in plan.partitions):
        yield "load_model", f"its stages {ids} are not the plan's partitions"
        return
    ends = [(t.src, t.dst) for t in load.transfers]
    if ends != [(t.src, t.dst) for t in plan.transfers]:
        yield "load_model", "its transfers are not the plan's, in the plan's order"
    yield from _check_prefill(plan)
    dims = plan.model.dims
    if any(load.dims.get(role) not in dims for role in ("batch", "past")):
        yield "load_model", f"its dims {dict(load.dims)} are not among the model's {dict(dims)}"
        return
    own = (dims[load.dims["batch"]], dims[load.dims["past"]])
    for p in plan.partitions:
        kv = evaluate(load.stage(p.id).kv_cache_bytes, *own)
        if abs(kv - p.kv_cache_bytes) > 1e-6 * max(p.kv_cache_bytes, 1) + 1:
            yield (
                "load_model",
                f"partition {p.id}: its KV cache at the plan's dims is {kv:.0f} B, "
                f"the plan says {p.kv_cache_bytes} B",
            )


def _check_prefill(plan: Plan) -> Iterator[tuple[str, str]]:
    """A prefill load model runs on the plan's partitions, between them, in (batch, seq)."""
    assert plan.load_model is not None
    prefill = plan.load_model.prefill
    if prefill is None:
        return
    ids = sorted(p.id for p in plan.partitions)
    if sorted(s.partition for s in prefill.stages) != ids:
        yield "load_model.prefill", "its stages are not the plan's partitions"
    ends = {*ids, HOST}  # a wafer plan's prefill names its host transfers too
    strays = [(t.src, t.dst) for t in prefill.transfers if t.src not in ends or t.dst not in ends]
    if strays:
        yield "load_model.prefill", f"its transfer {strays[0]} is not between the plan's partitions"
    if sorted(prefill.dims) != ["batch", "seq"] or prefill.source is None:
        yield "load_model.prefill", "it needs dims batch and seq and the source it was fitted from"
