"""The GPU planner's tp x pp search: candidates, costs of a sharded node, plans and their time."""

from __future__ import annotations

import pytest

from examples import llama
from partitioner.errors import UsageError
from partitioner.plan import Plan
from partitioner.plan.validate import validate_plan
from partitioner.planning import GpuOptions, plan_pipeline
from partitioner.planning.gpu.candidates import allowed_tp, tp_candidates
from partitioner.planning.gpu.tensor_parallel import node_time, stage_groups
from partitioner.simulate import estimate_differences, simulate_plan
from passes.analysis.costs import node_costs
from passes.analysis.sharding import shard_graph
from passes.load import load
from targets import get_preset, load_target
from targets.cost import CostModel
from tests.cli import run_cli
from tests.partitioner.gpu_targets import toy_target
from tests.passes import test_rank_graph as mlp_case

mlp = mlp_case.mlp  # fc1 (x[2,8] @ W1[8,16]), relu, fc2 (@ W2[16,4]), bias


@pytest.fixture(scope="module")
def tiny_decode(tmp_path_factory):
    path = llama.build(tmp_path_factory.mktemp("decode") / "d.onnx", "tiny", kind="decode")
    return load(path, {"batch": 1, "past": 15})


def test_groups_are_consecutive_devices():
    assert stage_groups(0, 2, 3) == ((0, 1), (2, 3), (4, 5))
    assert stage_groups(0, 1, 2) == ((0,), (1,))


def test_tp_stays_inside_a_node_unless_pinned_otherwise():
    cost_model = CostModel(load_target("h100x16"))  # two nodes of 8
    assert allowed_tp(cost_model, 16) == [1, 2, 4, 8]
    assert allowed_tp(cost_model, 6) == [1, 2, 3, 6]
    assert tp_candidates(cost_model, GpuOptions(), 8) == [(1, 8), (2, 4), (4, 2), (8, 1)]
    assert tp_candidates(cost_model, GpuOptions(tp=4), 8) == [(4, 2)]
    assert tp_candidates(cost_model, GpuOptions(pp=2), 16) == [(8, 2)]
    with pytest.raises(UsageError, match="--tp 16: a tensor-parallel group stays inside one node"):
        tp_candidates(cost_model, GpuOptions(tp=16), 16)
    with pytest.raises(UsageError, match="--pp 3 does not divide the 16 devices"):
        tp_candidates(cost_model, GpuOptions(pp=3), 16)


def test_a_sharded_matmul_costs_a_tp_th_of_its_flops(mlp):
    cost_model = CostModel(toy_target([10**9] * 2))
    costs = node_costs(mlp)
    whole = node_time(mlp, costs, cost_model, None, (0,), 0)
    half = node_time(mlp, costs, cost_model, shard_graph(mlp, 2), (0, 1), 0)
    # fc1: 2·2·8·16 = 512 FLOP whole, 256 on each of two ranks
    assert costs.nodes[0].flops == 512
    assert half.compute_s == pytest.approx(whole.compute_s / 2)
    # it reads all of x (64 B) but half of W1 (256 of 512 B) and writes half of h (64 of 128 B)
    assert half.memory_s == pytest.approx(whole.memory_s * (64 + 256 + 64) / (64 + 512 + 128))
    assert half.launch_s == whole.launch_s


def test_a_tensor_parallel_plan_is_valid_and_accounts_for_its_time(tiny_decode):
    target = toy_target([4_000_000] * 4, gpus_per_node=4)
    plan = plan_pipeline(tiny_decode, target, GpuOptions(tp=2, pp=2, time_limit_s=5)).plan
    assert [p.devices for p in plan.partitions] == [(0, 1), (2, 3)]
    assert plan.parallelism.tp == 2 and plan.parallelism.pp == 2
    assert {s.parts for s in plan.shards} == {2} and plan.collectives
    # two all-reduces per layer (2 layers) and one all-gather of the logits
    kinds = sorted(c.kind for c in plan.collectives)
    assert kinds == ["all_gather", *["all_reduce"] * 5]
    assert validate_plan(plan, tiny_decode, tiny_decode.sha256) == []
    again = Plan.from_json(plan.to_json())
    assert again.shards == plan.shards and again.collectives == plan.collectives
    comm = sum(t.time_s for t in plan.transfers) + sum(c.time_s for c in plan.collectives)
    assert plan.estimate.comm_s == pytest.approx(comm)
    breakdown = plan.estimate.extra["time_breakdown"]
    # the buckets of every stage add up to the plan's latency (the chain of stages)
    assert sum(breakdown["step"].values()) == pytest.approx(plan.estimate.latency_s, rel=1e-9)
    assert breakdown["dominant"].endswith("% of the step")


