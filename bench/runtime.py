"""`partition run` measured against the plan's estimate and the simulator, on this CPU.

1. Measure this machine the way a rank runs (one onnxruntime thread per rank):
   a GEMM at GPT-2 small's MLP shape, a streaming Add, a chain of tiny ops
   (per-op overhead) and a gloo ping-pong between two processes (latency and
   bandwidth). These four numbers, and nothing measured later, make a target
   file for a 2-"device" CPU (`eta` 1: the rates are achieved ones).
2. Plan GPT-2 small (batch 1, seq 64) on it with --tp 1 --pp 2.
3. `partition run` it on 2 gloo ranks: per-stage compute/recv/send against the
   plan's estimate (16 micro-batches one at a time), then throughput with 1, 2,
   4 and 8 micro-batches in flight against the simulator's schedule.

    python bench/runtime.py [--requests 16]

Nothing here is fitted to the figures it compares with: the target's rates
come from step 1 only. The raw numbers are what the calibration issue starts from.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, console, machine, median_s, model, print_table  # noqa: E402

SEQ = 64


def _session(graph: onnx.GraphProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])


def gemm_flops_per_s(m: int = SEQ, k: int = 768, n: int = 3072) -> float:
    """Achieved float32 MatMul FLOP/s at GPT-2 small's MLP shape, one thread."""
    f = TensorProto.FLOAT
    g = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info("a", f, [m, k]), helper.make_tensor_value_info("b", f, [k, n])],
        [helper.make_tensor_value_info("c", f, [m, n])],
    )  # fmt: skip
    s = _session(g)
    feeds = {
        "a": np.random.rand(m, k).astype(np.float32),
        "b": np.random.rand(k, n).astype(np.float32),
    }
    return 2 * m * k * n / median_s(lambda: s.run(None, feeds), 30)


def stream_bytes_per_s(elements: int = 1 << 24) -> float:
    """Achieved bytes/s of an elementwise Add over 64 MB arrays (two reads, one write)."""
    f = TensorProto.FLOAT
    g = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])], "stream",
        [helper.make_tensor_value_info(x, f, [elements]) for x in ("a", "b")],
        [helper.make_tensor_value_info("c", f, [elements])],
    )  # fmt: skip
    s = _session(g)
    feeds = {x: np.ones(elements, np.float32) for x in ("a", "b")}
    return 3 * 4 * elements / median_s(lambda: s.run(None, feeds), 10)


def per_op_s(ops: int = 200) -> float:
    """Seconds per op of a chain of tiny Adds (onnxruntime's own per-op overhead)."""
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Add", [f"x{i}", "one"], [f"x{i + 1}"]) for i in range(ops)]
    g = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x0", f, [1]), helper.make_tensor_value_info("one", f, [1])],
        [helper.make_tensor_value_info(f"x{ops}", f, [1])],
    )  # fmt: skip
    s = _session(g)
    feeds = {"x0": np.zeros(1, np.float32), "one": np.ones(1, np.float32)}
    return median_s(lambda: s.run(None, feeds), 50) / ops


def _pingpong_rank(rank: int, port: int, out: str) -> None:
    """One side of the ping-pong (run as its own process)."""
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    results = {}
    for nbytes, repeats in ((4, 200), (4 << 20, 20)):
        buffer = torch.zeros(nbytes, dtype=torch.uint8)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            if rank == 0:
                dist.send(buffer, 1)
                dist.recv(buffer, 1)
            else:
                dist.recv(buffer, 0)
                dist.send(buffer, 0)
            times.append((time.perf_counter() - start) / 2)  # one way
        results[nbytes] = statistics.median(times[1:])
    dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(json.dumps(results))


