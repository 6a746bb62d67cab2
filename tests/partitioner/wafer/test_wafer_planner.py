"""Wafer planning end to end on small grids: valid, verified, deterministic, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

from examples import llama
from partitioner.executor.verify import make_inputs, verify_plan
from partitioner.plan.validate import validate_plan
from partitioner.planning import InfeasibleError, UsageError, WaferOptions
from partitioner.planning.wafer.planner import plan_wafer
from partitioner.simulate import estimate_differences, simulate_plan
from passes.load import load
from targets import Link, WaferTarget
from tests.cli import run_cli
from tests.modelgen import init, make_model, save, vi
from tests.targets.builders import tiny_wafer


def grid(size: int = 64, sram: int = 1024, wafers: int = 1) -> WaferTarget:
    """A size x size-core wafer, ``sram`` bytes per core (256 reserved), 4 fp16 lanes, 1 GHz."""
    return WaferTarget(
        name=f"grid{size}",
        wafer=tiny_wafer(
            width_cores=size,
            height_cores=size,
            sram_bytes_per_core=sram,
            fallback_lanes_dtype="float16",
        ),
        num_wafers=wafers,
        inter_wafer_link=Link("net", 10e9, 0.5, 1e-6),
        host_link=Link("host", 1e9, 1.0, 0.0),
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = llama.build(
        tmp_path_factory.mktemp("w") / "tiny.onnx", "tiny", kind="prefill", weights="random"
    )
    return load(path, {"batch": 1, "seq": 4})


def test_one_wafer_plan_validates_and_verifies(tiny):
    outcome = plan_wafer(tiny, grid(), WaferOptions(regions_per_wafer=12, time_limit_s=3))
    plan = outcome.plan
    # coarsening aims at 12 blocks (segments cut by weight come out near it); one region each
    assert plan.target.kind == "wafer" and 8 <= len(plan.partitions) <= 16
    assert len(plan.partitions) == plan.estimate.extra["coarsening"]["blocks"]
    assert all(p.region is not None and p.region.wafer == 0 for p in plan.partitions)
    assert validate_plan(plan, tiny, tiny.sha256) == []
    assert verify_plan(tiny, plan, make_inputs(tiny)).ok
    # the simulator reproduces the plan's estimate exactly
    assert estimate_differences(simulate_plan(plan), plan) == []
    floorplan = plan.estimate.extra["floorplan"][0]
    assert floorplan["byte_hops"] <= floorplan["snake_byte_hops"]
    assert floorplan["byte_hops_bound"] <= floorplan["byte_hops"]


def test_model_split_across_wafers(tiny):
    # 300 usable bytes per core on 32x32 cores = 307 kB a wafer: the tiny Llama needs two.
    target = grid(size=32, sram=556, wafers=3)
    outcome = plan_wafer(
        tiny, target, WaferOptions(devices="auto", regions_per_wafer=6, time_limit_s=3)
    )
    plan = outcome.plan
    wafers = {p.devices for p in plan.partitions}
    assert len(wafers) == plan.estimate.extra["devices_used"] == plan.parallelism.pp >= 2
    # device order follows execution order, each wafer is a stage, and tensors
    # cross each wafer boundary
    devices = [p.devices for p in plan.partitions]
    assert devices == sorted(devices)
    assert all(p.devices == (p.stage,) for p in plan.partitions)
    assert any(t.src >= 0 and t.dst >= 0 and t.hops is None for t in plan.transfers)
    assert validate_plan(plan, tiny, tiny.sha256) == []
    assert verify_plan(tiny, plan, make_inputs(tiny)).ok


def test_same_input_gives_identical_bytes(tiny):
    options = WaferOptions(regions_per_wafer=10, time_limit_s=2, command="x")
    a = plan_wafer(tiny, grid(), options).plan.to_json()
    assert a == plan_wafer(tiny, grid(), options).plan.to_json()


@pytest.mark.parametrize("solver", ["snake", "blind"])
def test_baseline_solvers_make_valid_plans(tiny, solver):
    plan = plan_wafer(tiny, grid(), WaferOptions(solver=solver, regions_per_wafer=10)).plan
    assert plan.solver.name == solver and plan.solver.status == "HEURISTIC"
    assert validate_plan(plan, tiny, tiny.sha256) == []


def test_snake_beats_blind_on_fabric_cost(tiny):
    snake = plan_wafer(tiny, grid(), WaferOptions(solver="snake", regions_per_wafer=12)).plan
    blind = plan_wafer(tiny, grid(), WaferOptions(solver="blind", regions_per_wafer=12)).plan
    assert snake.estimate.extra["byte_hops"] < blind.estimate.extra["byte_hops"]


def _one_matmul(tmp_path, n: int):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="huge")]
    model = make_model(
        nodes, [vi("x", [1, n])], [vi("y", [1, n])], [init("w", np.zeros((n, n), np.float32))]
    )
    return load(save(model, tmp_path / "one.onnx"))


def test_node_bigger_than_a_whole_wafer(tmp_path):
    # 128x128 fp32 weight = 65.5 kB; a 16x16 wafer holds 256 x 768 = 196.6 kB... use 8x8 cores: 49 kB
    graph = _one_matmul(tmp_path, 128)
    with pytest.raises(InfeasibleError, match="node 0 'huge' .* 65.5 kB .* one wafer holds"):
        plan_wafer(graph, grid(size=8), WaferOptions())


def test_model_too_big_names_the_minimum_wafer_count(tiny):
    with pytest.raises(InfeasibleError, match=r"needs at least \d+ wafers"):
        plan_wafer(tiny, grid(size=16, wafers=1), WaferOptions())


def test_tile_larger_than_the_grid(tiny):
    with pytest.raises(UsageError, match="too small for tiles of 100x100 cores"):
        plan_wafer(tiny, grid(), WaferOptions(tile_cores=100))


def test_fewer_tiles_than_regions(tiny):
    with pytest.raises(UsageError, match=r"has 4 tiles, fewer than the \d+ regions"):
        plan_wafer(tiny, grid(), WaferOptions(tile_cores=32, regions_per_wafer=12))


def test_cli_wafer_plan_summary_png_and_malformed_grid(tiny, tmp_path):
    spec = grid().to_dict()
    good = tmp_path / "grid.json"
    good.write_text(json.dumps(spec))
    png = tmp_path / "floor.png"
    out = tmp_path / "plan.json"
    result = run_cli(
        str(tiny.path),
        "--target",
        str(good),
        "--dim",
        "batch=1",
        "--dim",
        "seq=4",
        "--regions",
        "8",
        "--time-limit",
        "2",
        "-o",
        str(out),
        "--png",
        str(png),
    )
    assert result.code == 0, result.err
    assert "regions on 1 wafer" in result.out and "Slowest" in result.out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spec["wafer"]["width_cores"] = -3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(spec))
    result = run_cli(
        str(tiny.path),
        "--target",
        str(bad),
        "--dim",
        "batch=1",
        "--dim",
        "seq=4",
        "-o",
        str(tmp_path / "x.json"),
    )
    assert result.code == 2 and "width_cores" in result.err and result.err.count("\n") == 1
    assert not (tmp_path / "x.json").exists()
