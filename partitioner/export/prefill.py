"""The prefill file of a decode/prefill pair, split as the plan prices it: one file per stage.

A plan made with ``partition decode.onnx --prefill prefill.onnx`` prices each
iteration's new prompts as a pass of the prefill graph on the decode plan's
stages (`partitioner.planning.prefill_fit`). A two-file serving stack needs that
pass as stage files too: each prefill node goes where `map_prefill_nodes` put
it, tensors move between the stages that make and read them (the graph's inputs
from the host), and a stage's KV-cache outputs stay on it, where its decode
stage reads them. The files are cut like the decode stages (`stages`), so chained
in order with plain onnxruntime they compute what the whole prefill graph does.
"""

from __future__ import annotations

import dataclasses

from partitioner.errors import UsageError
from partitioner.executor.weights import WeightStore
from partitioner.export.stages import StageModel, stage_models
from partitioner.export.symbolic import symbolic_stage_models
from partitioner.plan import Plan
from partitioner.planning.prefill_fit import map_prefill_nodes, prefill_transfers
from passes.ir import Graph

__all__ = ["prefill_plan", "prefill_stage_models"]


def prefill_plan(decode: Graph, prefill: Graph, plan: Plan) -> Plan:
    """``plan`` with the prefill graph's nodes on its partitions and the prefill's transfers
    between them (and from the host), as `fit_prefill` maps and prices them.

    Raises:
        UsageError: the plan was made without a prefill file, or has a tensor-parallel stage.
    """
    if plan.load_model is None or plan.load_model.prefill is None:
        raise UsageError(
            "--prefill: this plan was made without a prefill file; plan it with "
            "`partition DECODE --prefill PREFILL ...` first"
        )
    recorded = (plan.load_model.prefill.source or {}).get("sha256")
    if recorded is not None and recorded != prefill.sha256:
        raise UsageError(
            "--prefill: this is not the prefill file the plan was made with (its sha256 "
            "differs from the plan's load_model.prefill.source)"
        )
    wide = [p.id for p in plan.partitions if len(p.devices) > 1]
    if wide:
        raise UsageError(
            f"--prefill: partition {wide[0]} is tensor-parallel; the prefill pass is split "
            "only onto stages of one device each"
        )
    nodes = map_prefill_nodes(decode, prefill, plan.partitions)
    parts = [dataclasses.replace(p, nodes=n) for p, n in zip(plan.partitions, nodes, strict=True)]
    transfers = prefill_transfers(prefill, plan.partitions, nodes, from_host=True)
    return dataclasses.replace(plan, partitions=parts, transfers=transfers)


def prefill_stage_models(
    decode: Graph, prefill: Graph, plan: Plan, symbolic: bool = False
) -> list[StageModel]:
    """The prefill graph's stage files' models, in the plan's partition order, each named
    ``prefill_partition<id>``; with ``symbolic``, their dims left open (`symbolic`).

    Raises:
        UsageError: as `prefill_plan` and `symbolic_stage_models`.
    """
    split = prefill_plan(decode, prefill, plan)
    stages = stage_models(prefill, split, WeightStore(prefill))
    if symbolic:
        stages = symbolic_stage_models(prefill, stages, split)
    for stage in stages:
        stage.model.graph.name = f"prefill_{stage.name}"
    return [dataclasses.replace(s, name=f"prefill_{s.name}") for s in stages]
