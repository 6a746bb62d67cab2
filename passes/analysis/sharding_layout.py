"""The data of a tensor-parallel sharding: how a tensor lies across ranks, collectives.

These two types are re-exported by `passes.analysis.sharding`, whose
`ShardingPlan` holds them; they live apart so the propagation modules can use
them without importing the entry point.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Layout", "REPLICATED", "CollectiveOp", "ALL_REDUCE", "ALL_GATHER"]

ALL_REDUCE = "all_reduce"
ALL_GATHER = "all_gather"


@dataclass(frozen=True)
class Layout:
    """How one tensor lies across the n ranks of a tensor-parallel group.

    Attributes:
        axis: split axis (non-negative): rank r holds chunk r of n equal chunks;
            None: the whole tensor on every rank.
        partial: every rank holds a summand of the whole tensor (a row-split
            MatMul's output); axis is None then.
    """

    axis: int | None = None
    partial: bool = False

    def __post_init__(self) -> None:
        if self.axis is not None and self.axis < 0:
            raise ValueError(f"a split axis is non-negative, got {self.axis}")
        if self.partial and self.axis is not None:
            raise ValueError("a partial tensor is not split on an axis")

    @property
    def is_split(self) -> bool:
        return self.axis is not None

    @property
    def is_whole(self) -> bool:
        """Every rank holds the whole tensor (neither split nor partial)."""
        return self.axis is None and not self.partial


REPLICATED = Layout()


@dataclass(frozen=True)
class CollectiveOp:
    """One collective over the tensor-parallel group, right after a node.

    Attributes:
        kind: "all_reduce" (partial -> replicated) or "all_gather" (split on
            ``axis`` -> replicated).
        tensor: the tensor it applies to, right after its producer runs;
            afterwards every consumer sees it replicated.
        axis: all_gather: the gathered axis; all_reduce: None.
        nbytes: bytes of the whole tensor (what each rank holds afterwards;
            nccl-tests' "size").
        node: index of the producing node (the collective runs right after it).
    """

    kind: str
    tensor: str
    axis: int | None
    nbytes: int
    node: int
