"""Hardware descriptions (GPU clusters, wafer grids, presets) and the cost model.

This layer imports nothing else of ours.

Typical use::

    from targets import CostModel, load_target

    target = load_target("h100x8")          # preset, alias, or .json/.yaml file
    cost = CostModel(target)                # GpuCostModel or WaferCostModel
    cost.op_time_s(flops=2e12, bytes_moved=4e9, dtype="bfloat16")
"""

from __future__ import annotations

from targets.cost import (
    COLLECTIVE_KINDS,
    CostModel,
    GpuCostModel,
    WaferCostModel,
    all_gather_s,
    all_reduce_s,
    collective_bytes_sent,
    collective_s,
    joules_per_token,
    link_transfer_s,
    pipelined_tokens_per_s,
    reduce_scatter_s,
    stage_memory_bytes,
    to_int_units,
    tokens_per_s,
    usd_per_token,
)
from targets.dtypes import KNOWN_DTYPES, canonical_dtype
from targets.errors import PartitionError, TargetError
from targets.fabric import (
    manhattan_hops,
    region_hops,
    route_link_loads,
    shared_boundary_links,
    xy_route,
)
from targets.gpu import HOST, GpuDevice, GpuTarget, Link
from targets.loader import Target, load_target, target_from_dict
from targets.pipeline import PipelineEstimate, StageBottleneck, pipeline_estimate
from targets.preset_info import PresetInfo, list_presets
from targets.presets import ALIASES, get_preset, preset_names
from targets.wafer import WaferSpec, WaferTarget

__all__ = [
    "ALIASES",
    "COLLECTIVE_KINDS",
    "HOST",
    "KNOWN_DTYPES",
    "CostModel",
    "GpuCostModel",
    "GpuDevice",
    "GpuTarget",
    "Link",
    "PartitionError",
    "PipelineEstimate",
    "PresetInfo",
    "StageBottleneck",
    "Target",
    "TargetError",
    "WaferCostModel",
    "WaferSpec",
    "WaferTarget",
    "all_gather_s",
    "all_reduce_s",
    "canonical_dtype",
    "collective_bytes_sent",
    "collective_s",
    "get_preset",
    "joules_per_token",
    "link_transfer_s",
    "list_presets",
    "load_target",
    "manhattan_hops",
    "pipeline_estimate",
    "pipelined_tokens_per_s",
    "preset_names",
    "reduce_scatter_s",
    "region_hops",
    "route_link_loads",
    "shared_boundary_links",
    "stage_memory_bytes",
    "target_from_dict",
    "to_int_units",
    "tokens_per_s",
    "usd_per_token",
    "xy_route",
]
