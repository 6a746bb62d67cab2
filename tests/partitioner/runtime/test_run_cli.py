"""`partition run` refusals (one line, exit 2, before any process starts) and `simulate --trace`."""

from __future__ import annotations

import importlib.util
import json

import pytest

from examples import llama
from tests.cli import run_cli


@pytest.fixture(scope="module")
def model_and_plan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run-cli")
    model = llama.build(folder / "tiny.onnx", "tiny", kind="prefill", weights="random")
    plan = folder / "tiny.plan.json"
    result = run_cli(str(model), "--target", "h100x4", "--tp", "1", "--pp", "2",
                     "--dim", "batch=1", "--dim", "seq=8", "-o", str(plan), "-q")  # fmt: skip
    assert result.code == 0, result.err
    return model, plan


def _one_line_exit_2(result) -> str:
    assert result.code == 2, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err
    return lines[0]


def test_pinned_tp_and_pp_use_their_product_of_devices(model_and_plan):
    plan = json.loads(model_and_plan[1].read_text())
    assert plan["parallelism"]["tp"] == 1 and plan["parallelism"]["pp"] == 2
    assert sorted(d for p in plan["partitions"] for d in p["devices"]) == [0, 1]


def test_pinned_tp_and_pp_that_disagree_with_devices_are_refused(model_and_plan, tmp_path):
    result = run_cli(str(model_and_plan[0]), "--target", "h100x4", "--tp", "1", "--pp", "2",
                     "--devices", "4", "--dim", "batch=1", "--dim", "seq=8",
                     "-o", str(tmp_path / "p.json"))  # fmt: skip
    assert "--tp 1 x --pp 2 uses 2 devices, but 4 are used" in _one_line_exit_2(result)


def test_run_without_torch_says_how_to_install_it(model_and_plan, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    line = _one_line_exit_2(run_cli("run", *map(str, model_and_plan)))
    assert line.endswith("partition run needs torch: pip install 'partition[torch]'")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--microbatches", "0"], "--microbatches 0: give a whole number from 1"),
        (["--requests", "-3"], "--requests -3: give a whole number from 1"),
        (["--timeout", "0"], "--timeout 0: give seconds above 0"),
    ],
)
def test_run_refuses_bad_numbers(model_and_plan, flags, message):
    assert message in _one_line_exit_2(run_cli("run", *map(str, model_and_plan), *flags))


def test_run_refuses_a_trace_over_its_plan(model_and_plan):
    model, plan = model_and_plan
    before = plan.read_bytes()
    line = _one_line_exit_2(run_cli("run", str(model), str(plan), "--trace", str(plan)))
    assert "would overwrite the input" in line
    assert plan.read_bytes() == before


def test_run_refuses_a_plan_for_another_model(model_and_plan, tmp_path):
    other = llama.build(tmp_path / "other.onnx", "tiny", kind="decode", weights="random")
    line = _one_line_exit_2(run_cli("run", str(other), str(model_and_plan[1])))
    assert "the plan is for another model" in line


def test_simulate_writes_the_predicted_trace(model_and_plan, tmp_path):
    trace = tmp_path / "predicted.json"
    result = run_cli(
        "simulate", str(model_and_plan[1]), "--trace", str(trace), "--microbatches", "3"
    )
    assert result.code == 0, result.err
    doc = json.loads(trace.read_text())
    assert doc["otherData"]["microbatches"] == 3 and doc["otherData"]["makespan_s"] > 0
    computes = [e for e in doc["traceEvents"] if e.get("cat") == "compute"]
    assert sorted((e["pid"], e["args"]["microbatch"]) for e in computes) == [
        (s, m) for s in range(2) for m in range(3)
    ]
