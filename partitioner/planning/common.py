"""What both planners share: the plan header, the fit checks, device counts.

Everything user-fixable surfaces as an `InfeasibleError` or `UsageError` with
one line that says what is wrong, the numbers involved and what to do.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from partitioner import __version__
from partitioner.errors import InfeasibleError, UsageError
from partitioner.plan import (
    Collective,
    Estimate,
    ModelInfo,
    Parallelism,
    Partition,
    Plan,
    Provenance,
    SolverInfo,
    TargetInfo,
    Transfer,
)
from partitioner.planning.options import PlanOptions
from partitioner.units import human_bytes
from passes.analysis.costs import CostReport, node_costs
from passes.analysis.edges import unsized_tensors
from passes.analysis.fusion import fused_costs
from passes.analysis.stored_weights import eager_dequantise
from passes.ir import Graph, Tensor
from targets import GpuTarget, WaferTarget
from targets.cost import CostModel

__all__ = [
    "runtime_costs",
    "model_info",
    "target_info",
    "assemble_plan",
    "check_model_fits",
    "check_total_fits",
    "device_count",
    "decode_batch",
    "unsized_extra",
    "resolve_objective",
]


def model_info(graph: Graph, costs: CostReport) -> ModelInfo:
    return ModelInfo(
        path=str(graph.path) if graph.path else "",
        sha256=graph.sha256 or "",
        opset=graph.opset,
        num_nodes=graph.num_nodes,
        param_bytes=costs.param_bytes,
        flops=costs.total_flops,
        dims=dict(graph.dims),
    )


def target_info(target: GpuTarget | WaferTarget) -> TargetInfo:
    return TargetInfo(
        name=target.name, kind=target.kind, sha256=target.sha256, spec=target.to_dict()
    )


def check_runtime_work(graph: Graph) -> None:
    """Some node runs at inference time; a model that folds entirely into constants has no plan."""
    if graph.num_nodes == 0:
        raise InfeasibleError("the model has no nodes: there is nothing to plan")
    if not any(not node.folded for node in graph.nodes):
        raise InfeasibleError(
            f"the model has nothing to run on devices: all {graph.num_nodes} of its nodes "
            "compute constants, folded once at load time (its outputs do not depend on its "
            "inputs); check that the export kept the model's inputs"
        )


def check_nodes_fit(
    graph: Graph, costs: CostReport, cost_model: CostModel, noun: str = "device"
) -> None:
    """No single node needs more parameter memory than the largest device (or wafer) has."""
    largest_device = max(cost_model.capacity_bytes(d) for d in range(cost_model.target.num_devices))
    for node, c in zip(graph.nodes, costs.nodes, strict=True):
        if c.param_bytes > largest_device:
            raise InfeasibleError(
                f"node {node.index} '{node.name}' ({node.op_type}) alone needs {human_bytes(c.param_bytes)} "
                f"of parameters, more than one {noun} holds ({human_bytes(largest_device)}); "
                f"split that op in the model or use {noun}s with more memory"
            )


def _runtime_tensors(graph: Graph) -> list[Tensor]:
    """Inputs and activations some device must hold whole (parameters: `check_nodes_fit`)."""
    return [
        t
        for t in graph.iter_tensors()
        if t.is_static
        and (t.kind == "input" or (t.kind == "activation" and not graph.nodes[t.producer].folded))
    ]


def check_tensors_fit(graph: Graph, cost_model: CostModel, noun: str = "device") -> None:
    """No input or activation is larger than the largest device: a tensor is never split."""
    largest_device = max(cost_model.capacity_bytes(d) for d in range(cost_model.target.num_devices))
    biggest = max(_runtime_tensors(graph), key=lambda t: t.nbytes, default=None)
    if biggest is not None and biggest.nbytes > largest_device:
        shape = "×".join(str(d) for d in biggest.shape or ())  # type: ignore[union-attr]
        raise InfeasibleError(
            f"tensor '{biggest.name}' ({biggest.dtype or 'unknown type'} [{shape}]) alone needs "
            f"{human_bytes(biggest.nbytes)}, more than one {noun} holds "
            f"({human_bytes(largest_device)}); check the model's declared shapes, or give "
            "smaller --dim values"
        )


def check_model_fits(graph: Graph, costs: CostReport, cost_model: CostModel, noun: str) -> None:
    """The checks before any split: runtime work exists, and no node or tensor outgrows a device."""
    check_runtime_work(graph)
    check_nodes_fit(graph, costs, cost_model, noun)
    check_tensors_fit(graph, cost_model, noun)


def check_total_fits(
    costs: CostReport, cost_model: CostModel, devices: int, noun: str = "device"
) -> None:
    """The parameters fit the first ``devices`` devices together; else say how many are needed."""
    capacity = sum(cost_model.capacity_bytes(d) for d in range(devices))
    if costs.param_bytes > capacity:
        per_device = cost_model.capacity_bytes(0)
        minimum = math.ceil(costs.param_bytes / per_device)
        raise InfeasibleError(
            f"the model's parameters need {human_bytes(costs.param_bytes)} but {devices} {noun}(s) of "
            f"{cost_model.target.name} hold {human_bytes(capacity)}; it needs at least {minimum} {noun}s "
            f"(use a target with {minimum} or more, with --devices auto)"
        )


def device_count(options: PlanOptions, target: GpuTarget | WaferTarget) -> int | None:
    """The number of devices to use: all, a given count (checked), or None for 'auto'.

    With --tp and --pp pinned and no --devices, their product (times --dp): the
    help says "tp x pp is the devices used"."""
    tp, pp = getattr(options, "tp", None), getattr(options, "pp", None)
    dp = getattr(options, "dp", None) or 1
    if options.devices is None and tp is not None and pp is not None:
        if tp * pp * dp > target.num_devices:
            said = f"--tp {tp} x --pp {pp}" + (f" x --dp {dp}" if dp > 1 else "")
            raise UsageError(
                f"{said} needs {tp * pp * dp} devices; target {target.name} has "
                f"{target.num_devices}"
            )
        return tp * pp * dp
    if options.devices in (None, "all"):
        return target.num_devices
    if options.devices == "auto":
        return None
    count = int(options.devices)  # type: ignore[arg-type]
    if not 1 <= count <= target.num_devices:
        raise UsageError(
            f"--devices {count}: target {target.name} has {target.num_devices} devices; "
            f"use 1..{target.num_devices} or auto"
        )
    return count


def decode_batch(graph: Graph) -> int | None:
    """Tokens one step of an LLM decode graph makes (its batch), or None for other graphs.

    A decode-step graph takes a KV cache as inputs; its batch is the leading dim
    of its first other input (the token ids).
    """
    if not any(t.is_kv_cache for t in graph.iter_tensors()):
        return None
    for name in graph.inputs:
        t = graph.tensors[name]
        if not t.is_kv_cache and t.is_static and t.shape:
            return int(t.shape[0])  # type: ignore[arg-type]
    return 1


def runtime_costs(graph: Graph, runtime: str, eager: CostReport | None = None) -> CostReport:
    """Per-node costs as the target's runtime executes the graph: op by op (``eager``;
    stored weights dequantised each step, `passes.analysis.stored_weights`) or fused, a
    decode step replayed as one CUDA graph (``fused``, `passes.analysis.fusion`).
    ``eager``: the graph's `node_costs`, when already computed."""
    costs = eager if eager is not None else node_costs(graph)
    if runtime == "fused":
        return fused_costs(graph, costs, cuda_graph=decode_batch(graph) is not None)
    return eager_dequantise(graph, costs)  # a stored weight is dequantised every step


