"""Tensor-parallel groups in the NumPy executor: ranks in lockstep equal the whole model,
and a plan whose sharding is wrong fails verification, naming the tensor."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from examples import llama
from partitioner.executor.graph_run import PlanExecutionError, constant_values, run_graph, run_plan
from partitioner.executor.tensor_parallel import run_group
from partitioner.executor.verify import make_inputs, verify_plan
from partitioner.executor.weights import WeightStore
from partitioner.plan import (
    Bottleneck,
    Collective,
    Estimate,
    ModelInfo,
    Parallelism,
    Partition,
    Plan,
    Provenance,
    Shard,
    SolverInfo,
    TargetInfo,
    Transfer,
)
from partitioner.planning import GpuOptions, plan_pipeline
from passes.analysis.partition_io import residency, tensor_flows
from passes.analysis.sharding import ShardingPlan, shard_graph
from passes.load import load
from tests.cli import run_cli
from tests.partitioner.gpu_targets import toy_target
from tests.passes import test_rank_graph as mlp_case

mlp = mlp_case.mlp  # the fixture: fc1 (x @ W1), relu, fc2 (@ W2), bias
megatron, gathered = mlp_case.megatron, mlp_case.gathered

X = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)


def _group(graph, sharding, keep=("out",)):
    params = constant_values(graph, WeightStore(graph))
    return run_group(graph, sharding, range(graph.num_nodes), {"x": X}, params, {}, keep=keep)


@pytest.mark.parametrize("sharding", [megatron(), gathered()], ids=["all_reduce", "all_gather"])
def test_mlp_on_two_ranks_equals_the_whole_model(mlp, sharding):
    whole = run_graph(mlp, {"x": X})["out"]
    result = _group(mlp, sharding)
    np.testing.assert_allclose(result.outbox["out"], whole, rtol=1e-6, atol=1e-6)
    assert set(result.collected) == {sharding.collectives[0].tensor}


def test_a_rank_holds_half_the_hidden_activations(mlp):
    # x [2,8] and h [2,8] (half of [2,16]) after fc1: 128 bytes; the whole model holds 192
    assert _group(mlp, megatron()).peak_bytes == 128


def test_dropped_all_reduce_makes_the_ranks_disagree(mlp):
    dropped = dataclasses.replace(megatron(), collectives=())
    with pytest.raises(
        PlanExecutionError, match=r"partition 0: tensor 'out' should be the same on every rank"
    ):
        _group(mlp, dropped)
    # kept before the bias: y leaves as a partial sum
    with pytest.raises(PlanExecutionError, match=r"tensor 'y' leaves the group as a partial sum"):
        run_group(
            mlp,
            dropped,
            [0, 1, 2],
            {"x": X},
            constant_values(mlp, WeightStore(mlp)),
            {},
            keep={"y"},
        )


def test_wrong_weight_axis_fails_in_the_node_that_reads_it(mlp):
    rows = dataclasses.replace(megatron(), weights={"w1": 0, "w2": 0})
    with pytest.raises(PlanExecutionError, match=r"partition 0, rank 0 of 2: .*fc1"):
        _group(mlp, rows)


def test_wrong_gather_axis_gives_the_wrong_shape(mlp):
    sharding = gathered()
    wrong = dataclasses.replace(
        sharding, collectives=(dataclasses.replace(sharding.collectives[0], axis=0),)
    )
    with pytest.raises(PlanExecutionError, match=r"AllGather of 'a' gives shape \[4, 8\]"):
        _group(mlp, wrong)


def tp_plan(graph, groups: list[tuple[int, ...]], cut: int) -> Plan:
    """Nodes [0, cut) on the first group, the rest on the second; shards, collectives and
    transfers as a planner lists them (from shard_graph at each group's size)."""
    node_sets = [tuple(range(cut)), tuple(range(cut, graph.num_nodes))]
    partitions, shards, collectives = [], [], []
    for pid, (devices, nodes) in enumerate(zip(groups, node_sets, strict=True)):
        partitions.append(Partition(pid, pid, devices, nodes, 0, 0, 0, 1 << 30, 1 << 30, 0, 0.0))
        if len(devices) == 1:
            continue
        parts = len(devices)
        sharding: ShardingPlan = shard_graph(graph, parts)
        held = residency(graph, [n for n in nodes if not graph.nodes[n].folded])
        shards += [
            Shard(n, pid, sharding.weights[n], parts) for n in held.params if n in sharding.weights
        ]
        shards += [
            Shard(n, pid, sharding.layouts[n].axis, parts)  # type: ignore[arg-type]
            for n in held.kv_cache
            if sharding.layouts[n].axis is not None
        ]
        collectives += [
            Collective(op.kind, op.tensor, pid, op.nbytes, 0.0)
            for op in sharding.collectives
            if op.node in nodes
        ]
    owner = {n: pid for pid, nodes in enumerate(node_sets) for n in nodes}
    transfers = [
        Transfer(f.tensor, f.bytes, f.src, dst, 0.0)
        for f in tensor_flows(graph, owner)
        for dst in (*f.readers, *((-1,) if f.to_host else ()))
    ]
    return Plan(
        model=ModelInfo(
            str(graph.path), graph.sha256, graph.opset, graph.num_nodes, 0, 0, dict(graph.dims)
        ),
        target=TargetInfo("toy", "gpu", "0" * 64, {"devices": [{}] * 4}),
        solver=SolverInfo("hand", "HEURISTIC", 0.0, 0.0, 0.0, 0.0, 0, 0.0),
        parallelism=Parallelism(tp=2, pp=2),
        partitions=tuple(partitions),
        transfers=tuple(transfers),
        estimate=Estimate(1.0, 1.0, Bottleneck("compute", "stage 0")),
        provenance=Provenance("test", "0", "hand-made"),
        shards=tuple(shards),
        collectives=tuple(collectives),
    )


@pytest.fixture(scope="module", params=["decode", "prefill"])
def tiny_llama(request, tmp_path_factory):
    kind = request.param
    folder = tmp_path_factory.mktemp(kind)
    path = llama.build(folder / f"{kind}.onnx", "tiny", kind=kind, weights="random")
    dims = {"batch": 1, "past": 15} if kind == "decode" else {"batch": 1, "seq": 8}
    graph = load(path, dims)
    return graph, cut_after(graph, "model.layers.0.mlp_residual")


def cut_after(graph, tensor: str) -> int:
    """The first node index of the second partition: the one after ``tensor``'s producer."""
    return graph.tensors[tensor].producer + 1


# what crosses the cut: a whole hidden state; a tensor its all-reduce made whole in the
# first group; query and key split by heads (no collective on them)
CUTS = {
    "residual": "model.layers.0.mlp_residual",
    "reduced": "model.layers.0.self_attn.o_proj",
    "heads": "model.layers.0.self_attn.k_transpose",
}


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize(
    "groups",
    [[(0, 1), (2, 3)], [(0, 1), (2,)], [(0,), (1, 2)]],
    ids=["tp2-tp2", "tp2-tp1", "tp1-tp2"],
)
def test_llama_tensor_parallel_plan_equals_the_whole_model(tiny_llama, groups, cut):
    graph, _ = tiny_llama
    plan = tp_plan(graph, groups, cut_after(graph, CUTS[cut]))
    feeds = make_inputs(graph, seed=2)
    whole = run_graph(graph, feeds)
    ours = run_plan(graph, plan, feeds)
    for name in graph.outputs:
        np.testing.assert_allclose(ours.outputs[name], whole[name], rtol=1e-5, atol=1e-5)
    assert {c.tensor for c in plan.collectives} == set(ours.collected)
    assert all(run.peak_bytes > 0 for run in ours.partitions)


def test_verify_passes_a_tensor_parallel_plan(tiny_llama):
    graph, cut = tiny_llama
    plan = tp_plan(graph, [(0, 1), (2, 3)], cut)
    report = verify_plan(graph, plan, make_inputs(graph, seed=0))
    assert report.ok, report.to_dict()
    # the embedding's all-reduce, two a layer, the LM head's gather
    assert len(plan.collectives) == 6
    assert ("all_reduce", "model.embed_tokens", 0) in {
        (c.kind, c.tensor, c.partition) for c in plan.collectives
    }
    assert Shard("model.embed_tokens.weight", 0, 0, 2) in plan.shards
    sliced_caches = {s.tensor for s in plan.shards if s.tensor.startswith("past.")}
    assert sliced_caches == {n for n in graph.inputs if n.startswith("past.")}


def test_a_planned_tensor_parallel_plan_verifies(tiny_llama, tmp_path):
    """The planner's own TP2 x PP2 plan: verify runs its groups and agrees with onnxruntime."""
    graph, _ = tiny_llama
    options = GpuOptions(tp=2, pp=2, time_limit_s=5, command="t")
    plan = plan_pipeline(graph, toy_target([4_000_000] * 4, gpus_per_node=4), options).plan
    assert [len(p.devices) for p in plan.partitions] == [2, 2] and plan.collectives
    # the embedding's vocabulary split and its all-reduce, as the planner lists them
    lookup = graph.tensors["model.embed_tokens"].producer
    first = next(p.id for p in plan.partitions if lookup in p.nodes)
    assert Shard("model.embed_tokens.weight", first, 0, 2) in plan.shards
    assert ("all_reduce", "model.embed_tokens", first) in {
        (c.kind, c.tensor, c.partition) for c in plan.collectives
    }
    assert verify_plan(graph, plan, make_inputs(graph, seed=4)).ok
    (tmp_path / "tp.plan.json").write_text(plan.to_json())
    result = run_cli("verify", str(graph.path), str(tmp_path / "tp.plan.json"))
    assert result.code == 0, result.err


def test_verify_catches_a_dropped_all_reduce(tiny_llama):
    graph, cut = tiny_llama
    plan = tp_plan(graph, [(0, 1), (2, 3)], cut)
    lost = next(c for c in plan.collectives if c.tensor == "model.layers.1.mlp.down_proj")
    broken = dataclasses.replace(plan, collectives=tuple(c for c in plan.collectives if c != lost))
    with pytest.raises(
        PlanExecutionError,
        match=r"partition 1 \(2 devices\): tensor 'model.layers.1.mlp.down_proj' \(made by node "
        r"\d+, .*\): the plan has no collective on it, but sharding the model needs an all_reduce",
    ):
        verify_plan(graph, broken, make_inputs(graph))


def test_verify_catches_a_wrong_shard_axis(tiny_llama):
    graph, cut = tiny_llama
    plan = tp_plan(graph, [(0, 1), (2, 3)], cut)
    name = "model.layers.0.mlp.up_proj.weight"
    shards = tuple(dataclasses.replace(s, axis=0) if s.tensor == name else s for s in plan.shards)
    with pytest.raises(
        PlanExecutionError,
        match=rf"partition 0 \(2 devices\): tensor '{name}': the plan splits it on axis 0, "
        "but sharding the model splits it on axis 1",
    ):
        verify_plan(graph, dataclasses.replace(plan, shards=shards), make_inputs(graph))
    wrong_parts = tuple(dataclasses.replace(s, parts=4) if s.tensor == name else s for s in shards)
    with pytest.raises(
        PlanExecutionError, match=rf"splits '{name}' into 4 parts, but the partition"
    ):
        run_plan(graph, dataclasses.replace(plan, shards=wrong_parts), make_inputs(graph))


def test_verify_names_the_first_collective_that_diverges(tiny_llama, monkeypatch):
    """A corrupted layer-1 query weight: the first tensor to differ from onnxruntime is the
    all-reduced attention output of layer 1, inside partition 1."""
    graph, cut = tiny_llama
    plan = tp_plan(graph, [(0, 1), (2, 3)], cut)
    real_get = WeightStore.get

    def corrupted(self, name):
        value = real_get(self, name)
        return value * 2 if name == "model.layers.1.self_attn.q_proj.weight" else value

    monkeypatch.setattr(WeightStore, "get", corrupted)
    report = verify_plan(graph, plan, make_inputs(graph))
    assert not report.ok
    assert (report.first_divergent_partition, report.divergent_tensor) == (
        1,
        "model.layers.1.self_attn.o_proj",
    )


def test_a_missing_transfer_into_a_group_names_the_tensor(tiny_llama):
    graph, cut = tiny_llama
    plan = tp_plan(graph, [(0, 1), (2, 3)], cut)
    relay = next(t for t in plan.transfers if t.src == 0 and t.dst == 1)
    broken = dataclasses.replace(plan, transfers=tuple(t for t in plan.transfers if t != relay))
    with pytest.raises(
        PlanExecutionError, match=rf"partition 1 needs tensor '{relay.tensor}' from partition 0"
    ):
        run_plan(graph, broken, make_inputs(graph))
