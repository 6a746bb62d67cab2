"""`partition compare` on Llama-3.1-70B decode across GPUs and wafers, against MLPerf.

1. Plans the weightless Llama-3.1-70B decode graph (batch 1, past 4095) on each
   target and serves MLPerf's Llama-2-70B server workload on each plan, sweeping the
   arrival rate for the highest one meeting its SLO (p99 TTFT <= 2 s, TPOT <= 200 ms).
2. Prints the side-by-side table, then the predicted tokens/s at the SLO next to
   MLPerf Inference v4.1's server results (8xH100 21,606 tokens/s, 8xH200 29,228),
   as a ratio. Nothing is fitted to them: MLPerf ran FP8 weights and KV cache,
   Llama-2-70B (32k vocabulary) and TensorRT-LLM; our graph is bf16 Llama-3.1-70B.
3. Times the simulator alone: 100,000 chat requests on the h100x8 plan.

    python bench/compare.py [--targets h100x8,h200x8,b200x8,wse3x4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, console, machine, partition_json, print_table  # noqa: E402

MLPERF_SERVER = {"h100x8": 21606.0, "h200x8": 29228.0}  # tokens/s, MLPerf v4.1 closed, FP8
DIMS = ("--dim", "batch=1", "--dim", "past=4095")


def _build(folder: Path) -> Path:
    path = folder / "llama3.1-70b-decode.onnx"
    subprocess.run([sys.executable, "-m", "examples.llama", "--config", "llama3.1-70b",
                    "--kind", "decode", "--out", str(path)],
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    return path


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _rows(doc: dict) -> list[list[str]]:
    rows = []
    for r in doc["rows"]:
        if not r["fits"]:
            rows.append([r["target"], "no", r["reason"], *["-"] * 8])
            continue
        f, par = r["serving"] or {}, r["parallelism"]
        rows.append([
            r["target"], "yes", f"{r['devices']} (tp{par['tp']} pp{par['pp']} dp{par['dp']})",
            _cell(f.get("ttft_s", {}).get("p99"), ".3f"), _cell(f.get("tpot_s", {}).get("p99"), ".4f"),
            _cell(r.get("max_rate_per_s"), ".3g"), _cell(f.get("throughput_tokens_per_s"), ",.0f"),
            _cell(f.get("usd_per_million_tokens"), ".3g"), _cell(f.get("joules_per_token"), ".3g"),
            r["bottleneck"],
        ])  # fmt: skip
    return rows


def _speed(model: Path, folder: Path) -> None:
    plan = folder / "h100x8.plan.json"
    partition_json(str(model), "--target", "h100x8", *DIMS, "-o", str(plan), "-q")
    started = time.perf_counter()
    doc = partition_json("simulate", str(plan), "--workload", "chat", "--requests", "100000",
                         "--json")  # fmt: skip
    wall_s = time.perf_counter() - started
    serving = doc["serving"]
    print_table("simulator speed (chat workload on the 70B h100x8 plan, whole command)",
                ["requests", "iterations", "wall s", "requests per wall s"],
                [[f"{serving['requests']:,}", f"{serving['iterations']:,}", f"{wall_s:.1f}",
                  f"{serving['requests'] / wall_s:,.0f}"]])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="h100x8,h200x8,b200x8,wse3x4")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    console.print(machine())
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        model = _build(folder)
        doc = partition_json("compare", str(model), "--targets", args.targets, *DIMS,
                             "--workload", "mlperf-llama2-70b-server", "--json")  # fmt: skip
        Path("/tmp/compare-last.json").write_text(json.dumps(doc, indent=1))
        print_table(
            "Llama-3.1-70B decode, MLPerf Llama-2-70B server workload (at the highest rate "
            "meeting p99 TTFT <= 2 s, TPOT <= 200 ms)",
            ["target", "fits", "devices", "TTFT p99 s", "TPOT p99 s", "max rate /s",
             "tokens/s", "$/M tokens", "J/token", "bottleneck"],
            _rows(doc),
        )  # fmt: skip
        mlperf = []
        for r in doc["rows"]:
            public = MLPERF_SERVER.get(r["target"])
            if public and r["fits"] and r["serving"]:
                ours = r["serving"]["throughput_tokens_per_s"]
                mlperf.append(
                    [r["target"], f"{ours:,.0f}", f"{public:,.0f}", f"{ours / public:.2f}"]
                )
        print_table(
            "against MLPerf Inference v4.1 server (ratio = ours / MLPerf)",
            ["target", "predicted tokens/s at SLO", "MLPerf tokens/s", "ratio"],
            mlperf,
        )
        if not args.skip_speed:
            _speed(model, folder)


if __name__ == "__main__":
    main()
