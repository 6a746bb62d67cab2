"""How far the plans' GPU decode estimates are from public figures nobody here wrote.

Each row plans a weightless Llama decode graph (`examples.llama`) on a preset
(``runtime: fused``, as serving runtimes run) and, for comparison, on the same
preset with ``runtime: eager``, then prints the estimate beside the public
figure and the ratio. No constant is fitted to any of them; the presets'
rates come from datasheets and the H200 measurements in their sources.

    python bench/fidelity.py [--cpu] [--gpu-target FILE]

``--cpu`` adds the rows measured here: for each of GPT-2 small, BERT-base and
the tiny Llama (random weights), `partition calibrate --ranks 2` writes this
CPU's target, the model is planned into 2 stages on it and run with
`partition run` (one micro-batch at a time) and stage by stage in a hot loop
(`bench/_stage_hot.py`: no idle gap before a stage), and calibrate's GEMM is timed
again; per stage and whole model, measured compute against the plan's, and
the machine's drift between calibration and run. Run it on a quiet machine: the ranks take both cores. The wafer
rows (Cerebras, WaferLLM) are in bench/wafer.py.

MLPerf's offline figure is a served throughput, not one decode step, so its rows
also serve the bundled ``offline`` workload (MLPerf's lengths, every request at
once) on the target with `partition compare`, which searches the replica count:
the "served offline" columns, the figure to read against MLPerf.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, calibrate, console, machine, partition_json, print_table  # noqa: E402
from bench.compare import OFFLINE_REQUESTS  # noqa: E402
from targets.loader import load_target  # noqa: E402


@dataclass(frozen=True)
class Row:
    what: str
    config: str
    target: str
    flags: tuple[str, ...]
    public: float  # the published figure, in ``unit``
    unit: str  # "ms/step" or "tokens/s"
    source: str
    quant: str = "none"  # examples.llama --quant
    served: bool = False  # also serve MLPerf's offline workload (`partition compare`)


ROWS = (
    Row("Llama-3.1-8B decode, batch 8, H200, TP1", "llama3.1-8b", "h200x1",
        ("--dim", "batch=8", "--dim", "past=95"), 6.4, "ms/step",
        "vLLM CI dashboard (H200, 32 in / 128 out, batch 8: 833 ms a request)"),
    Row("Llama-3.1-70B decode, batch 8, H200, TP4", "llama3.1-70b", "h200x4",
        ("--tp", "4", "--pp", "1", "--dim", "batch=8", "--dim", "past=95"), 16.0, "ms/step",
        "vLLM CI dashboard (H200, TP4, batch 8)"),
    Row("Llama-3.1-8B decode, batch 1, H200: HBM bound", "llama3.1-8b", "h200x1",
        ("--dim", "batch=1", "--dim", "past=1023"), 16.06e9 / 4.8e12 * 1e3, "ms/step",
        "weights 16.06 GB / 4.8 TB/s (datasheet): no runtime is faster"),
    Row("Llama-70B decode, offline, 8xH100", "llama3.1-70b", "h100x8",
        ("--dim", "batch=256", "--dim", "past=1023"), 24525.0, "tokens/s",
        "MLPerf Inference v4.1 Llama-2-70B offline (FP8; our graph is Llama-3.1-70B in bf16)",
        served=True),
    Row("Llama-70B decode, offline, 8xH100, FP8 projections", "llama3.1-70b", "h100x8",
        ("--dim", "batch=256", "--dim", "past=1023"), 24525.0, "tokens/s",
        "the same (ours: --quant fp8, bf16 KV cache)", quant="fp8", served=True),
    Row("Llama-70B decode, offline, 8xH100, FP8 projections and KV cache", "llama3.1-70b",
        "h100x8", ("--dim", "batch=256", "--dim", "past=1023"), 24525.0, "tokens/s",
        "the same (ours: --quant fp8-kv)", quant="fp8-kv", served=True),
)  # fmt: skip


def _plan(model: Path, target: str, flags: tuple[str, ...], out: Path) -> dict:
    partition_json(str(model), "--target", target, *flags, "-o", str(out), "-q")
    return json.loads(out.read_text())["estimate"]


def _served_offline(model: Path, target: str) -> tuple[float, str]:
    """Tokens/s serving the bundled ``offline`` workload (MLPerf's lengths, every request
    at once) with the replica count `partition compare` finds best, and that shape."""
    doc = partition_json("compare", str(model), "--targets", target, "--dim", "batch=1",
                         "--dim", "past=4095", "--workload", "offline", "--requests",
                         OFFLINE_REQUESTS, "--json")  # fmt: skip
    (row,) = doc["rows"]
    par = row["parallelism"]
    return row["serving"]["throughput_tokens_per_s"], f"tp{par['tp']} pp{par['pp']} dp{par['dp']}"


def _figure(estimate: dict, unit: str) -> float:
    return estimate["s_per_token"] * 1e3 if unit == "ms/step" else estimate["tokens_per_s"]


CPU_MODELS = (  # (name in bench/_common.MODELS or "llama-tiny", --dim flags)
    ("gpt2-small", ("--dim", "batch=1", "--dim", "seq=64")),
    ("bert-base", ("--dim", "batch=1", "--dim", "seq=128")),
    ("llama-tiny", ("--dim", "batch=1", "--dim", "seq=64")),
)


def _cpu_model(name: str, folder: Path) -> Path:
    from bench._common import model

    if name != "llama-tiny":
        return model(name)
    path = folder / "llama-tiny.onnx"
    subprocess.run([sys.executable, "-m", "examples.llama", "--config", "tiny", "--kind",
                    "prefill", "--weights", "random", "--out", str(path)],
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    return path


def _calibrate(target: Path) -> float:
    """Calibrate this machine into ``target``; its float32 GEMM rate, for the drift check."""
    calibrate(target, ranks=2)
    return load_target(target).devices[0].peak_flops_per_s["float32"]


def _gemm_now() -> float:
    """The float32 GEMM rate calibrate would measure now (after a run): how far the
    machine drifted from the figure the plan was made with."""
    from partitioner.calibrate.host import gemm_rates

    return gemm_rates(threads=1)["float32"].value


def cpu_rows() -> None:
    """Measured per-stage and whole-model compute against the plan, on calibrate's target.

    Each model is planned on a calibration made just before its run, and the GEMM rate is
    measured again just after: this VM's speed wanders by 10-15 % over minutes, and the
    drift column says how much of an error is the machine, not the model. Each stage is
    measured twice: in `partition run`, where a later stage idles while the one before it
    computes, and alone in a hot loop (`bench/_stage_hot.py`), as calibrate measures."""
    import statistics

    from bench._stage_hot import hot_stage_seconds

    rows, errors = [], {"run": [], "hot": []}
    with tempfile.TemporaryDirectory() as folder:
        for name, dims in CPU_MODELS:
            target = Path(folder) / f"{name}.cpu.yaml"
            path, plan = _cpu_model(name, Path(folder)), Path(folder) / f"{name}.plan.json"
            before = _calibrate(target)
            _plan(path, str(target), ("--tp", "1", "--pp", "2", *dims), plan)
            report = partition_json("run", str(path), str(plan), "--microbatches", "1",
                                     "--requests", "8", "--json")  # fmt: skip
            hot = hot_stage_seconds(path, plan)
            drift = f"{before / _gemm_now():.2f}"
            stages = report["stages"]
            for s, hot_s in zip(stages, hot, strict=True):
                estimate = s["estimated"]["compute_s"]
                errors["run"].append(abs(s["compute_s"] / estimate - 1))
                errors["hot"].append(abs(hot_s / estimate - 1))
                rows.append(_cpu_row(name, s["stage"], s["compute_s"], hot_s, estimate, drift))
            rows.append(_cpu_row(name, "whole", sum(s["compute_s"] for s in stages), sum(hot),
                                 sum(s["estimated"]["compute_s"] for s in stages), drift))  # fmt: skip
    print_table("CPU: measured compute against the plan (ms per micro-batch; ratio = measured / estimate)",
                ["model", "stage", "in run", "hot", "estimate", "ratio in run", "ratio hot",
                 "GEMM rate at calibration / after the run"], rows)  # fmt: skip
    console.print(f"median absolute error per stage: {statistics.median(errors['run']):.1%} in "
                  f"`partition run`, {statistics.median(errors['hot']):.1%} hot")  # fmt: skip


def _cpu_row(name: str, stage: object, run_s: float, hot_s: float, estimate_s: float,
             drift: str) -> tuple[str, ...]:  # fmt: skip
    return (name, str(stage), f"{run_s * 1e3:.2f}", f"{hot_s * 1e3:.2f}", f"{estimate_s * 1e3:.2f}",
            f"{run_s / estimate_s:.2f}", f"{hot_s / estimate_s:.2f}", drift)  # fmt: skip


def _variant(folder: Path, target: str, runtime: str) -> Path:
    """``target`` (a preset or a target file) run as ``runtime``: a file that extends it."""
    safe = "".join(c if c.isalnum() else "_" for c in target)
    path = folder / f"{safe}-{runtime}.yaml"
    base = str(Path(target).resolve()) if Path(target).is_file() else target
    path.write_text(f"extends: {json.dumps(base)}\nruntime: {runtime}\n")
    return path


def _rows(gpu_target: str | None) -> list[Row]:
    """The public rows; with ``gpu_target`` (calibrate --device cuda's file, one GPU), only
    the one-H200 rows, each on the preset and on that file (a device session's minutes)."""
    if not gpu_target:
        return list(ROWS)
    mine = [r for r in ROWS if r.target == "h200x1"]
    name = Path(gpu_target).name
    return mine + [dataclasses.replace(r, what=f"{r.what} (calibrated: {name})", target=gpu_target)
                   for r in mine]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="also the CPU rows, measured here")
    parser.add_argument("--gpu-target", metavar="FILE",
                        help="a target written by `partition calibrate --device cuda` on an "
                        "H200: only the one-H200 rows, on the preset and on it "
                        "(bench/gpu_session.sh)")  # fmt: skip
    args = parser.parse_args()
    console.print(machine())
    if args.cpu:
        cpu_rows()
    rows = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for row in _rows(args.gpu_target):
            model = folder / f"{row.config}-{row.quant}.onnx"
            quant = ("--opset", "21", "--quant", row.quant) if row.quant != "none" else ()
            if not model.exists():
                subprocess.run([sys.executable, "-m", "examples.llama", "--config", row.config,
                                "--kind", "decode", "--out", str(model), *quant],
                               cwd=ROOT, check=True, capture_output=True)  # fmt: skip
            fused_target, eager_target = (str(_variant(folder, row.target, r))
                                          for r in ("fused", "eager"))  # fmt: skip
            fused = _figure(_plan(model, fused_target, row.flags, folder / "f.json"), row.unit)
            slow = _figure(_plan(model, eager_target, row.flags, folder / "e.json"), row.unit)
            served = ["-", "-"]
            if row.served:
                tokens_per_s, shape = _served_offline(model, row.target)
                served = [f"{tokens_per_s:,.0f} ({shape})", f"{tokens_per_s / row.public:.2f}"]
            rows.append((row.what, f"{row.public:,.1f} {row.unit}", f"{fused:,.1f}",
                         f"{fused / row.public:.2f}", f"{slow:,.1f}", f"{slow / row.public:.2f}",
                         *served, row.source))  # fmt: skip
    print_table(
        "GPU decode estimates against public figures (ratio = estimate / public)",
        ["setup", "public", "fused", "ratio", "eager", "ratio", "served offline", "ratio",
         "source"], rows,
    )  # fmt: skip
    console.print(
        "[dim]fused and eager: one decode step of the plan at the row's dims. Served offline: "
        "MLPerf's offline scenario as it is run, `partition compare --workload offline` "
        f"({OFFLINE_REQUESTS} requests a replica, the replica count searched), fused.[/dim]"
    )


if __name__ == "__main__":
    main()
