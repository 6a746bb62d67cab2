"""The load model: exact polynomials of a stage's work in (batch, past), and the plan's
own figures recovered from them."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from examples import llama
from partitioner.plan import Plan
from partitioner.plan.load_model import MONOMIALS, evaluate
from partitioner.planning import GpuOptions, plan_pipeline
from partitioner.planning.load_fit import EXACT, OFFSETS, _solve
from partitioner.simulate.serving_cost import kv_capacity_tokens, own_point_seconds
from passes.load import load
from targets import get_preset


def test_forward_differences_give_the_power_basis_exactly():
    # 3 + 5b + 7p + 2b² + 11bp + p²/2, worked at base (4, 100)
    def f(b: int, p: int) -> Fraction:
        return 3 + 5 * b + 7 * p + 2 * b * b + 11 * b * p + Fraction(p * p, 2)

    base = (4, 100)
    values = [f(base[0] + i, base[1] + j) for i, j in OFFSETS]
    assert _solve(values, base) == (3.0, 5.0, 7.0, 2.0, 11.0, 0.5)
    # from the first four points alone the fit is bilinear: right for a bilinear function
    bilinear = [f(base[0] + i, base[1] + j) - 2 * (base[0] + i) ** 2 - Fraction((base[1] + j) ** 2, 2)
                for i, j in OFFSETS[:4]]  # fmt: skip
    assert _solve(bilinear, base) == (3.0, 5.0, 7.0, 0.0, 11.0, 0.0)
    assert evaluate((3.0, 5.0, 7.0, 2.0, 11.0, 0.5), 9, 4095) == float(f(9, 4095))
    assert MONOMIALS == ((0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2))


@pytest.fixture(scope="module")
def decode(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama") / "tiny-decode.onnx"
    llama.build(path, "tiny", kind="decode")
    return load(path, {"batch": 1, "past": 4095})


@pytest.mark.parametrize("tp", [1, 2])
def test_a_decode_plan_carries_an_exact_load_model(decode, tp):
    target = get_preset("h100x4")
    plan = plan_pipeline(decode, target, GpuOptions(tp=tp, pp=2, time_limit_s=5)).plan
    load_model = plan.load_model
    assert load_model is not None and load_model.dims == {"batch": "batch", "past": "past"}
    assert load_model.max_relative_error <= EXACT  # exact but for float rounding
    assert load_model.checked[0] == (1, 4095)  # the plan's own dims are among the checks
    assert Plan.from_json(plan.to_json()) == plan
    # the tiny config: 2 layers, 2 KV heads of 16 float32 values, K and V: 256 B per token
    # per layer, split over the tensor-parallel ranks; the b·p coefficient is that
    per_token = [load_model.stage(p.id).kv_cache_bytes[4] for p in plan.partitions]
    assert sum(per_token) == 2 * 256 / tp
    # uniform decode at the plan's own dims prices every stage as the plan does
    seconds = own_point_seconds(plan, target)
    for p, s in zip(plan.partitions, seconds, strict=True):
        comm = sum(c.time_s for c in plan.collectives if c.partition == p.id)
        sent = sum(t.time_s for t in plan.transfers if t.src == p.id and t.dst != -1)
        assert s == pytest.approx(p.compute_s + comm + sent, rel=1e-6)


def test_a_device_that_computes_and_streams_in_turn_is_priced_as_the_plan_does(decode):
    """On a CPU-like device (compute and memory in turn) the load model's pricing at the
    plan's own dims is the plan's own, as on GPUs."""
    import dataclasses

    preset = get_preset("h100x4")
    cpu = dataclasses.replace(preset.devices[0], compute_memory_overlap=False)
    target = dataclasses.replace(preset, devices=(cpu,) * 4)
    plan = plan_pipeline(decode, target, GpuOptions(tp=1, pp=2, time_limit_s=5)).plan
    roofline = plan_pipeline(decode, preset, GpuOptions(tp=1, pp=2, time_limit_s=5)).plan
    assert sum(p.compute_s for p in plan.partitions) > sum(
        p.compute_s for p in roofline.partitions
    )  # paying both terms costs more than the larger alone
    for p, s in zip(plan.partitions, own_point_seconds(plan, target), strict=True):
        sent = sum(t.time_s for t in plan.transfers if t.src == p.id and t.dst != -1)
        assert s == pytest.approx(p.compute_s + sent, rel=1e-6)


def test_the_kv_capacity_is_the_room_left_over_the_bytes_per_token(decode):
    plan = plan_pipeline(decode, get_preset("h100x4"), GpuOptions(tp=1, pp=1)).plan
    (p,) = plan.partitions
    room = p.capacity_bytes - (p.memory_bytes - p.kv_cache_bytes)
    assert kv_capacity_tokens(plan) == room // 512


def test_graphs_without_batch_and_past_get_none(tmp_path):
    path = tmp_path / "tiny-prefill.onnx"
    llama.build(path, "tiny", kind="prefill")
    graph = load(path, {"batch": 1, "seq": 16})
    plan = plan_pipeline(graph, get_preset("h100x4"), GpuOptions(tp=1, pp=1)).plan
    assert plan.load_model is None and "load_model" not in json.loads(plan.to_json())


def test_a_wafer_plan_prices_each_region_as_the_plan_does(decode):
    from partitioner.planning import WaferOptions
    from partitioner.planning.wafer.planner import plan_wafer

    target = get_preset("wse3")
    plan = plan_wafer(decode, target, WaferOptions(time_limit_s=2)).plan
    assert plan.load_model is not None and plan.load_model.max_relative_error < 1e-9
    matmuls = sum(t.count * t.matmuls for s in plan.load_model.stages for t in s.terms)
    assert matmuls > 0  # the mesh term has contractions to count
    for p, s in zip(plan.partitions, own_point_seconds(plan, target), strict=True):
        sent = sum(t.time_s for t in plan.transfers if t.src == p.id and t.dst != -1)
        assert s == pytest.approx(p.compute_s + sent, rel=1e-9)


def test_a_mixed_iteration_is_priced_term_by_term_through_the_cost_model(decode):
    """The array form equals pricing each kernel with `op_time_parts` one by one: FLOPs
    read ``b·p`` as keys per row, bytes as cache per sequence."""
    from partitioner.simulate.serving import IterationShape
    from partitioner.simulate.serving_cost import PlanIterationCost
    from targets.cost import GpuCostModel

    target = get_preset("h100x4")
    plan = plan_pipeline(decode, target, GpuOptions(tp=2, pp=2, time_limit_s=5)).plan
    # 3 decode rows at caches 10, 20, 30 and a 5-token chunk at cache 7
    shape = IterationShape(8, 4, 11 + 21 + 31 + 5 * 7 + 15, 11 + 21 + 31 + 12, 31)
    flop_m = (1, 8, 30, 64, shape.row_context_sum - 8, 900)
    byte_m = (1, 8, 30, 64, shape.sequence_context_sum - 4, 900)
    cost, got = GpuCostModel(target), PlanIterationCost(plan, target).stage_seconds(shape)
    for p, seconds in zip(plan.partitions, got, strict=True):
        stage = plan.load_model.stage(p.id)
        want = cost.step_overhead_s(p.devices[0])  # the stage's fixed cost a step
        for t in stage.terms:
            f = sum(c * m for c, m in zip(t.flops, flop_m, strict=True))
            b = sum(c * m for c, m in zip(t.bytes, byte_m, strict=True))
            want += t.count * cost.op_time_parts(f, b, t.dtype, p.devices[0], t.kernels).total_s
        for c in stage.collectives:
            b = sum(x * m for x, m in zip(c.bytes, byte_m, strict=True))
            want += c.count * cost.collective_time_s(c.kind, b, p.devices)
        for t in plan.load_model.transfers:
            if t.src == p.id and t.dst != -1:
                b = sum(x * m for x, m in zip(t.bytes, flop_m, strict=True))
                want += cost.transfer_time_s(b, p.devices[0], plan.partition(t.dst).devices[0])
        assert seconds == pytest.approx(want, rel=1e-9)


def test_validate_refuses_a_load_model_of_another_plan(decode):
    import dataclasses

    from partitioner.plan.validate import validate_plan

    plan = plan_pipeline(decode, get_preset("h100x4"), GpuOptions(tp=1, pp=2)).plan
    assert validate_plan(plan) == []
    load = plan.load_model
    renamed = dataclasses.replace(load.stages[0], partition=99)
    bad = dataclasses.replace(
        plan, load_model=dataclasses.replace(load, stages=(renamed, *load.stages[1:]))
    )
    assert [v.rule for v in validate_plan(bad)] == ["load_model"]
    kv = list(load.stages[0].kv_cache_bytes)
    kv[4] += 8  # 8 more bytes per token of context: 32 KB more at past 4095
    wrong = dataclasses.replace(load.stages[0], kv_cache_bytes=tuple(kv))
    bad = dataclasses.replace(
        plan, load_model=dataclasses.replace(load, stages=(wrong, *load.stages[1:]))
    )
    assert "its KV cache at the plan's dims" in str(validate_plan(bad)[0])


@pytest.mark.parametrize("kind", ["gpu", "wafer"])
def test_a_run_of_decode_iterations_priced_at_once_is_each_iteration_priced(decode, kind):
    """`decode_run_seconds` prices iterations whose every cache grows by one, from the
    first three iterations' monomials: it equals pricing each iteration on its own."""
    from partitioner.planning import WaferOptions
    from partitioner.planning.wafer.planner import plan_wafer
    from partitioner.simulate.serving import IterationShape
    from partitioner.simulate.serving_cost import iteration_cost

    if kind == "gpu":
        target = get_preset("h100x4")
        plan = plan_pipeline(decode, target, GpuOptions(tp=2, pp=2, time_limit_s=5)).plan
    else:
        target = get_preset("wse3")
        plan = plan_wafer(decode, target, WaferOptions(time_limit_s=2)).plan
    cost = iteration_cost(plan, target)
    # 3 sequences at caches 10, 20 and 30 before the first iteration
    first = IterationShape(3, 3, 11 + 21 + 31, 11 + 21 + 31, 31)
    run = cost.decode_run_seconds(first, 40)
    assert run.shape == (cost.stages, 40)
    for i in (0, 1, 2, 3, 39):
        shape = IterationShape(3, 3, first.row_context_sum + 3 * i,
                               first.sequence_context_sum + 3 * i, 31 + i)  # fmt: skip
        assert run[:, i].tolist() == pytest.approx(cost.stage_seconds(shape), rel=1e-12)
    assert run[0, 39] > run[0, 0]  # the caches grew
    with pytest.raises(ValueError, match="not a run of decode"):
        cost.decode_run_seconds(first._replace(rows=4), 2)  # a chunk is not one row each
