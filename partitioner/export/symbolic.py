"""Stage files that keep the model's symbolic dims (`partition export --symbolic-dims`).

The plan is made at fixed dims (``--dim batch=1 --dim past=4095``), and the
stage files `stages` cuts from the loaded graph are fixed there too: shapes the
graph computes from its inputs' dims were folded into constants at those dims. A
serving stack batching any number of sequences of any context needs the dims
left open, as the plan's load model prices them (`simulate`). This cut is made
from the model file as written, at the same names as the fixed cut (each stage's
inputs and outputs), so the split is the plan's.

A later stage's attention may size its mask from a token input (``input_ids``'s
shape), which the fixed cut had folded away: such a graph input is added to the
stage's inputs (a serving stack passes it to every stage that lists it), and the
manifest lists it. What the cut may not do is reach into another stage's work to
learn a shape: compute a node that runs on another stage at the plan's dims, or
read another stage's KV cache. The stage would then compute what it should
receive, so the export refuses instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import onnx
import onnx.utils

from partitioner.errors import UsageError
from partitioner.export.stages import StageModel
from partitioner.plan import Plan
from passes.ir import Graph
from passes.load import read_model

__all__ = ["symbolic_stage_models"]


def symbolic_stage_models(
    graph: Graph, stages: Sequence[StageModel], plan: Plan
) -> list[StageModel]:
    """``stages`` (cut from ``graph`` at ``plan``'s dims) cut again from the model file
    with its dims open.

    Raises:
        UsageError: a tensor-parallel stage, or a stage that would recompute another's work.
    """
    assert graph.path is not None
    wide = [s for s in stages if s.collectives]
    if wide:
        raise UsageError(
            f"--symbolic-dims: partition {wide[0].partition} is tensor-parallel; its rank "
            "files are written at the plan's dims only"
        )
    model, _ = read_model(graph.path)
    inferred = onnx.shape_inference.infer_shapes(model)  # the Extractor reads value_info
    extractor = onnx.utils.Extractor(inferred)
    graph_inputs = [i.name for i in inferred.graph.input]
    nodes = {p.id: set(p.nodes) for p in plan.partitions}
    return [_cut(extractor, graph, graph_inputs, s, nodes[s.partition]) for s in stages]


def _cut(
    extractor: onnx.utils.Extractor,
    graph: Graph,
    graph_inputs: list[str],
    stage: StageModel,
    own: set[int],
) -> StageModel:
    """One stage cut from the model as written at its fixed cut's names, plus the token
    inputs it reads for a shape; ``own``: its partition's nodes."""
    allowed = list(dict.fromkeys([*stage.inputs, *graph_inputs]))
    cut = extractor.extract_model(allowed, list(stage.outputs))
    stored = {t.name for t in cut.graph.initializer}
    read = {name for node in cut.graph.node for name in node.input}
    extra = [
        i.name
        for i in cut.graph.input
        if i.name in read and i.name not in stage.inputs and i.name not in stored
    ]
    _check_own_work(graph, stage, own, cut, extra)
    kept = [i for i in cut.graph.input if i.name in stage.inputs or i.name in extra]
    kept.sort(key=lambda i: [*stage.inputs, *extra].index(i.name))
    del cut.graph.input[:]
    cut.graph.input.extend(kept)
    cut.graph.name = stage.model.graph.name
    return dataclasses.replace(stage, model=cut, inputs=(*stage.inputs, *extra))


def _check_own_work(
    graph: Graph, stage: StageModel, own: set[int], cut: onnx.ModelProto, extra: list[str]
) -> None:
    """Refuse a cut that reads another stage's KV cache, or computes a node that runs on
    another stage at the plan's dims. A node folded there (shape arithmetic, a weight's
    transpose, a position table gathered at fixed positions) may run here: with the dims
    open its values are no longer constants. ``own``: the partition's nodes."""
    for name in extra:
        if graph.tensors[name].is_kv_cache:
            raise UsageError(
                f"--symbolic-dims: partition {stage.partition} would read {name!r}, another "
                "stage's KV cache, to learn a shape; export at the plan's dims instead"
            )
    for node in cut.graph.node:
        made = graph.tensors.get(next((o for o in node.output if o), ""))
        index = made.producer if made is not None else None
        if index is not None and index not in own and not graph.nodes[index].folded:
            raise UsageError(
                f"--symbolic-dims: partition {stage.partition} would recompute node "
                f"{graph.nodes[index].name!r} of another stage to learn a shape; export at "
                "the plan's dims instead"
            )
