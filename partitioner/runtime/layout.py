"""Which process runs what: a plan's stages as ranks, its transfers as routes.

Every stage of the plan (``Partition.stage``) is one rank, or ``t`` ranks when
its partition is a tensor-parallel group of ``t`` devices; ranks are numbered
in stage order, so rank 0 runs the first stage. A rank runs its stage's
partitions in plan order (a wafer stage holds several regions; a GPU stage
one partition), keeping what they pass each other locally.

A transfer between two stages becomes a route per receiving rank: the sending
stage's first rank sends the whole tensor to every rank of the receiving stage
(each rank of a tensor-parallel group reads it whole, or slices it itself).
Transfers from the host are the model's inputs, which every rank makes itself
from the seed; transfers to the host are the outputs, gathered on rank 0 after
the timed run. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from partitioner.plan import HOST, Plan
from targets.errors import PartitionError

__all__ = ["RunLayoutError", "RankRole", "Route", "RankLayout", "rank_layout"]


class RunLayoutError(PartitionError):
    """The plan cannot be laid out as processes (bad input: exit 2)."""


@dataclass(frozen=True)
class RankRole:
    """One process: the stage it runs and its place in the stage's group.

    Attributes:
        rank: global rank (0 runs the first stage and checks the outputs).
        stage: position of its stage in the pipeline (0, 1, ...).
        plan_stage: the plan's own stage number.
        partitions: plan partition ids it runs, in plan order.
        group_rank: its rank inside a tensor-parallel group (0 otherwise).
        degree: the group's size (1 for a pipeline stage).
        device: the plan's device for it.
    """

    rank: int
    stage: int
    plan_stage: int
    partitions: tuple[int, ...]
    group_rank: int
    degree: int
    device: int


@dataclass(frozen=True)
class Route:
    """One tensor moved point to point once per micro-batch; ``tag`` orders a pair's messages."""

    tensor: str
    nbytes: int
    src_rank: int
    dst_rank: int
    tag: int


@dataclass(frozen=True)
class RankLayout:
    roles: tuple[RankRole, ...]
    routes: tuple[Route, ...]

    @property
    def world_size(self) -> int:
        return len(self.roles)

    @property
    def num_stages(self) -> int:
        return 1 + max(r.stage for r in self.roles)

    def stage_ranks(self, stage: int) -> tuple[int, ...]:
        return tuple(r.rank for r in self.roles if r.stage == stage)

    def inbound(self, rank: int) -> tuple[Route, ...]:
        return tuple(r for r in self.routes if r.dst_rank == rank)

    def outbound(self, rank: int) -> tuple[Route, ...]:
        return tuple(r for r in self.routes if r.src_rank == rank)

    def describe(self, rank: int) -> str:
        """``"rank 2 (stage 1, tensor-parallel rank 1 of 2)"`` for messages."""
        role = self.roles[rank]
        group = (
            f", tensor-parallel rank {role.group_rank} of {role.degree}" if role.degree > 1 else ""
        )
        return f"rank {rank} (stage {role.stage}{group})"


def _stages(plan: Plan) -> list[tuple[int, list[int]]]:
    """(plan stage, partition ids) in pipeline order; a group must be its stage's only partition."""
    stages: dict[int, list[int]] = {}
    for p in plan.partitions:
        stages.setdefault(p.stage, []).append(p.id)
    by_id = {p.id: p for p in plan.partitions}
    for stage, ids in stages.items():
        if len(ids) > 1 and any(len(by_id[i].devices) > 1 for i in ids):
            raise RunLayoutError(
                f"stage {stage} holds a tensor-parallel partition beside others; "
                "run needs a tensor-parallel group to be its stage's only partition"
            )
    return list(stages.items())


def _roles(plan: Plan) -> list[RankRole]:
    by_id = {p.id: p for p in plan.partitions}
    roles: list[RankRole] = []
    for position, (plan_stage, ids) in enumerate(_stages(plan)):
        first = by_id[ids[0]].devices
        devices = first if len(first) > 1 else (first[:1] or (0,))
        for group_rank, device in enumerate(devices):
            roles.append(
                RankRole(
                    len(roles), position, plan_stage, tuple(ids), group_rank, len(devices), device
                )
            )
    return roles


def _routes(plan: Plan, roles: list[RankRole]) -> list[Route]:
    stage_of = {pid: role.stage for role in roles for pid in role.partitions}
    ranks_of: dict[int, list[int]] = {}
    for role in roles:
        ranks_of.setdefault(role.stage, []).append(role.rank)
    routes: dict[tuple[str, int, int], Route] = {}
    tags: dict[tuple[int, int], int] = {}
    for t in plan.transfers:
        if HOST in (t.src, t.dst) or stage_of[t.src] == stage_of[t.dst]:
            continue
        src, dst = stage_of[t.src], stage_of[t.dst]
        if src > dst:
            raise RunLayoutError(
                f"transfer of {t.tensor!r} goes from stage {src} back to stage {dst}; "
                "run streams micro-batches forward through the stages only"
            )
        sender = ranks_of[src][0]
        for receiver in ranks_of[dst]:
            key = (t.tensor, sender, receiver)
            if key not in routes:
                tag = tags.get((sender, receiver), 0)
                tags[(sender, receiver)] = tag + 1
                routes[key] = Route(t.tensor, t.bytes, sender, receiver, tag)
    return list(routes.values())


def rank_layout(plan: Plan, *, max_ranks: int = 64) -> RankLayout:
    """The processes a plan runs as.

    Raises:
        RunLayoutError: a stage mixes a tensor-parallel group with other partitions, a
            transfer runs backwards through the stages, or more than ``max_ranks`` ranks.
    """
    roles = _roles(plan)
    if len(roles) > max_ranks:
        raise RunLayoutError(
            f"the plan needs {len(roles)} processes, more than the {max_ranks} run starts on "
            "one machine; launch it with torchrun across nodes instead"
        )
    return RankLayout(tuple(roles), tuple(_routes(plan, roles)))
