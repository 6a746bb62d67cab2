"""`partition compare` on Llama-3.1-70B decode across GPUs and wafers, against MLPerf.

1. Plans the weightless Llama-3.1-70B decode graph (batch 1, past 4095) on each
   target and serves MLPerf's Llama-2-70B server workload on each plan, sweeping the
   arrival rate for the highest one meeting its SLO (p99 TTFT <= 2 s, TPOT <= 200 ms).
2. Prints the side-by-side table, then the predicted tokens/s at the SLO next to
   MLPerf Inference v4.1's server results (8xH100 21,606 tokens/s, 8xH200 29,228),
   as a ratio. Nothing is fitted to them: MLPerf ran FP8 weights, activations and KV
   cache, Llama-2-70B (32k vocabulary) and TensorRT-LLM; our graph is Llama-3.1-70B,
   bf16 or (``--quant fp8``) with FP8 projections. Two figures are printed: the
   simulated run's tokens/s (2,000 requests, ramp and drain included) and the rate
   sustained, the highest rate meeting the SLO times the workload's mean output
   length, which is what a run as long as MLPerf's (at least ten minutes) measures.
3. Times the simulator alone: 100,000 chat requests on the h100x8 plan.

    python bench/compare.py [--targets h100x8,h200x8,b200x8,wse3x4] [--quant fp8|fp8-kv]
                            [--offline]

``--offline`` serves the bundled ``offline`` workload instead (the same lengths, every
request at once, 3,000 of them), each target's replica count chosen for tokens/s, and
compares the tokens/s with MLPerf v4.1 offline (8xH100 24,525, 8xH200 31,303).
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
MLPERF_OFFLINE = {"h100x8": 24525.0, "h200x8": 31303.0}  # the same, offline
OFFLINE_REQUESTS = "3000"  # per replica simulated: the drain of the last long outputs stays small
DIMS = ("--dim", "batch=1", "--dim", "past=4095")
WORKLOAD = "mlperf-llama2-70b-server"


def _build(folder: Path, quant: str) -> Path:
    path = folder / f"llama3.1-70b-decode-{quant}.onnx"
    opset = ["--opset", "21", "--quant", quant] if quant != "none" else []
    subprocess.run([sys.executable, "-m", "examples.llama", "--config", "llama3.1-70b",
                    "--kind", "decode", "--out", str(path), *opset],
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    return path


def _mean_output_tokens(workload: str) -> float:
    from partitioner.simulate.serving import load_workload

    return float(load_workload(workload).sample().output_tokens.mean())


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


def _mlperf_rows(doc: dict, mean_output: float) -> list[list[str]]:
    rows = []
    for r in doc["rows"]:
        public = MLPERF_SERVER.get(r["target"])
        if not (public and r["fits"] and r["serving"] and r.get("max_rate_per_s")):
            continue
        simulated = r["serving"]["throughput_tokens_per_s"]
        sustained = r["max_rate_per_s"] * mean_output
        par = r["parallelism"]
        rows.append([r["target"], f"tp{par['tp']} pp{par['pp']} dp{par['dp']}",
                     f"{simulated:,.0f}", f"{simulated / public:.2f}", f"{sustained:,.0f}",
                     f"{sustained / public:.2f}", f"{public:,.0f}"])  # fmt: skip
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


def _offline(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as name:
        model = _build(Path(name), args.quant)
        doc = partition_json("compare", str(model), "--targets", args.targets, *DIMS,
                             "--workload", "offline", "--requests", OFFLINE_REQUESTS, "--json")  # fmt: skip
    Path("/tmp/compare-offline-last.json").write_text(json.dumps(doc, indent=1))
    rows = []
    for r in doc["rows"]:
        if not (r["fits"] and r["serving"]):
            continue
        par, ours = r["parallelism"], r["serving"]["throughput_tokens_per_s"]
        public = MLPERF_OFFLINE.get(r["target"])
        tried = "; ".join(f"dp{t['dp']} {t['throughput_tokens_per_s'] or 0:,.0f}"
                          for t in r["shapes_tried"] if t["fits"])  # fmt: skip
        rows.append([r["target"], f"tp{par['tp']} pp{par['pp']} dp{par['dp']}", f"{ours:,.0f}",
                     "-" if public is None else f"{public:,.0f}",
                     "-" if public is None else f"{ours / public:.2f}", tried])  # fmt: skip
    print_table(
        f"offline: MLPerf lengths, every request at once ({args.quant}); ratio = ours / MLPerf",
        ["target", "shape", "tokens/s", "MLPerf offline", "ratio", "tokens/s per shape"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="h100x8,h200x8,b200x8,wse3x4")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--quant", choices=("none", "fp8", "fp8-kv"), default="none",
                        help="fp8: the graph's projections in FP8, fp8-kv: its KV cache too "
                        "(examples.llama --quant)")  # fmt: skip
    parser.add_argument("--offline", action="store_true",
                        help="the offline scenario, against MLPerf's offline results")  # fmt: skip
    args = parser.parse_args()
    console.print(machine())
    if args.offline:
        _offline(args)
        return
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        model = _build(folder, args.quant)
        doc = partition_json("compare", str(model), "--targets", args.targets, *DIMS,
                             "--workload", WORKLOAD, "--json")  # fmt: skip
        Path("/tmp/compare-last.json").write_text(json.dumps(doc, indent=1))
        print_table(
            "Llama-3.1-70B decode, MLPerf Llama-2-70B server workload (at the highest rate "
            "meeting p99 TTFT <= 2 s, TPOT <= 200 ms)",
            ["target", "fits", "devices", "TTFT p99 s", "TPOT p99 s", "max rate /s",
             "tokens/s", "$/M tokens", "J/token", "bottleneck"],
            _rows(doc),
        )  # fmt: skip
        print_table(
            f"against MLPerf Inference v4.1 server (ratio = ours / MLPerf; {args.quant})",
            ["target", "shape", "simulated tokens/s", "ratio", "sustained tokens/s", "ratio",
             "MLPerf tokens/s"],
            _mlperf_rows(doc, _mean_output_tokens(WORKLOAD)),
        )  # fmt: skip
        if not args.skip_speed:
            _speed(model, folder)


if __name__ == "__main__":
    main()
