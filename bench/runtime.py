"""`partition run` measured against the plan's estimate and the simulator, on this CPU.

1. `partition calibrate --ranks 2` measures this machine the way a rank runs
   (one onnxruntime thread per rank: GEMM per dtype, a streaming Add, a chain
   of tiny ops, gloo send/recv and all-reduce) and writes the target file;
   nothing measured later goes into it.
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
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import calibrate, console, machine, model, partition_json, print_table  # noqa: E402

SEQ = 64


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
        report = partition_json("run", str(model_path), str(plan), "--microbatches", str(m),
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
    args = parser.parse_args()
    console.print(machine())
    gpt2 = model("gpt2-small")
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "cpu.yaml"
        console.print(calibrate(target, ranks=2))
        plan = Path(folder) / "gpt2.cpu.plan.json"
        partition_json(str(gpt2), "--target", str(target), "--tp", "1", "--pp", "2",
                   "--dim", "batch=1", "--dim", f"seq={SEQ}", "-o", str(plan), "-q")  # fmt: skip
        report = partition_json("run", str(gpt2), str(plan), "--microbatches", "1",
                            "--requests", str(args.requests), "--json")  # fmt: skip
        stage_table(report)
        console.print(json.dumps({"raw_stages": report["stages"]}))
        throughput_table(gpt2, plan, args.requests)


if __name__ == "__main__":
    main()