def unsized_extra(graph: Graph, transfers: Sequence[Transfer]) -> dict[str, list[str]]:
    """``{"unsized_transfers": [...]}``: tensors whose transfers record 0 bytes because
    their size is unknown, so their seconds count link latency only; empty if none."""
    unsized = unsized_tensors(graph, (t.tensor for t in transfers))
    return {"unsized_transfers": unsized} if unsized else {}


def resolve_objective(graph: Graph, objective: str) -> str:
    """``auto``: latency for LLM decode-step graphs, throughput otherwise."""
    if objective != "auto":
        return objective
    return "latency" if decode_batch(graph) is not None else "throughput"


def assemble_plan(
    graph: Graph,
    costs: CostReport,
    target: GpuTarget | WaferTarget,
    options: PlanOptions,
    solver: SolverInfo,
    parallelism: Parallelism,
    partitions: Sequence[Partition],
    transfers: Sequence[Transfer],
    estimate: Estimate,
    collectives: Sequence[Collective] = (),
) -> Plan:
    """The plan, with the header (model, target, provenance) both planners write alike.

    ``estimate.comm_s`` is set here from the transfers (and, once plans have
    them, collectives), so the two planners cannot count it differently.
    """
    comm_s = sum(t.time_s for t in transfers) + sum(c.time_s for c in collectives)
    return Plan(
        model=model_info(graph, costs),
        target=target_info(target),
        solver=solver,
        parallelism=parallelism,
        partitions=tuple(partitions),
        collectives=tuple(collectives),
        transfers=tuple(transfers),
        estimate=dataclasses.replace(estimate, comm_s=comm_s),
        provenance=Provenance("partition", __version__, options.command),
    )
