"""`partition run`: real rank processes under gloo, their outputs, trace and failures.

Each test starts `python -m partitioner run ...` as a process of its own, so a
killed, stopped or interrupted rank is handled as a user would see it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples import gpt2, llama
from partitioner.planning import GpuOptions, plan_pipeline
from passes.load import load
from targets.presets import presets
from tests.partitioner.gpu_targets import toy_target

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[3]


def _plan(model: Path, dims: dict[str, int], pp: int, tp: int = 1) -> Path:
    graph = load(model, dims)
    target = toy_target([10**9] * (pp * tp))
    options = GpuOptions(pp=pp, tp=tp, time_limit_s=5, objective="latency")
    plan = plan_pipeline(graph, target, options).plan
    path = model.with_name(f"{model.stem}.pp{pp}tp{tp}.plan.json")
    path.write_text(plan.to_json())
    return path


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run-llama")
    return llama.build(folder / "tiny.onnx", "tiny", kind="prefill", weights="random")


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run-gpt2")
    return gpt2.build(folder / "gpt2.onnx", "tiny", exporter="dynamo", opset=18)


def _run(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "partitioner", "run", *argv],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def _children(parent: int) -> dict[int, int]:
    """rank -> pid of the rank processes ``parent`` started (read from /proc)."""
    ranks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
            continue
        for item in env:
            if item.startswith(b"RANK="):
                ranks[int(item[5:])] = int(entry.name)
    return ranks


def _ranks_started(parent: int, world: int, deadline_s: float = 90) -> dict[int, int]:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        ranks = _children(parent)
        if len(ranks) == world:
            return ranks
        time.sleep(0.1)
    raise AssertionError(f"the {world} ranks never all started")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _no_strays(pids: dict[int, int]) -> None:
    end = time.monotonic() + 5
    while any(_alive(p) for p in pids.values()) and time.monotonic() < end:
        time.sleep(0.1)
    assert [r for r, p in pids.items() if _alive(p)] == []


def _check_report(result: subprocess.CompletedProcess, ranks: int, stages: int) -> dict:
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["ranks"] == ranks
    assert [s["stage"] for s in report["stages"]] == list(range(stages))
    assert report["outputs"] and all(o["ok"] for o in report["outputs"])
    for stage in report["stages"]:
        assert stage["compute_s"] > 0 and stage["estimated"]["compute_s"] > 0
    return report


def test_two_ranks_on_the_tiny_llama_match_onnxruntime_and_write_a_trace(tiny_llama, tmp_path):
    plan = _plan(tiny_llama, {"batch": 2, "seq": 8}, pp=2)
    trace = tmp_path / "run.trace.json"
    result = _run(str(tiny_llama), str(plan), "--microbatches", "5", "--requests", "10",
                  "--trace", str(trace), "--json")  # fmt: skip
    report = _check_report(result, ranks=2, stages=2)
    assert report["throughput"]["microbatches"] == 10 and report["throughput"]["rounds"] == 2
    # 8 input sets are checked against onnxruntime; micro-batches 8 and 9 repeat sets 0 and 1
    assert report["repeated_inputs"] == {"checked": 2, "changed": []}
    assert report["throughput"]["predicted_per_s"] > 0
    events = json.loads(trace.read_text())["traceEvents"]
    tracks = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert tracks == {"rank 0 (stage 0)", "rank 1 (stage 1)"}
    computes = [e for e in events if e.get("cat") == "compute"]
    assert sorted({e["args"]["microbatch"] for e in computes}) == list(range(10))
    assert all(e["dur"] > 0 and e["ts"] >= 0 for e in computes)


@pytest.mark.parametrize(("ranks", "engine"), [(2, "ort"), (3, "numpy")])
def test_gpt2_tiny_on_two_and_three_ranks(tiny_gpt2, ranks, engine):
    plan = _plan(tiny_gpt2, {"batch": 1, "seq": 8}, pp=ranks)
    result = _run(str(tiny_gpt2), str(plan), "--engine", engine, "--microbatches", "3", "--json")
    _check_report(result, ranks=ranks, stages=ranks)


def test_a_tensor_parallel_stage_runs_its_collectives_across_ranks(tiny_llama):
    plan = _plan(tiny_llama, {"batch": 1, "seq": 8}, pp=1, tp=2)
    result = _run(str(tiny_llama), str(plan), "--json")
    report = _check_report(result, ranks=2, stages=1)
    assert report["stages"][0]["ranks"] == [0, 1]
    assert report["stages"][0]["collective_s"] > 0


def test_fp8_weights_and_cache_run_tensor_parallel_under_onnxruntime(tmp_path):
    """The ranks load float8 weights and a float8 KV cache, which onnxruntime's numpy
    binding and torch's collectives do not take as they are."""
    model = llama.build(tmp_path / "t8.onnx", "tiny", kind="decode", opset=21, quant="fp8-kv")
    graph = load(model, {"batch": 1, "past": 7})
    options = GpuOptions(pp=1, tp=2, time_limit_s=5, objective="latency")
    plan = plan_pipeline(graph, presets()["h100x8"], options).plan
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(plan.to_json())
    _check_report(_run(str(model), str(plan_path), "--json"), ranks=2, stages=1)


