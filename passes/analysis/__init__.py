"""Analysis passes: plain typed functions that return frozen reports."""

from passes.analysis.costs import CostReport, NodeCost, node_costs, resident_params
from passes.analysis.edges import EdgeBytes, cut_bytes
from passes.analysis.liveness import LivenessReport, activation_liveness
from passes.analysis.partition_io import (
    PartitionIO,
    Residency,
    TensorFlow,
    partition_io,
    residency,
    tensor_flows,
)
from passes.analysis.patterns import AttentionPattern, attention_patterns
from passes.analysis.sharding import (
    REPLICATED,
    CollectiveOp,
    Layout,
    ShardingPlan,
    shard_graph,
)

__all__ = [
    "CostReport",
    "NodeCost",
    "node_costs",
    "resident_params",
    "EdgeBytes",
    "cut_bytes",
    "LivenessReport",
    "activation_liveness",
    "Residency",
    "residency",
    "PartitionIO",
    "partition_io",
    "TensorFlow",
    "tensor_flows",
    "AttentionPattern",
    "attention_patterns",
    "Layout",
    "REPLICATED",
    "CollectiveOp",
    "ShardingPlan",
    "shard_graph",
]
