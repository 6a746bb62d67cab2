"""`partition simulate`: tables, --json, --png and one-line errors."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from partitioner.plan import Bottleneck, Estimate, Transfer
from partitioner.planning import GpuOptions, plan_pipeline
from partitioner.simulate import estimate_fields, simulate_wafer
from partitioner.simulate.gpu import StageLoad
from partitioner.simulate.plot import max_pool
from partitioner.simulate.schedule import gantt_schedule
from passes.load import load
from targets.cost import WaferCostModel
from tests.cli import run_cli
from tests.modelgen import random_dag, save
from tests.partitioner.gpu_targets import toy_target
from tests.partitioner.wafer_plans import hand_plan, part, tiny_target

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def wafer_plan(tmp_path):
    """Regions (0,0,4,4) and (4,0,4,4), 4000 B between them, estimate from the simulator."""
    target = tiny_target()
    parts = [part(0, (0, 0, 4, 4), 2e-6, memory=6144), part(1, (4, 0, 4, 4), 1e-6)]
    transfers = [Transfer("t", 4000, 0, 1, WaferCostModel(target).fabric_transfer_s(4000, 4, 4), 4)]
    f = estimate_fields(simulate_wafer(parts, transfers, target))
    estimate = Estimate(
        f["latency_s"], f["throughput_per_s"], Bottleneck(**f["bottleneck"]), f["extra"]
    )
    path = tmp_path / "wafer.plan.json"
    path.write_text(hand_plan(target, parts, transfers, estimate).to_json())
    return path


@pytest.fixture
def gpu_plan(tmp_path):
    rng = np.random.default_rng(3)
    graph = load(
        save(random_dag(lambda lo, hi: int(rng.integers(lo, hi + 1)), 30), tmp_path / "d.onnx")
    )
    path = tmp_path / "gpu.plan.json"
    path.write_text(
        plan_pipeline(graph, toy_target([50_000] * 3), GpuOptions(solver="dp", pp=3)).plan.to_json()
    )
    return path


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_wafer_table(wafer_plan) -> None:
    result = run_cli("simulate", str(wafer_plan))
    assert result.code == 0, result.err
    assert "tiny: 2 regions on 16x16-core wafers" in result.out
    assert "4×4" in result.out and "384 B (50%)" in result.out  # 6144 B over 16 cores
    assert "link (2,0)->(3,0) on wafer 0" in result.out
    assert "bottleneck: compute (region 0 on wafer 0)" in result.out
    assert "Σ bytes × hops 16,000" in result.out
    assert "matches the plan's estimate" in result.out


def test_wafer_json(wafer_plan) -> None:
    result = run_cli("simulate", str(wafer_plan), "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["matches_plan_estimate"] is True and doc["differences"] == []
    report = doc["report"]
    assert report["kind"] == "wafer" and report["byte_hops"] == 16_000
    assert (
        report["busiest_links"][0]["src"] == [2, 0] and report["busiest_links"][0]["bytes"] == 1000
    )
    assert [r["partition"] for r in report["regions"]] == [0, 1]
    assert report["latency_s"] == pytest.approx(3.254e-6)


def test_wafer_png(wafer_plan, tmp_path) -> None:
    out = tmp_path / "wafer.png"
    result = run_cli("simulate", str(wafer_plan), "--png", str(out))
    assert result.code == 0, result.err
    width, height = png_size(out.read_bytes())
    assert width > 1000 and height > 300  # three panels side by side
    assert not list(tmp_path.glob(".wafer.png.*"))  # no temp file left


def test_gpu_table_json_and_png(gpu_plan, tmp_path) -> None:
    result = run_cli("simulate", str(gpu_plan))
    assert result.code == 0, result.err
    assert "toy: 3 stages, blocking transfers" in result.out
    assert "busiest links" in result.out and "matches the plan's estimate" in result.out
    doc = json.loads(run_cli("simulate", str(gpu_plan), "--json").out)
    plan = json.loads(gpu_plan.read_text())
    assert doc["report"]["latency_s"] == plan["estimate"]["latency_s"]
    assert doc["report"]["bottleneck"] == plan["estimate"]["bottleneck"]
    out = tmp_path / "gpu.png"
    assert run_cli("simulate", str(gpu_plan), "--png", str(out), "--json").code == 0
    width, height = png_size(out.read_bytes())
    assert width > 800 and height > 100


def test_bad_plans_are_one_line_errors(tmp_path, wafer_plan) -> None:
    missing = run_cli("simulate", str(tmp_path / "nope.json"))
    assert missing.code == 2 and missing.out == ""
    assert missing.err.count("\n") == 1 and "does not exist" in missing.err
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    result = run_cli("simulate", str(garbage))
    assert result.code == 2 and result.err.count("\n") == 1 and "is not JSON" in result.err
    doc = json.loads(wafer_plan.read_text())
    del doc["partitions"][1]["region"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc))
    result = run_cli("simulate", str(broken))
    # a plan that breaks the contract is flagged like `validate` flags it: exit 1, one line
    assert (
        result.code == 1
        and result.err.count("\n") == 1
        and "partition 1 on a wafer target has no region" in result.err
    )
    result = run_cli("simulate", str(wafer_plan), "--png", str(tmp_path / "no" / "such" / "x.png"))
    assert result.code == 2 and "does not exist" in result.err


def test_max_pool_keeps_the_hottest_core() -> None:
    grid = np.zeros((5, 9), dtype=np.int64)
    grid[4, 8] = 7  # the last core survives padding: 9 columns -> 3 blocks of 3
    pooled, factor = max_pool(grid, max_pixels=3)
    assert factor == 3 and pooled.shape == (2, 3) and pooled[1, 2] == 7 and pooled.sum() == 7
    assert max_pool(grid, max_pixels=9)[1] == 1


def test_gantt_items_enter_one_period_apart_and_stages_chain() -> None:
    stages = [
        StageLoad(0, 0, 1.0, 0.0, 0.0, 0.5, 0.0, 1.5),
        StageLoad(1, 1, 2.0, 0.0, 0.5, 0.0, 0.0, 2.5),
    ]
    rows = gantt_schedule(stages, 2.5, 2)
    # stage 0: compute [0, 1), send [1, 1.5); item 1 at 2.5. stage 1 starts after 0 + 1 = 1:
    # recv [1, 1.5) alongside stage 0's send, compute [1.5, 3.5); item 1 at 3.5
    assert rows == [
        (0, 0, "compute", 0.0, 1.0),
        (0, 0, "send", 1.0, 0.5),
        (0, 1, "compute", 2.5, 1.0),
        (0, 1, "send", 3.5, 0.5),
        (1, 0, "recv", 1.0, 0.5),
        (1, 0, "compute", 1.5, 2.0),
        (1, 1, "recv", 3.5, 0.5),
        (1, 1, "compute", 4.0, 2.0),
    ]
