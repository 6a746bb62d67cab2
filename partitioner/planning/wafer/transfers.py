"""What moves between a wafer plan's regions: over the fabric, across wafers, to the host."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from partitioner.plan import Partition, Transfer, transfer_order
from passes.analysis.partition_io import tensor_flows
from passes.ir import Graph
from targets import HOST
from targets.cost import WaferCostModel
from targets.fabric import center_hops

__all__ = ["wafer_flows", "wafer_transfers"]


def wafer_flows(
    graph: Graph, owner: dict[int, int], wafer_of: Sequence[int]
) -> dict[int, dict[tuple[int, int], int]]:
    """Per wafer: (region i, region j) -> bytes of runtime tensors i makes and j reads."""
    flows: dict[int, dict[tuple[int, int], int]] = defaultdict(lambda: defaultdict(int))
    for f in tensor_flows(graph, owner):
        # Tensors of unknown size add no bytes, and no pair, to the floorplan's traffic.
        if f.src == HOST or not graph.tensors[f.tensor].is_static:
            continue
        for dst in f.readers:
            if wafer_of[f.src] == wafer_of[dst]:
                flows[wafer_of[f.src]][f.src, dst] += f.bytes
    return flows


def wafer_transfers(
    graph: Graph, owner: dict[int, int], parts: Sequence[Partition], cost_model: WaferCostModel
) -> list[Transfer]:
    """Every tensor's moves: over the fabric on its wafer, once across to each other wafer.

    A tensor several regions of another wafer (or the host's inputs) need
    crosses the system link once, to the first of them, which relays it over
    that wafer's fabric to the rest.
    """
    rect = {p.id: (p.region.x, p.region.y, p.region.w, p.region.h) for p in parts}  # type: ignore[union-attr]
    wafer = {p.id: p.devices[0] for p in parts}
    out: list[Transfer] = []

    def fabric(name: str, nbytes: int, src: int, dst: int) -> Transfer:
        seconds = cost_model.region_transfer_s(nbytes, rect[src], rect[dst])
        return Transfer(name, nbytes, src, dst, seconds, center_hops(rect[src], rect[dst]))

    # A tensor of unknown size moves all the same (see passes.analysis.edges).
    for f in tensor_flows(graph, owner):
        name, nbytes, source = f.tensor, f.bytes, f.src
        by_wafer: dict[int, list[int]] = defaultdict(list)
        for r in f.readers:
            by_wafer[wafer[r]].append(r)
        for w, targets_on_w in sorted(by_wafer.items()):
            if source != HOST and w == wafer[source]:
                out += [fabric(name, nbytes, source, r) for r in targets_on_w]
                continue
            entry, rest = targets_on_w[0], targets_on_w[1:]
            cross_s = (
                cost_model.host_transfer_s(nbytes)
                if source == HOST
                else cost_model.inter_wafer_transfer_s(nbytes)
            )
            out.append(Transfer(name, nbytes, source, entry, cross_s))
            out += [fabric(name, nbytes, entry, r) for r in rest]
        if f.to_host:
            out.append(Transfer(name, nbytes, source, HOST, cost_model.host_transfer_s(nbytes)))
    return sorted(out, key=transfer_order)