def test_each_stage_fixed_cost_a_step_is_in_the_breakdown(tiny_decode):
    # h100x4's GPUs pay one launch a step and stage (a CUDA-graph replay): on four stages
    # the breakdown's buckets still add up to the latency, that cost among the launches
    target = get_preset("h100x4")
    plan = plan_pipeline(tiny_decode, target, GpuOptions(tp=1, pp=4, time_limit_s=5)).plan
    breakdown = plan.estimate.extra["time_breakdown"]
    assert sum(breakdown["step"].values()) == pytest.approx(plan.estimate.latency_s, rel=1e-9)
    launches = [s["launch_s"] for s in breakdown["stages"]]
    assert launches == pytest.approx([target.devices[0].step_overhead_s] * 4)


def test_the_search_records_every_candidate(tiny_decode):
    plan = plan_pipeline(tiny_decode, toy_target([4_000_000] * 4, gpus_per_node=4)).plan
    shapes = [(c.tp, c.pp) for c in plan.solver.candidates]
    assert shapes == [(1, 4), (2, 2), (4, 1)]
    chosen = next(
        c
        for c in plan.solver.candidates
        if (c.tp, c.pp) == (plan.parallelism.tp, plan.parallelism.pp)
    )
    assert chosen.objective_s == plan.solver.objective_s
    assert plan.solver.bound_s <= min(c.bound_s for c in plan.solver.candidates)
    assert plan.parallelism.objective == "latency"  # auto: a decode step


def test_degree_flags_on_the_command_line(tiny_decode):
    model = str(tiny_decode.path)
    dims = ("--dim", "batch=1", "--dim", "past=15")
    result = run_cli(model, "--target", "h100x8", *dims, "--tp", "3", "-q")
    assert result.code == 2 and "--tp 3" in result.err and result.err.count("\n") == 1
    result = run_cli(model, "--target", "h100x8", *dims, "--tp", "two", "-q")
    assert result.code == 2 and "--tp 'two': give a whole number or 'auto'" in result.err
    result = run_cli(model, "--target", "wse2", *dims, "--tp", "2", "-q")
    assert result.code == 2 and "--tp applies to GPU targets only" in result.err


def test_replicas_win_throughput_for_a_small_model(mlp):
    """8 copies of a model that fits one GPU serve 8 times the requests of one."""
    plan = plan_pipeline(mlp, load_target("h100x8"), GpuOptions(time_limit_s=5)).plan
    assert plan.parallelism.objective == "throughput"
    assert (plan.parallelism.tp, plan.parallelism.pp, plan.parallelism.dp) == (1, 1, 8)
    one = next(c for c in plan.solver.candidates if (c.tp, c.pp, c.dp) == (1, 1, 8))
    assert plan.solver.objective_s == one.objective_s
    # the plan lists replica 0; throughput is the 8 replicas' together, latency one's
    report = simulate_plan(plan)
    assert report.throughput_per_s == pytest.approx(8 / report.period_s)
    assert plan.estimate.throughput_per_s == pytest.approx(report.throughput_per_s)
    assert estimate_differences(report, plan) == []
    assert validate_plan(plan, mlp, mlp.sha256) == []
    # pinning the pipeline depth leaves no room for replicas
    pinned = plan_pipeline(mlp, load_target("h100x8"), GpuOptions(pp=2, time_limit_s=5)).plan
    assert {c.dp for c in pinned.solver.candidates} == {1}


def test_a_rank_holds_its_slice_of_the_activations(tiny_decode):
    from passes.analysis.liveness import activation_liveness

    target = toy_target([4_000_000] * 4, gpus_per_node=4)
    plan = plan_pipeline(tiny_decode, target, GpuOptions(tp=2, pp=2, time_limit_s=5)).plan
    smaller = []
    for p in plan.partitions:
        runtime = [n for n in p.nodes if not tiny_decode.nodes[n].folded]
        whole = activation_liveness(tiny_decode, runtime).peak_bytes
        # split activations (heads, MLP hidden) count half; gathered logits whole
        assert 0 < p.activation_bytes <= whole
        smaller.append(p.activation_bytes < whole)
    assert any(smaller)
