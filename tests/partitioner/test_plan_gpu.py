"""GPU planning end to end: plans validate, errors are clear, output is deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partitioner.plan import Plan
from partitioner.plan.validate import validate_plan
from partitioner.planning import GpuOptions, InfeasibleError, UsageError, plan_pipeline
from passes.load import load
from tests.modelgen import random_dag, save
from tests.partitioner.gpu_targets import toy_target


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_dags_on_random_targets_always_validate(tmp_path_factory, data):
    n = data.draw(st.integers(3, 24), label="nodes")
    model = random_dag(lambda lo, hi: data.draw(st.integers(lo, hi)), n)
    path = save(model, tmp_path_factory.mktemp("dag") / "dag.onnx")
    graph = load(path)
    k = data.draw(st.integers(1, 4), label="devices")
    capacities = [data.draw(st.integers(2_000, 20_000)) for _ in range(k)]
    solver = data.draw(st.sampled_from(["cpsat", "dp", "greedy", "uniform"]))
    try:
        outcome = plan_pipeline(
            graph, toy_target(capacities), GpuOptions(solver=solver, time_limit_s=2)
        )
    except (InfeasibleError, UsageError):
        return  # a clear refusal is a valid answer (too little memory, too few blocks)
    plan = outcome.plan
    assert validate_plan(plan, graph, graph.sha256) == []
    assert Plan.from_json(plan.to_json()) == plan
    assert plan.solver.bound_s <= plan.solver.objective_s + 1e-15


@pytest.fixture
def dag(tmp_path):
    rng = np.random.default_rng(3)
    model = random_dag(lambda lo, hi: int(rng.integers(lo, hi + 1)), 40)
    return load(save(model, tmp_path / "dag.onnx"))


def test_same_input_and_seed_give_identical_bytes(dag):
    target = toy_target([50_000] * 4)
    a = plan_pipeline(dag, target, GpuOptions(time_limit_s=5, command="x")).plan.to_json()
    b = plan_pipeline(dag, target, GpuOptions(time_limit_s=5, command="x")).plan.to_json()
    assert a == b


def test_cpsat_never_worse_than_baselines(dag):
    target = toy_target([50_000] * 4)
    objective = {
        s: plan_pipeline(dag, target, GpuOptions(solver=s, time_limit_s=5)).plan.solver.objective_s
        for s in ("cpsat", "dp", "greedy", "params", "uniform")
    }
    assert all(objective["cpsat"] <= v + 1e-12 for v in objective.values()), objective


def test_model_too_big_reports_bytes_and_minimum_devices(dag):
    # 16 MatMul-ish weights of 8*8*4 = 256 B... far more than 2 x 300 B
    with pytest.raises(InfeasibleError, match=r"needs at least \d+ devices"):
        plan_pipeline(dag, toy_target([300, 300]), GpuOptions())


def test_single_node_larger_than_a_device(tmp_path):
    from onnx import helper

    from tests.modelgen import init, make_model, vi

    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="giant")]
    model = make_model(
        nodes, [vi("x", [2, 64])], [vi("y", [2, 64])], [init("w", np.zeros((64, 64), np.float32))]
    )
    graph = load(save(model, tmp_path / "giant.onnx"))
    with pytest.raises(InfeasibleError, match="node 0 'giant' .* alone needs 16.4 kB"):
        plan_pipeline(graph, toy_target([10_000, 10_000]), GpuOptions())


@pytest.mark.parametrize("devices", [0, 5, -1])
def test_devices_out_of_range(dag, devices):
    with pytest.raises(UsageError, match="has 4 devices"):
        plan_pipeline(dag, toy_target([50_000] * 4), GpuOptions(devices=devices))


def test_devices_auto_finds_the_fewest_that_fit(dag):
    outcome = plan_pipeline(
        dag, toy_target([3_000] * 8, gpus_per_node=8), GpuOptions(devices="auto", time_limit_s=5)
    )
    used = outcome.plan.estimate.extra["devices_used"]
    assert outcome.devices_auto and len(outcome.plan.partitions) == used
    with pytest.raises(InfeasibleError):
        plan_pipeline(
            dag,
            toy_target([3_000] * 8, gpus_per_node=8),
            GpuOptions(devices=used - 1, solver="dp"),
        )


def test_heterogeneous_memory_is_respected(dag):
    outcome = plan_pipeline(dag, toy_target([2_500, 60_000, 60_000]), GpuOptions(time_limit_s=5))
    small = outcome.plan.partitions[0]
    assert small.capacity_bytes == 2_500 and small.memory_bytes <= 2_500


def test_bad_time_limit(dag):
    with pytest.raises(UsageError, match="positive"):
        plan_pipeline(dag, toy_target([50_000] * 2), GpuOptions(time_limit_s=0))


def test_plan_json_has_every_contract_field(dag):
    doc = json.loads(
        plan_pipeline(dag, toy_target([50_000] * 2), GpuOptions(time_limit_s=2)).plan.to_json()
    )
    # The order DESIGN.md lists the plan contract (schema_version 2) in.
    assert list(doc) == [
        "schema_version",
        "model",
        "target",
        "solver",
        "parallelism",
        "partitions",
        "shards",
        "collectives",
        "transfers",
        "estimate",
        "provenance",
    ]
    assert list(doc["solver"]) == [
        "name",
        "status",
        "objective_s",
        "bound_s",
        "gap",
        "effort_s",
        "seed",
        "time_limit_s",
        "candidates",
    ]

    for p in doc["partitions"]:
        assert list(p) == [
            "id",
            "stage",
            "devices",
            "nodes",
            "param_bytes",
            "activation_bytes",
            "kv_cache_bytes",
            "memory_bytes",
            "capacity_bytes",
            "flops",
            "compute_s",
        ]
        assert p["devices"] == [p["stage"]]


def test_plan_json_v2_sections(dag):
    doc = json.loads(
        plan_pipeline(dag, toy_target([50_000] * 2), GpuOptions(time_limit_s=2)).plan.to_json()
    )
    # every tp x pp = 2 tried (tp 1 and 2 inside a node of 2), the chosen one included
    # throughput: 2 GPUs as one pipeline, one tp-group, or two replicas
    assert [(c["tp"], c["pp"], c["dp"]) for c in doc["solver"]["candidates"]] == [
        (1, 2, 1),
        (2, 1, 1),
        (1, 1, 2),
    ]
    chosen = [
        c
        for c in doc["solver"]["candidates"]
        if (c["tp"], c["pp"], c["dp"])
        == (doc["parallelism"]["tp"], doc["parallelism"]["pp"], doc["parallelism"]["dp"])
    ]
    assert chosen[0]["objective_s"] == doc["solver"]["objective_s"]
    assert doc["parallelism"] == {
        "tp": doc["parallelism"]["tp"],
        "pp": doc["parallelism"]["pp"],
        "dp": 2 // (doc["parallelism"]["tp"] * doc["parallelism"]["pp"]),
        "microbatches": 1,
        "overlap_transfers": False,
        "objective": "throughput",
    }
    if doc["parallelism"]["tp"] == 1:
        assert doc["shards"] == [] and doc["collectives"] == []
    assert list(doc["estimate"])[:4] == ["latency_s", "throughput_per_s", "bottleneck", "comm_s"]
    assert doc["estimate"]["comm_s"] == pytest.approx(sum(t["time_s"] for t in doc["transfers"]))


def test_recorded_command_leaves_out_output_options():
    from partitioner.commands.plan import reproducible_command

    argv = ["m.onnx", "--target", "h100x4", "-o", "a.json", "--dim", "b=1", "--png=x.png", "-q"]
    assert reproducible_command(argv) == "partition m.onnx --target h100x4 --dim b=1"


def test_time_limit_too_short_says_so(dag, monkeypatch):
    import partitioner.planning.gpu.candidate as planner
    from partitioner.solvers.cpsat_pipeline import CpSatResult

    # No split contiguous in topological order fits (the DP finds none), and CP-SAT,
    # given almost no time, finds nothing either.
    nothing = CpSatResult(None, "HEURISTIC", float("inf"), 0.0, 0.0, 0.0, False, 1e-6)
    monkeypatch.setattr(planner, "dp_partition", lambda problem: None)
    monkeypatch.setattr(planner, "cpsat_partition", lambda problem, **kw: nothing)
    with pytest.raises(
        InfeasibleError, match=r"no plan found within --time-limit 0.01 s.*--time-limit 120"
    ):
        plan_pipeline(dag, toy_target([50_000] * 4), GpuOptions(time_limit_s=0.01))


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--microbatches", "0"], "--microbatches 0"),
        (["--blocks", "0"], "--blocks 0"),
        (["--target", "wse2", "--regions", "0"], "--regions 0"),
        (["--target", "wse2", "--tile", "-2"], "--tile -2"),
        (["--time-limit", "0"], "--time-limit 0"),
        (["--seed", "-1"], "--seed -1"),
        (["--dp", "0"], "--dp 0"),
        (["--dp", "3"], "--dp 3 does not divide the 4 devices used"),
        (["--dp", "2", "--devices", "auto"], "--dp with --devices auto"),
        (["--tp", "2", "--pp", "1", "--dp", "4"], "--tp 2 x --pp 1 x --dp 4 needs 8 devices"),
        (["-o", "/nonexistent/dir/plan.json"], "folder /nonexistent/dir does not exist"),
    ],
)
def test_impossible_options_are_refused_before_any_work(dag, extra, needle):
    from tests.cli import run_cli

    result = run_cli(str(dag.path), "--target", "h100x4", *extra)
    assert result.code == 2 and needle in result.err and result.err.count("\n") == 1
    assert not list(dag.path.parent.glob("*.plan.json"))


@pytest.mark.parametrize(
    "target,extra,needle",
    [
        ("wse2", ["--microbatches", "4"], "--microbatches applies to GPU targets only"),
        ("wse2", ["--overlap"], "--overlap applies to GPU targets only"),
        ("wse2", ["--blocks", "64"], "--blocks applies to GPU targets only"),
        ("wse2", ["--dp", "2"], "--dp applies to GPU targets only"),
        ("h100x4", ["--regions", "12"], "--regions applies to wafer targets only"),
        ("h100x4", ["--tile", "8"], "--tile applies to wafer targets only"),
        ("h100x4", ["--solver", "snake"], "--solver snake: on gpu targets choose one of"),
        ("wse2", ["--solver", "dp"], "--solver dp: on wafer targets choose one of"),
    ],
)
def test_flags_of_the_other_target_kind_are_refused(dag, target, extra, needle):
    """A flag that does not apply is exit 2 with one line, not silently ignored."""
    from tests.cli import run_cli

    result = run_cli(str(dag.path), "--target", target, *extra)
    assert result.code == 2 and needle in result.err and result.err.count("\n") == 1
    assert not list(dag.path.parent.glob("*.plan.json"))


def test_plan_model_refuses_options_of_the_other_kind(dag):
    from partitioner.planning import WaferOptions, plan_model

    with pytest.raises(UsageError, match="WaferOptions are for wafer targets.*use GpuOptions"):
        plan_model(dag, toy_target([50_000] * 2), WaferOptions())


def test_options_are_checked_when_built():
    with pytest.raises(UsageError, match="--microbatches 0"):
        GpuOptions(microbatches_in_flight=0)
    with pytest.raises(UsageError, match="--time-limit nan"):
        GpuOptions(time_limit_s=float("nan"))
    with pytest.raises(UsageError, match="--objective speed"):
        GpuOptions(objective="speed")


def test_a_step_overhead_adds_once_to_every_stage(dag):
    """A device's ``step_overhead_s`` (the host's call into the runtime, once per step) adds
    exactly once to each stage's compute, and so pp times to the latency; the split is the
    same, since a constant per stage moves neither bottleneck nor sum."""
    import dataclasses

    options = GpuOptions(tp=1, pp=2, solver="dp", time_limit_s=5)
    plain = toy_target([50_000] * 2)
    slow = dataclasses.replace(
        plain,
        devices=tuple(dataclasses.replace(d, step_overhead_s=1e-3) for d in plain.devices),
    )
    a, b = (plan_pipeline(dag, t, options).plan for t in (plain, slow))
    assert [p.nodes for p in a.partitions] == [p.nodes for p in b.partitions]
    for p, q in zip(a.partitions, b.partitions, strict=True):
        assert q.compute_s == pytest.approx(p.compute_s + 1e-3, abs=1e-12)
    assert b.estimate.latency_s == pytest.approx(a.estimate.latency_s + 2e-3, abs=1e-12)
    assert b.solver.bound_s <= b.solver.objective_s + 1e-15
    assert "step_overhead_s" not in plain.devices[0].to_dict()
    assert slow.devices[0].to_dict()["step_overhead_s"] == 1e-3


def test_pinned_replicas_share_the_devices(dag):
    """--dp 2 on four devices: every candidate is a two-device replica, the plan's partitions
    use two devices, and the system serves twice one replica's throughput at its latency."""
    target = toy_target([50_000] * 4)
    one = plan_pipeline(dag, target, GpuOptions(devices=2, dp=1, time_limit_s=5)).plan
    two = plan_pipeline(dag, target, GpuOptions(dp=2, time_limit_s=5)).plan
    assert two.parallelism.dp == 2 and {c.dp for c in two.solver.candidates} == {2}
    assert {(c.tp, c.pp) for c in two.solver.candidates} == {(1, 2), (2, 1)}
    assert len({d for p in two.partitions for d in p.devices}) == 2
    assert two.estimate.latency_s == pytest.approx(one.estimate.latency_s)
    assert two.estimate.throughput_per_s == pytest.approx(2 * one.estimate.throughput_per_s)
