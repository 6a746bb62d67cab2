"""The independent validator: a good plan passes; each broken rule is named."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from onnx import helper

from partitioner.plan import (
    Bottleneck,
    Collective,
    Estimate,
    ModelInfo,
    Parallelism,
    Partition,
    Plan,
    PlanError,
    Provenance,
    Region,
    Shard,
    SolverInfo,
    TargetInfo,
    Transfer,
    check_schema,
)
from partitioner.plan.validate import validate_plan
from passes.load import load
from tests.cli import run_cli
from tests.modelgen import init, make_model, save, vi


@pytest.fixture
def graph(tmp_path):
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("MatMul", ["a", "w2"], ["y"], name="fc2"),
    ]
    inits = [init("w1", np.ones((8, 16), np.float32)), init("w2", np.ones((16, 4), np.float32))]
    return load(
        save(make_model(nodes, [vi("x", [2, 8])], [vi("y", [2, 4])], inits), tmp_path / "m.onnx")
    )


def _plan(graph, **changes) -> Plan:
    parts = (
        Partition(0, 0, (0,), (0, 1), 512, 256, 0, 1024, 4096, 544, 1e-6),
        Partition(1, 1, (1,), (2,), 256, 160, 0, 512, 4096, 256, 1e-6),
    )
    transfers = (
        Transfer("x", 64, -1, 0, 1e-7),
        Transfer("a", 128, 0, 1, 1e-7),
        Transfer("y", 32, 1, -1, 1e-7),
    )
    plan = Plan(
        model=ModelInfo(str(graph.path), graph.sha256, 18, 3, 768, 800, {}),
        target=TargetInfo("toy", "gpu", "0" * 64, {"devices": [{}, {}]}),
        solver=SolverInfo("dp", "OPTIMAL", 1e-6, 1e-6, 0.0, 0.0, 0, 10.0),
        parallelism=Parallelism(pp=2),
        partitions=parts,
        transfers=transfers,
        estimate=Estimate(2e-6, 1e6, Bottleneck("compute", "stage 0")),
        provenance=Provenance("partition", "0.1.0", "partition m.onnx --target toy"),
    )
    plan = dataclasses.replace(plan, **changes)
    if "parallelism" in changes:
        return plan
    # the degrees follow the partitions unless a test sets them
    tp = max(len(p.devices) for p in plan.partitions)
    return dataclasses.replace(
        plan, parallelism=Parallelism(tp=tp, pp=len({p.stage for p in plan.partitions}))
    )


def test_good_plan_passes_and_round_trips(graph):
    plan = _plan(graph)
    assert validate_plan(plan, graph, graph.sha256) == []
    text = plan.to_json()
    assert check_schema(json.loads(text)) == []
    again = Plan.from_json(text)
    assert again == plan and again.to_json() == text


def _first(plan, graph, sha=None):
    violations = validate_plan(plan, graph, sha)
    assert violations, "expected a violation"
    return violations[0]


def test_other_model_sha(graph):
    v = _first(_plan(graph), graph, "f" * 64)
    assert v.rule == "model" and "another model" in v.message


def test_node_missing_or_duplicated(graph):
    p0, p1 = _plan(graph).partitions
    v = _first(_plan(graph, partitions=(dataclasses.replace(p0, nodes=(0,)), p1)), graph)
    assert v.rule == "coverage" and "1 (relu)" in v.message
    v = _first(_plan(graph, partitions=(p0, dataclasses.replace(p1, nodes=(1, 2)))), graph)
    assert v.rule == "coverage" and "node 1" in v.message


def test_tensor_flowing_backwards(graph):
    p0, p1 = _plan(graph).partitions
    # fc2 first, then fc1+relu: 'a' would flow from a later partition to an earlier one
    swapped = (dataclasses.replace(p1, id=1), dataclasses.replace(p0, id=0))
    v = _first(_plan(graph, partitions=swapped), graph)
    assert v.rule in ("order", "transfers") and "'a'" in v.message


def test_node_order_inside_partition(graph):
    p0, p1 = _plan(graph).partitions
    v = _first(_plan(graph, partitions=(dataclasses.replace(p0, nodes=(1, 0)), p1)), graph)
    assert v.rule == "order" and "before node 0 produces it" in v.message


def test_missing_transfer(graph):
    plan = _plan(graph)
    v = _first(dataclasses.replace(plan, transfers=plan.transfers[::2]), graph)
    assert v.rule == "transfers" and "'a'" in v.message and "no transfer" in v.message


def test_transfer_from_partition_without_the_tensor(graph):
    plan = _plan(graph)
    bad = (plan.transfers[0], Transfer("a", 128, -1, 1, 0.0), plan.transfers[2])
    v = _first(dataclasses.replace(plan, transfers=bad), graph)
    assert v.rule == "transfers" and "neither produces nor received" in v.message


def test_memory_below_params_and_over_capacity(graph):
    p0, p1 = _plan(graph).partitions
    v = _first(_plan(graph, partitions=(dataclasses.replace(p0, memory_bytes=100), p1)), graph)
    assert v.rule == "memory" and "512 bytes of parameters" in v.message
    v = _first(_plan(graph, partitions=(dataclasses.replace(p0, memory_bytes=5000), p1)), graph)
    assert v.rule == "memory" and "capacity" in v.message


def test_wafer_regions(graph):
    spec = {
        "num_wafers": 1,
        "wafer": {
            "width_cores": 8,
            "height_cores": 8,
            "sram_bytes_per_core": 64,
            "sram_reserve_bytes_per_core": 0,
        },
    }
    target = TargetInfo("grid", "wafer", "0" * 64, spec)
    p0, p1 = _plan(graph).partitions
    ok = (
        dataclasses.replace(p0, devices=(0,), region=Region(0, 0, 0, 4, 4), capacity_bytes=1024),
        dataclasses.replace(
            p1, stage=0, devices=(0,), region=Region(0, 4, 0, 4, 4), capacity_bytes=1024
        ),
    )
    assert validate_plan(_plan(graph, target=target, partitions=ok), graph) == []
    overlap = (ok[0], dataclasses.replace(ok[1], region=Region(0, 3, 3, 4, 4)))
    assert _first(_plan(graph, target=target, partitions=overlap), graph).message.endswith(
        "overlap on wafer 0"
    )
    outside = (ok[0], dataclasses.replace(ok[1], region=Region(0, 6, 0, 4, 4)))
    assert (
        "leaves the 8x8 grid"
        in _first(_plan(graph, target=target, partitions=outside), graph).message
    )
    # 1024 bytes over 2x2 = 4 cores is 256 per core, more than 64
    tight = (dataclasses.replace(ok[0], region=Region(0, 0, 0, 2, 2)), ok[1])
    assert "per core" in _first(_plan(graph, target=target, partitions=tight), graph).message


def test_schema_rejects_malformed_plans(graph):
    doc = _plan(graph).to_dict()
    del doc["solver"]["gap"]
    assert any("gap" in p for p in check_schema(doc))
    doc = _plan(graph).to_dict()
    doc["schema_version"] = 3
    assert "not supported" in check_schema(doc)[0]
    doc = _plan(graph).to_dict()
    doc["schema_version"] = 1  # a version 2 document is not a valid version 1 plan
    assert any("devices" in p or "wall_s" in p for p in check_schema(doc))
    with pytest.raises(PlanError, match="not JSON"):
        Plan.from_json("{nope", source="x.json")


def _tp_target(devices: int = 4, per_node: int = 2) -> TargetInfo:
    return TargetInfo(
        "toy", "gpu", "0" * 64, {"devices": [{}] * devices, "gpus_per_node": per_node}
    )


def _messages(plan, graph):
    return [str(v) for v in validate_plan(plan, graph)]


def test_device_groups(graph):
    p0, p1 = _plan(graph).partitions
    twice = (dataclasses.replace(p0, devices=(0, 0)), p1)
    assert any(
        "lists a device twice" in m for m in _messages(_plan(graph, partitions=twice), graph)
    )
    shared = (p0, dataclasses.replace(p1, devices=(0,)))
    assert any(
        "device 0 serves stages 0 and 1" in m
        for m in _messages(_plan(graph, partitions=shared), graph)
    )
    # GPUs 1 and 2 sit in different nodes of two GPUs each
    spans = (p0, dataclasses.replace(p1, devices=(1, 2)))
    plan = _plan(graph, partitions=spans, target=_tp_target())
    assert _messages(plan, graph) == [
        "[devices] partition 1's tensor-parallel group [1, 2] spans nodes [0, 1] (2 GPUs a node); "
        "a group stays inside one node"
    ]
    inside = (p0, dataclasses.replace(p1, devices=(2, 3)))
    assert _messages(_plan(graph, partitions=inside, target=_tp_target()), graph) == []


def test_shards_and_sharded_parameter_memory(graph):
    p0, p1 = _plan(graph).partitions
    # w1 is 8x16 float32 = 512 bytes; split 2 ways along axis 1, each GPU holds 256
    group = (
        dataclasses.replace(p0, devices=(0, 1), memory_bytes=300),
        dataclasses.replace(p1, devices=(2,)),
    )
    good = _plan(graph, partitions=group, target=_tp_target(), shards=(Shard("w1", 0, 1, 2),))
    assert _messages(good, graph) == []
    assert Plan.from_json(good.to_json()) == good
    unsplit = dataclasses.replace(good, shards=())
    assert _messages(unsplit, graph) == [
        "[memory] partition 0 declares 300 bytes of memory but its nodes use 512 bytes of parameters"
    ]
    cases = {
        Shard("w1", 0, 1, 3): "3 parts, but the partition has 2 devices",
        Shard("w1", 0, 2, 2): "axis 2 does not exist in a tensor of rank 2",
        Shard("nope", 0, 0, 2): "the model has no such tensor",
        Shard("w1", 7, 0, 2): "partition 7: the partition does not exist",
    }
    for shard, needle in cases.items():
        messages = _messages(dataclasses.replace(good, shards=(shard,)), graph)
        assert (messages == []) if not needle else any(needle in m for m in messages), (
            shard,
            messages,
        )
    odd = (
        dataclasses.replace(p0, devices=(0, 1, 2), memory_bytes=600),
        dataclasses.replace(p1, devices=(3,)),
    )
    plan = _plan(graph, partitions=odd, target=_tp_target(4, 4), shards=(Shard("w1", 0, 0, 3),))
    assert any("axis 0 of size 8 does not split into 3 parts" in m for m in _messages(plan, graph))


def test_collectives(graph):
    p0, p1 = _plan(graph).partitions
    single = _plan(graph, collectives=(Collective("all_reduce", "h", 0, 128, 1e-6),))
    assert any("the partition has one device" in m for m in _messages(single, graph))
    group = (dataclasses.replace(p0, devices=(0, 1)), dataclasses.replace(p1, devices=(2,)))
    plan = _plan(
        graph,
        partitions=group,
        target=_tp_target(),
        collectives=(Collective("all_reduce", "h", 0, 128, 1e-6),),
    )
    assert _messages(plan, graph) == []
    assert Plan.from_json(plan.to_json()) == plan
    missing = dataclasses.replace(plan, collectives=(Collective("all_gather", "zz", 0, 8, 0.0),))
    assert any("the model has no such tensor" in m for m in _messages(missing, graph))


def test_a_partial_sum_must_be_reduced(graph):
    p0, p1 = _plan(graph).partitions
    group = (dataclasses.replace(p0, devices=(0, 1)), dataclasses.replace(p1, devices=(2,)))
    # w1 [8, 16] split on axis 0, the axis fc1 sums over: each GPU holds a summand of h
    row_split = _plan(graph, partitions=group, target=_tp_target(), shards=(Shard("w1", 0, 0, 2),))
    assert _messages(row_split, graph) == [
        "[collectives] node 0 (fc1) in partition 0 splits 'w1' along the summed axis, so 'h' "
        "is a partial sum, but no all_reduce of it follows"
    ]
    reduced = dataclasses.replace(
        row_split, collectives=(Collective("all_reduce", "h", 0, 128, 1e-6),)
    )
    assert _messages(reduced, graph) == []
    # split on axis 1 (columns): each GPU holds whole outputs of its columns, nothing to reduce
    column = dataclasses.replace(row_split, shards=(Shard("w1", 0, 1, 2),))
    assert _messages(column, graph) == []


def test_the_degrees_describe_the_partitions(graph):
    plan = _plan(graph)  # two stages of one GPU each, on a 2-GPU target
    assert _messages(plan, graph) == []
    wrong = dataclasses.replace(plan, parallelism=Parallelism(tp=2, pp=1))
    assert _messages(wrong, graph) == [
        "[parallelism] parallelism says tp 2 x pp 1, but the partitions form 2 stage(s) of "
        "at most 1 device(s)"
    ]
    replicas = dataclasses.replace(plan, parallelism=Parallelism(pp=2, dp=2))
    assert _messages(replicas, graph) == [
        "[parallelism] 2 replica(s) of a pipeline on 2 device(s) need 4; the target has 2"
    ]
    assert _messages(dataclasses.replace(replicas, target=_tp_target()), graph) == []


def test_validate_counts_a_kv_cache_for_every_batch_in_flight(tmp_path):
    import json
    from pathlib import Path

    golden = Path(__file__).resolve().parents[1] / "golden" / "llama-tiny-decode.h100x4.plan.json"
    plan = json.loads(golden.read_text())
    assert plan["estimate"]["batches_in_flight"] >= 1
    assert run_cli("validate", str(golden)).code == 0
    # 80 GB GPUs hold this tiny model's KV cache many times over, not 10^12 times
    plan["estimate"]["batches_in_flight"] = 10**12
    edited = tmp_path / "plan.json"
    edited.write_text(json.dumps(plan))
    result = run_cli("validate", str(edited))
    assert result.code == 1
    assert (
        "KV caches of the 1000000000000 batches the plan keeps in flight" in result.out + result.err
    )