def test_torchrun_starts_the_same_worker(tiny_llama):
    plan = _plan(tiny_llama, {"batch": 1, "seq": 8}, pp=2)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "-m", "partitioner.runtime.worker", str(tiny_llama), str(plan), "--json"],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["ok"]


def _start_long_run(model: Path, plan: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "partitioner", "run", str(model), str(plan),
         "--microbatches", "2", "--requests", "1000000", "--warmup", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip


def _finish(process: subprocess.Popen, within_s: float) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=within_s)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("the run did not end") from None
    return process.returncode, err


@pytest.fixture
def three_stages(tiny_llama) -> tuple[Path, Path]:
    return tiny_llama, _plan(tiny_llama, {"batch": 1, "seq": 8}, pp=3)


def test_a_killed_rank_stops_the_run_naming_its_stage(three_stages):
    process = _start_long_run(*three_stages, "--timeout", "60")
    ranks = _ranks_started(process.pid, 3)
    time.sleep(1)
    os.kill(ranks[1], signal.SIGKILL)
    code, err = _finish(process, within_s=30)
    assert code == 3
    assert err.strip().splitlines()[-1] == (
        "partition: error: rank 1 (stage 1) was killed by SIGKILL; stopped the other 2 ranks"
    )
    assert "Traceback" not in err
    _no_strays(ranks)


def test_a_hung_rank_times_out_the_others(three_stages):
    process = _start_long_run(*three_stages, "--timeout", "3")
    ranks = _ranks_started(process.pid, 3)
    hung = ranks[1]
    time.sleep(1)
    os.kill(hung, signal.SIGSTOP)
    try:
        code, err = _finish(process, within_s=40)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the launcher killed it: expected
            os.kill(hung, signal.SIGCONT)
    assert code == 3
    last = err.strip().splitlines()[-1]
    assert last.startswith("partition: error: rank ") and "stopped the other 2 ranks" in last
    _no_strays(ranks)


def test_ctrl_c_stops_every_rank(three_stages):
    process = _start_long_run(*three_stages)
    ranks = _ranks_started(process.pid, 3)
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    code, err = _finish(process, within_s=30)
    assert code == 130, err
    assert "Traceback" not in err
    _no_strays(ranks)


def test_a_two_wafer_plan_runs_each_wafer_as_a_rank(tiny_llama, tmp_path):
    plan = tmp_path / "tiny.wse3x2.plan.json"
    made = subprocess.run(
        [sys.executable, "-m", "partitioner", str(tiny_llama), "--target", "wse3x2",
         "--devices", "2", "--dim", "batch=1", "--dim", "seq=8", "-o", str(plan), "-q"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    report = _check_report(_run(str(tiny_llama), str(plan), "--json"), ranks=2, stages=2)
    # a wafer's regions run on its rank, handing values to each other locally
    assert any(len(s["partitions"]) > 1 for s in report["stages"])
