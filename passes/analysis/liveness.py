"""Activation liveness: the peak bytes of activations held under a schedule.

Parameters and KV-cache inputs are resident and not counted here (stage
memory adds them separately). A tensor becomes live when its
producer runs (graph inputs: from the start) and dies after its last consumer
in the schedule; tensors that leave the scheduled set (graph outputs, or values
another stage consumes) stay live to the end. During a node's step its inputs
and its outputs are live together, which is where the peak is measured.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from passes.functions import is_function_call
from passes.ir import Graph, Node

__all__ = ["LivenessReport", "activation_liveness"]


@dataclass(frozen=True)
class LivenessReport:
    """Peak live activation bytes under a schedule.

    Attributes:
        peak_bytes: the most activation bytes live at once.
        peak_node: the node index during whose step the peak occurs (-1 if none).
        entry_bytes: bytes of activations that enter the scheduled set from outside.
        exit_bytes: bytes of activations that leave it (kept to the end).
        unknown_tensors: activations with no static shape, counted as 0 bytes.
    """

    peak_bytes: int
    peak_node: int
    entry_bytes: int
    exit_bytes: int
    unknown_tensors: tuple[str, ...] = ()


def _call_transient_bytes(graph: Graph, node: Node) -> int:
    """What a local function call holds inside beyond its inputs and outputs: its
    body's own peak (the executor runs the body node by node) less what stays outside."""
    from passes.analysis.costs import call_body

    inner = activation_liveness(call_body(graph, node)).peak_bytes
    outer = sum(
        graph.tensors[n].nbytes
        for n in (*node.present_inputs, *node.present_outputs)
        if n in graph.tensors and graph.tensors[n].is_static and not graph.tensors[n].is_param
    )
    return max(0, inner - outer)


def _last_uses(
    graph: Graph,
    order: Sequence[int],
    in_set: set[int],
    step: dict[int, int],
    sent: Collection[str] = (),
) -> tuple[dict[str, int], set[str]]:
    """Last step at which each activation is needed (len(order): kept to the end), and
    the activations that enter the schedule from outside it. An entering one that is
    also ``sent`` on (relayed to a later stage) is kept to the end as well."""
    last_use: dict[str, int] = {}
    entering: set[str] = set()
    end = len(order)
    for node_index in order:
        node = graph.nodes[node_index]
        for name in node.present_inputs:
            t = graph.tensors.get(name)
            if t is None or t.is_param or t.is_kv_cache:
                continue  # resident, counted apart (parameters; the KV cache on its stage)
            if t.producer is None or t.producer not in in_set:
                entering.add(name)
            last_use[name] = end if name in sent else max(last_use.get(name, -1), step[node_index])
        for name in node.present_outputs:
            t = graph.tensors[name]
            leaves = t.is_graph_output or any(c not in in_set for c in t.consumers)
            if leaves:
                last_use[name] = end
            else:
                last_use.setdefault(name, step[node_index])  # an unused output dies at once
    return last_use, entering


def activation_liveness(
    graph: Graph,
    schedule: Sequence[int] | None = None,
    nbytes: Callable[[str], int] | None = None,
    sent: Collection[str] = (),
    in_place: Collection[str] = (),
) -> LivenessReport:
    """Peak activation memory when the nodes in ``schedule`` run in that order.

    Args:
        graph: the IR.
        schedule: node indices in execution order; default: the whole graph in
            topological order. Folded nodes are skipped (they run at load time).
        nbytes: bytes of a static tensor as one device holds it (default: the
            whole tensor); a tensor-parallel rank holds a slice of some.
        sent: tensors the stage sends on after it ran; one it receives and reads is
            held to the end, not freed after its last local use.
        in_place: outputs written into resident memory (a fused runtime's KV-cache
            appends, `fusion.in_place_outputs`): no bytes of their own.
    """
    order = [
        i
        for i in (schedule if schedule is not None else graph.topological_order())
        if not graph.nodes[i].folded
    ]
    in_set = set(order)
    step = {node: k for k, node in enumerate(order)}
    unknown: list[str] = []

    def size(name: str) -> int:
        t = graph.tensors[name]
        if name in in_place:
            return 0
        if t.is_static:
            return t.nbytes if nbytes is None else nbytes(name)
        unknown.append(name)
        return 0

    last_use, entering = _last_uses(graph, order, in_set, step, frozenset(sent))
    end = len(order)
    live = sum(size(n) for n in entering)
    entry_bytes = live
    dying_at: dict[int, list[str]] = {}
    for name, k in last_use.items():
        dying_at.setdefault(k, []).append(name)
    peak, peak_node = live, (order[0] if order else -1)
    for k, node_index in enumerate(order):
        node = graph.nodes[node_index]
        live += sum(size(o) for o in node.present_outputs)
        transient = _call_transient_bytes(graph, node) if is_function_call(graph, node) else 0
        if live + transient > peak:
            peak, peak_node = live + transient, node_index
        live -= sum(size(n) for n in dying_at.get(k, ()))
    exit_bytes = sum(size(n) for n in dying_at.get(end, ()) if graph.tensors[n].producer in in_set)
    return LivenessReport(peak, peak_node, entry_bytes, exit_bytes, tuple(dict.fromkeys(unknown)))
