"""What moves between a wafer plan's regions: over the fabric, across wafers, to the host."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from partitioner.plan import Partition, Transfer, transfer_order
from passes.analysis.edges import transfer_bytes
from passes.ir import Graph
from targets import HOST
from targets.cost import WaferCostModel
from targets.fabric import center_hops, transfer_lanes

__all__ = ["wafer_flows", "wafer_transfers"]


def wafer_flows(
    graph: Graph, owner: dict[int, int], wafer_of: Sequence[int]
) -> dict[int, dict[tuple[int, int], int]]:
    """Per wafer: (region i, region j) -> bytes of runtime tensors i makes and j reads."""
    flows: dict[int, dict[tuple[int, int], int]] = defaultdict(lambda: defaultdict(int))
    for t in graph.iter_tensors():
        if t.is_param or t.producer is None or not t.is_static:
            continue
        src = owner[t.producer]
        for dst in sorted({owner[c] for c in t.consumers if not graph.nodes[c].folded} - {src}):
            if wafer_of[src] == wafer_of[dst]:
                flows[wafer_of[src]][src, dst] += t.nbytes
    return flows


def wafer_transfers(
    graph: Graph, owner: dict[int, int], parts: Sequence[Partition], cost: WaferCostModel
) -> list[Transfer]:
    """Every tensor's moves: over the fabric on its wafer, once across to each other wafer.

    A tensor several regions of another wafer (or the host's inputs) need
    crosses the system link once, to the first of them, which relays it over
    that wafer's fabric to the rest.
    """
    rect = {p.id: (p.region.x, p.region.y, p.region.w, p.region.h) for p in parts}  # type: ignore[union-attr]
    wafer = {p.id: p.device for p in parts}
    out: list[Transfer] = []

    def fabric(name: str, nbytes: int, src: int, dst: int) -> Transfer:
        hops = center_hops(rect[src], rect[dst])
        lanes = transfer_lanes(rect[src], rect[dst])
        return Transfer(name, nbytes, src, dst, cost.fabric_transfer_s(nbytes, hops, lanes), hops)

    for t in graph.iter_tensors():
        if t.is_param or (t.kind == "input" and t.is_kv_cache):
            continue
        # A tensor of unknown size moves all the same (see passes.analysis.edges).
        nbytes = transfer_bytes(t)
        readers = sorted({owner[c] for c in t.consumers if not graph.nodes[c].folded})
        source = HOST if t.kind == "input" else owner[t.producer]
        by_wafer: dict[int, list[int]] = defaultdict(list)
        for r in readers:
            if r != source:
                by_wafer[wafer[r]].append(r)
        for w, targets_on_w in sorted(by_wafer.items()):
            if source != HOST and w == wafer[source]:
                out += [fabric(t.name, nbytes, source, r) for r in targets_on_w]
                continue
            entry, rest = targets_on_w[0], targets_on_w[1:]
            cross_s = (
                cost.host_transfer_s(nbytes)
                if source == HOST
                else cost.inter_wafer_transfer_s(nbytes)
            )
            out.append(Transfer(t.name, nbytes, source, entry, cross_s))
            out += [fabric(t.name, nbytes, entry, r) for r in rest]
        if t.is_graph_output and not t.is_kv_cache_output and source != HOST:
            out.append(Transfer(t.name, nbytes, source, HOST, cost.host_transfer_s(nbytes)))
    return sorted(out, key=transfer_order)