def link_figures() -> tuple[float, float]:
    """(latency_s, bandwidth_bytes_per_s) of gloo between two local processes."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "pp.json")
        procs = [
            subprocess.Popen([sys.executable, __file__, "--pingpong", str(r), str(port), out])
            for r in (0, 1)
        ]
        for p in procs:
            p.wait(timeout=120)
        results = {int(k): v for k, v in json.loads(Path(out).read_text()).items()}
    latency = results[4]
    return latency, (4 << 20) / max(results[4 << 20] - latency, 1e-9)


def cpu_target(flops: float, stream: float, per_op: float, link: tuple[float, float]) -> dict:
    """A 2-device target of this CPU, one core a device, from the measured rates only."""
    latency, bandwidth = link
    device = {
        "name": "CPU core (1 onnxruntime thread)",
        "hbm_bytes": 16_000_000_000,
        "hbm_bandwidth_bytes_per_s": stream,
        "peak_flops_per_s": {"float32": flops},
        "eta_compute": 1.0,
        "eta_memory": 1.0,
        "launch_overhead_s": per_op,
        "fallback_peak_dtype": "float32",
    }
    gloo = {"name": "gloo over loopback TCP", "bandwidth_bytes_per_s": bandwidth,
            "efficiency": 1.0, "latency_s": latency}  # fmt: skip
    return {
        "kind": "gpu",
        "name": "this-cpu-x2",
        "devices": [device, device],
        "gpus_per_node": 2,
        "intra_node_link": gloo,
        "inter_node_link": gloo,
        "host_link": {**gloo, "name": "host memory"},
        "description": "measured by bench/runtime.py on this machine (GEMM, stream, op chain, ping-pong)",
    }


def _partition(*argv: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "partitioner", *argv], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"partition {' '.join(argv)} failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}"


def stage_table(report: dict) -> None:
    rows = [
        (s["stage"], _us(s["compute_s"]), _us(s["estimated"]["compute_s"]),
         f"{s['ratio']['compute_s']:.2f}", _us(s["recv_s"]), _us(s["estimated"]["recv_s"]),
         _us(s["send_s"]), _us(s["estimated"]["send_s"]), _us(s["idle_s"]))
        for s in report["stages"]
    ]  # fmt: skip
    print_table(
        "GPT-2 small, 2 gloo ranks, one micro-batch at a time: µs per micro-batch",
        ["stage", "compute", "est.", "ratio", "recv", "est.", "send (blocked)", "est.", "idle"],
        rows,
    )


def throughput_table(model_path: Path, plan: Path, requests: int) -> None:
    rows = []
    for m in (1, 2, 4, 8):
        report = _partition("run", str(model_path), str(plan), "--microbatches", str(m),
                            "--requests", str(max(requests, m)), "--json")  # fmt: skip
        t = report["throughput"]
        rows.append((m, t["rounds"], f"{t['measured_per_s']:.1f}", f"{t['predicted_per_s']:.1f}",
                     f"{t['measured_per_s'] / t['predicted_per_s']:.2f}",
                     "ok" if report["ok"] else "MISMATCH"))  # fmt: skip
    print_table(
        "pipeline throughput (micro-batches/s) against the simulator's schedule of the same rounds",
        ["in flight", "rounds", "measured", "predicted", "ratio", "outputs"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--pingpong", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pingpong:
        _pingpong_rank(int(args.pingpong[0]), int(args.pingpong[1]), args.pingpong[2])
        return
    console.print(machine())
    flops, stream, op, link = gemm_flops_per_s(), stream_bytes_per_s(), per_op_s(), link_figures()
    print_table(
        "this CPU, one onnxruntime thread (the target's only inputs)",
        ["GEMM 64x768x3072 fp32", "stream Add", "per op", "gloo latency", "gloo bandwidth"],
        [(f"{flops / 1e9:.1f} GFLOP/s", f"{stream / 1e9:.2f} GB/s", f"{op * 1e6:.2f} µs",
          f"{link[0] * 1e6:.0f} µs", f"{link[1] / 1e9:.2f} GB/s")],
    )  # fmt: skip
    gpt2 = model("gpt2-small")
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "cpu.json"
        target.write_text(json.dumps(cpu_target(flops, stream, op, link)))
        plan = Path(folder) / "gpt2.cpu.plan.json"
        _partition(str(gpt2), "--target", str(target), "--tp", "1", "--pp", "2",
                   "--dim", "batch=1", "--dim", f"seq={SEQ}", "-o", str(plan), "-q")  # fmt: skip
        report = _partition("run", str(gpt2), str(plan), "--microbatches", "1",
                            "--requests", str(args.requests), "--json")  # fmt: skip
        stage_table(report)
        console.print(json.dumps({"raw_stages": report["stages"]}))
        throughput_table(gpt2, plan, args.requests)


if __name__ == "__main__":
    main()
