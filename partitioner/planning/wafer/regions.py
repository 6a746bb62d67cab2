"""Regions of a wafer: one per coarsened block, with what its compute and SRAM need."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from passes.analysis.costs import CostReport
from passes.analysis.liveness import activation_liveness
from passes.ir import Graph
from passes.transforms.coarsen import BlockGraph
from targets.cost import WaferCostModel, stage_memory_bytes

__all__ = ["BlockRegion", "node_wafer_times", "block_regions"]


@dataclass(frozen=True)
class BlockRegion:
    block: int
    nodes: tuple[int, ...]
    runtime: tuple[int, ...]
    flops_by_dtype: dict[str | None, int]
    matmuls: int
    param_bytes: int
    kv_bytes: int
    activation_bytes: int

    @property
    def memory_bytes(self) -> int:
        return stage_memory_bytes(self.param_bytes, self.activation_bytes, 1, 0, self.kv_bytes)


def node_wafer_times(graph: Graph, costs: CostReport, cost_model: WaferCostModel) -> list[float]:
    """Seconds of each node if a whole wafer computed it (its share of a wafer's work)."""
    w = cost_model.target.wafer
    return [
        0.0
        if node.folded or not c.flops
        else cost_model.block_compute_s({c.dtype: c.flops}, w.width_cores, w.height_cores)
        for node, c in zip(graph.nodes, costs.nodes, strict=True)
    ]


def block_regions(graph: Graph, costs: CostReport, blocks: BlockGraph) -> list[BlockRegion]:
    out = []
    for b in blocks.blocks:
        runtime = tuple(n for n in b.nodes if not graph.nodes[n].folded)
        by_dtype: dict[str | None, int] = defaultdict(int)
        for n in runtime:
            if costs.nodes[n].flops:
                by_dtype[costs.nodes[n].dtype] += costs.nodes[n].flops
        peak = activation_liveness(graph, list(runtime)).peak_bytes if runtime else 0
        out.append(
            BlockRegion(
                b.id,
                b.nodes,
                runtime,
                dict(by_dtype),
                b.matmuls,
                b.param_bytes,
                b.kv_cache_bytes,
                peak,
            )
        )
    return out
