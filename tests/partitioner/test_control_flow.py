"""Control flow: sub-graphs read outer-scope values; plans must move them like any input."""

from __future__ import annotations

import numpy as np
from onnx import helper

from partitioner.executor.verify import make_inputs, verify_plan
from partitioner.plan.validate import validate_plan
from partitioner.planning import GpuOptions, plan_pipeline
from passes.ir import outer_references
from passes.load import load
from tests.modelgen import init, make_model, save, vi
from tests.partitioner.gpu_targets import toy_target


def _if_model(tmp_path):
    # h = x @ w1 ; c = sum(h) > 0 ; y = If(c) { relu(h) } else { neg(h) } ; z = y @ w2
    then_g = helper.make_graph(
        [helper.make_node("Relu", ["h"], ["t"])], "then", [], [vi("t", [2, 4])]
    )
    else_g = helper.make_graph(
        [helper.make_node("Neg", ["h"], ["e"])], "else", [], [vi("e", [2, 4])]
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
        helper.make_node("ReduceSum", ["h"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["c"]),
        helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="branch"),
        helper.make_node("MatMul", ["y", "w2"], ["z"], name="mm2"),
    ]
    inits = [
        init("zero", np.array(0, np.float32)),
        init("w1", np.arange(16, dtype=np.float32).reshape(4, 4) / 10),
        init("w2", np.eye(4, dtype=np.float32)),
    ]
    return load(
        save(make_model(nodes, [vi("x", [2, 4])], [vi("z", [2, 4])], inits), tmp_path / "if.onnx")
    )


def test_outer_references_of_nested_subgraphs():
    inner = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["o"])], "inner", [], [vi("o", [1])]
    )
    outer = helper.make_graph(
        [
            helper.make_node("Identity", ["p"], ["a"]),
            helper.make_node("If", ["c"], ["r"], then_branch=inner, else_branch=inner),
        ],
        "outer",
        [vi("p", [1])],
        [vi("r", [1])],
    )
    # 'a' is defined inside outer, 'p' is its input; 'b' and 'c' come from further out
    assert outer_references(outer) == ("c", "b")


def test_if_reads_its_outer_values_as_inputs(tmp_path):
    g = _if_model(tmp_path)
    branch = next(n for n in g.nodes if n.name == "branch")
    assert branch.present_inputs == ("c", "h")
    assert branch.index in g.tensors["h"].consumers


def test_control_flow_plans_validate_and_verify(tmp_path):
    g = _if_model(tmp_path)
    for solver in ("cpsat", "uniform"):
        plan = plan_pipeline(
            g, toy_target([100_000] * 3), GpuOptions(solver=solver, time_limit_s=2, pp=3)
        ).plan
        assert validate_plan(plan, g, g.sha256) == []
        report = verify_plan(g, plan, make_inputs(g))
        assert report.ok
    # if 'h' is made in another partition than the If, the plan must carry it there
    branch_part = next(p for p in plan.partitions if 3 in p.nodes)
    if 0 not in branch_part.nodes:
        assert any(t.tensor == "h" and t.dst == branch_part.id for t in plan.transfers)


def test_uncovered_outer_value_is_a_missing_transfer(tmp_path):
    import dataclasses

    g = _if_model(tmp_path)
    plan = plan_pipeline(g, toy_target([100_000] * 2), GpuOptions(solver="uniform", pp=2)).plan
    # uniform puts mm1 and ReduceSum on stage 0, Greater, the If and mm2 on stage 1
    assert [p.nodes for p in plan.partitions] == [(0, 1), (2, 3, 4)]
    stripped = dataclasses.replace(
        plan, transfers=tuple(t for t in plan.transfers if t.tensor != "h")
    )
    assert stripped.transfers != plan.transfers
    assert any(v.rule == "transfers" and "'h'" in v.message for v in validate_plan(stripped, g))


def _function_model(tmp_path):
    # MyAct(a) = a * sigmoid(a), a model-local function called twice, then a MatMul
    body = [helper.make_node("Sigmoid", ["a"], ["s"]), helper.make_node("Mul", ["a", "s"], ["b"])]
    fn = helper.make_function("custom", "MyAct", ["a"], ["b"], body, [helper.make_opsetid("", 18)])
    nodes = [
        helper.make_node("MyAct", ["x"], ["y"], domain="custom", name="act1"),
        helper.make_node("MyAct", ["y"], ["y2"], domain="custom", name="act2"),
        helper.make_node("MatMul", ["y2", "w"], ["z"], name="mm"),
    ]
    graph = helper.make_graph(
        nodes, "g", [vi("x", [2, 4])], [vi("z", [2, 4])], [init("w", np.eye(4, dtype=np.float32))]
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("custom", 1)],
        functions=[fn],
    )
    return load(save(model, tmp_path / "fn.onnx"))


def test_local_function_calls_are_costed_from_their_body(tmp_path):
    from passes.analysis import node_costs

    costs = node_costs(_function_model(tmp_path))
    # each call: Sigmoid 8 + Mul 8 = 16 FLOPs on [2,4]; the MatMul 2*2*4*4 = 64
    assert [c.flops for c in costs.nodes] == [16, 16, 64]
    assert costs.num_unknown == 0


def test_local_function_calls_run_in_plans(tmp_path):
    g = _function_model(tmp_path)
    plan = plan_pipeline(g, toy_target([100_000] * 3), GpuOptions(solver="uniform", pp=3)).plan
    assert validate_plan(plan, g, g.sha256) == []
    assert verify_plan(g, plan, make_inputs(g)).ok


def test_loop_with_outer_weights_and_a_passed_through_input(tmp_path):
    # out = Loop(3){ acc @ w } from relu(x); z = out + x; x is also returned unchanged
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["acc", "w"], ["acc2"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [vi("i", [], 7), vi("cond_in", [], 9), vi("acc", [2, 4])],
        [vi("cond_out", [], 9), vi("acc2", [2, 4])],
    )
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Loop", ["trip", "cond", "r"], ["out"], body=body),
        helper.make_node("Add", ["out", "x"], ["z"]),
    ]
    inits = [
        init("trip", np.array(3, np.int64)),
        init("cond", np.array(True)),
        init("w", np.eye(4, dtype=np.float32) / 2),
    ]
    model = make_model(nodes, [vi("x", [2, 4])], [vi("z", [2, 4]), vi("x", [2, 4])], inits)
    g = load(save(model, tmp_path / "loop.onnx"))
    assert "w" in g.nodes[1].present_inputs  # read inside the body
    plan = plan_pipeline(g, toy_target([100_000] * 2), GpuOptions(solver="uniform", pp=2)).plan
    assert validate_plan(plan, g, g.sha256) == []
    assert verify_plan(g, plan, make_inputs(g)).ok


def test_a_body_output_that_names_an_outer_value_is_an_outer_reference():
    # an If branch may return an enclosing-scope tensor directly, with no node reading it
    passthrough = helper.make_graph([], "then", [], [vi("h", [2, 4])])
    assert outer_references(passthrough) == ("h",)
    body = helper.make_graph(
        [helper.make_node("Neg", ["h"], ["e"])], "else", [], [vi("e", [2, 4]), vi("k", [1])]
    )
    assert outer_references(body) == ("h", "k")
