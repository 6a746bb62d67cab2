"""Tensor parallelism: what the tp x pp search buys, what it costs, and that it is exact.

Four tables, each from fresh `partition` processes (wall time and peak RSS are
their own):

1. Llama-3.1-70B decode (batch 1, past 4095) on h100x8: the chosen tp x pp plan
   against the pipeline-only plan (--tp 1) of the same run: seconds per token,
   the ratio, and the share of the step in collectives.
2. Llama-3.1-8B decode on 1, 2, 4 and 8 H100s: per-stream tokens/s of the plan
   the search picks.
3. Llama-3.1-405B decode on h100x16: planning wall time and peak RSS.
4. `partition verify` of TP2 and TP4 plans of GPT-2 small and the tiny Llama
   (random weights): the largest relative error against onnxruntime.

Usage::

    python bench/tensor_parallel.py                 # all four (builds the models once)
    python bench/tensor_parallel.py --only 1 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import CACHE, DIMS, console, machine, model, print_table, timed

from examples import llama

DECODE_DIMS = ["--dim", "batch=1", "--dim", "past=4095"]


def _plan(path: Path, target: str, dims: list[str], out: Path, *extra: str) -> tuple[dict, object]:
    run = timed([str(path), "--target", target, *dims, "-o", str(out), "-q", *extra])
    return json.loads(out.read_text()), run


def _step(plan: dict) -> tuple[float, float, str]:
    """Seconds per step, the collectives' share of it, and what dominates."""
    breakdown = plan["estimate"].get("time_breakdown", {})
    shares = breakdown.get("shares", {})
    collective = shares.get("collective_latency_s", 0.0) + shares.get("collective_bandwidth_s", 0.0)
    return plan["estimate"]["latency_s"], collective, breakdown.get("dominant", "")


def _shape(plan: dict) -> str:
    p = plan["parallelism"]
    return f"TP{p['tp']} x PP{p['pp']}"


def table_70b(work: Path) -> None:
    path = model("llama3.1-70b-decode")
    rows = []
    base_s = None
    # What-if, not a fit: the same GPUs with no per-kernel launch cost, which is what a
    # CUDA-graph runtime approaches (issue 12 models it properly).
    no_launch = work / "h100x8-no-launch.yaml"
    no_launch.write_text(
        "extends: h100x8\nname: h100x8-no-launch\nall_devices:\n  launch_overhead_s: 0\n"
    )
    cases = (
        ("pipeline only", "h100x8", ("--tp", "1")),
        ("tp x pp search", "h100x8", ()),
        ("pipeline only, no launch cost", str(no_launch), ("--tp", "1")),
        ("tp x pp search, no launch cost", str(no_launch), ()),
    )
    for i, (label, target, extra) in enumerate(cases):
        if i == 2:
            base_s = None
        plan, run = _plan(path, target, DECODE_DIMS, work / f"70b-{i}.json", *extra)
        step_s, collective, dominant = _step(plan)
        base_s = base_s or step_s
        rows.append(
            [
                label,
                _shape(plan),
                f"{1e3 * step_s:.1f} ms",
                f"{1 / step_s:.1f}",
                f"{base_s / step_s:.2f}x",
                f"{100 * collective:.0f}%",
                dominant,
                f"{run.wall_s:.1f} s",
            ]
        )
    print_table(
        "Llama-3.1-70B decode, batch 1, past 4095, on h100x8",
        [
            "plan",
            "shape",
            "s/token",
            "tokens/s/stream",
            "vs pipeline",
            "collectives",
            "dominant",
            "planning",
        ],
        rows,
    )


def table_8b(work: Path) -> None:
    path = model("llama3.1-8b-decode")
    rows = []
    for devices in (1, 2, 4, 8):
        target = "h100x8"
        plan, run = _plan(
            path, target, DECODE_DIMS, work / f"8b-{devices}.json", "--devices", str(devices)
        )
        step_s, collective, dominant = _step(plan)
        rows.append(
            [
                devices,
                _shape(plan),
                f"{1e3 * step_s:.2f} ms",
                f"{1 / step_s:.1f}",
                f"{100 * collective:.0f}%",
                dominant,
            ]
        )
    print_table(
        "Llama-3.1-8B decode, batch 1, past 4095, on the first N GPUs of h100x8",
        ["GPUs", "shape", "s/token", "tokens/s/stream", "collectives", "dominant"],
        rows,
    )


def table_405b(work: Path) -> None:
    path = model("llama3.1-405b-decode")
    plan, run = _plan(path, "h100x16", DECODE_DIMS, work / "405b.json")
    step_s, collective, dominant = _step(plan)
    print_table(
        "Llama-3.1-405B decode, batch 1, past 4095, on h100x16: planning cost",
        ["shape", "s/token", "candidates", "planning wall", "peak RSS", "dominant"],
        [
            [
                _shape(plan),
                f"{1e3 * step_s:.1f} ms",
                len(plan["solver"]["candidates"]),
                f"{run.wall_s:.1f} s",
                f"{run.max_rss_bytes / 2**20:.0f} MiB",
                dominant,
            ]
        ],
    )


def _verify_models(work: Path) -> list[tuple[str, Path, list[str]]]:
    tiny = llama.build(work / "tiny-prefill.onnx", "tiny", kind="prefill", weights="random")
    return [
        (
            "gpt2-small",
            model("gpt2-small"),
            ["--dim", f"batch={DIMS['gpt2-small']['batch']}", "--dim", "seq=32"],
        ),
        ("tiny Llama prefill", tiny, ["--dim", "batch=1", "--dim", "seq=8"]),
    ]


def table_verify(work: Path) -> None:
    rows = []
    for name, path, dims in _verify_models(work):
        for tp in (2, 4):
            out = work / f"{path.stem}.tp{tp}.json"
            plan, _ = _plan(path, f"h100x{tp}", dims, out, "--tp", str(tp))
            run = timed(["verify", str(path), str(out), "--json"])
            report = json.loads(run.stdout)
            worst = max(o["max_rel"] for o in report["outputs"])
            rows.append(
                [
                    name,
                    _shape(plan),
                    len(plan["collectives"]),
                    "yes" if report["ok"] else "NO",
                    f"{worst:.2e}",
                ]
            )
    print_table(
        "verify: tensor-parallel plans against onnxruntime on the whole model",
        ["model", "shape", "collectives", "ok", "max rel error"],
        rows,
    )


TABLES = {1: table_70b, 2: table_8b, 3: table_405b, 4: table_verify}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", type=int, nargs="*", choices=sorted(TABLES), default=sorted(TABLES)
    )
    args = parser.parse_args()
    console.print(f"machine: {machine()}")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        for number in args.only:
            TABLES[number](Path(tmp))


if __name__ == "__main__":
    main()
