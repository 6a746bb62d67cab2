"""One rank's program: load the plan and model, build its steps, compute a micro-batch.

`load_run` is the one place a run reads its inputs (the launcher checks them
before starting any process, each rank reads them again). `RankProgram`
computes one micro-batch from the values its routes brought plus the model
inputs (made on every rank from the seed, as `verify` makes them: micro-batch
``m`` uses seed ``seed + m``). Nothing here imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from partitioner.executor.graph_run import constant_values
from partitioner.executor.verify import make_inputs
from partitioner.executor.weights import WeightStore
from partitioner.pairing import check_valid, plan_for_model
from partitioner.plan import HOST, Plan
from partitioner.plan.validate import validate_plan
from partitioner.runtime.engines import CollectiveLog, Collectives, EngineConfig, PartitionStep
from partitioner.runtime.group_step import build_step
from partitioner.runtime.layout import RankLayout, RankRole, rank_layout
from passes.analysis.partition_io import partition_io
from passes.ir import Graph
from passes.load import load, require_external_data
from passes.transforms.dims import parse_dim_overrides

__all__ = ["RunInputs", "load_run", "RankProgram", "StepTiming"]


@dataclass(frozen=True)
class RunInputs:
    plan: Plan
    graph: Graph
    layout: RankLayout


def load_run(model: Path, plan_path: Path) -> RunInputs:
    """The plan, its model (at the plan's dims, weights present) and the rank layout.

    Raises:
        UsageError: the plan is for another model.
        InvalidPlanError: the plan breaks its contract.
        PartitionError: unreadable files, missing weights, a layout run cannot start.
    """
    plan, sha = plan_for_model(model, plan_path)
    graph = load(model, parse_dim_overrides(f"{k}={v}" for k, v in plan.model.dims.items()))
    check_valid(validate_plan(plan, graph, sha), plan_path, model)
    require_external_data(graph)
    return RunInputs(plan, graph, rank_layout(plan))


@dataclass(frozen=True)
class StepTiming:
    """Where one micro-batch's compute went on a rank: kernels, the plan's collectives
    inside them, and the gathers making split outputs whole (`engines.CollectiveLog`)."""

    compute_s: float
    collectives: tuple[tuple[str, float, float], ...]  # (tensor, start perf_counter, seconds)
    gathered: tuple[tuple[str, float, float], ...] = ()


def _keep(graph: Graph, plan: Plan, partition_id: int) -> frozenset[str]:
    """What a partition must hand on: everything the plan transfers out of it, and the
    graph outputs it makes (a KV cache that stays on the stage included)."""
    p = next(p for p in plan.partitions if p.id == partition_id)
    sent = {t.tensor for t in plan.transfers if t.src == partition_id}
    made = {o for o in partition_io(graph, p.nodes).outputs if graph.tensors[o].is_graph_output}
    return frozenset(sent | made)


class RankProgram:
    """What rank ``role.rank`` computes for each micro-batch."""

    def __init__(self, inputs: RunInputs, rank: int, engine: str, config: EngineConfig) -> None:
        self.graph, self.plan, self.layout = inputs.graph, inputs.plan, inputs.layout
        self.role: RankRole = self.layout.roles[rank]
        weights = WeightStore(self.graph)
        params = (
            constant_values(self.graph, weights)
            if engine == "numpy" or self.role.degree > 1
            else {}
        )
        by_id = {p.id: p for p in self.plan.partitions}
        self.steps: list[PartitionStep] = [
            build_step(
                self.graph,
                self.plan,
                by_id[pid],
                group_rank=self.role.group_rank,
                engine=engine,
                keep=_keep(self.graph, self.plan, pid),
                weights=weights,
                params=params,
                config=config,
            )  # fmt: skip
            for pid in self.role.partitions
        ]
        mine = set(self.role.partitions)
        self.outputs = tuple(
            sorted(
                {t.tensor for t in self.plan.transfers if t.src in mine and t.dst == HOST}
                | {n for pid in mine for n in _keep(self.graph, self.plan, pid) if n in self.graph.outputs}
            )
        ) if self.role.group_rank == 0 else ()  # fmt: skip

    def feeds(self, seed: int, microbatch: int) -> dict[str, np.ndarray]:
        """The model's inputs for one micro-batch (the same on every rank)."""
        return make_inputs(self.graph, seed + microbatch)

    def compute(
        self,
        feeds: Mapping[str, Any],
        received: Mapping[str, Any],
        collectives: Collectives | None,
    ) -> tuple[dict[str, Any], StepTiming]:
        """Run the rank's partitions on one micro-batch; every value they hand on, by name."""
        values: dict[str, Any] = {**feeds, **received}
        log = CollectiveLog()
        start = time.perf_counter()
        for step in self.steps:
            values.update(step.run(values, collectives, log))
        elapsed = time.perf_counter() - start
        in_collectives = sum(d for _, _, d in log.planned + log.gathered)
        return values, StepTiming(elapsed - in_collectives, tuple(log.planned), tuple(log.gathered))
