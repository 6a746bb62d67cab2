"""How far the plans' GPU decode estimates are from public figures nobody here wrote.

Each row plans a weightless Llama decode graph (`examples.llama`) on a preset
(``runtime: fused``, as serving runtimes run) and, for comparison, on the same
preset with ``runtime: eager``, then prints the estimate beside the public
figure and the ratio. No constant is fitted to any of them; the presets'
rates come from datasheets and the H200 measurements in their sources.

    python bench/fidelity.py

The CPU rows (measured here against `partition run`) are in bench/runtime.py,
the wafer rows (Cerebras, WaferLLM) in bench/wafer.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, console, machine, print_table  # noqa: E402


@dataclass(frozen=True)
class Row:
    what: str
    config: str
    target: str
    flags: tuple[str, ...]
    public: float  # the published figure, in ``unit``
    unit: str  # "ms/step" or "tokens/s"
    source: str


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
        "MLPerf Inference v4.1 Llama-2-70B offline (FP8; our graph is Llama-3.1-70B in bf16)"),
)  # fmt: skip


def _plan(model: Path, target: str, flags: tuple[str, ...], out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "partitioner", str(model), "--target", target, *flags,
         "-o", str(out), "-q"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"planning {model.name} on {target} failed: {done.stderr.strip()[-300:]}")
    return json.loads(out.read_text())["estimate"]


def _figure(estimate: dict, unit: str) -> float:
    return estimate["s_per_token"] * 1e3 if unit == "ms/step" else estimate["tokens_per_s"]


def main() -> None:
    console.print(machine())
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for row in ROWS:
            model = Path(folder) / f"{row.config}.onnx"
            if not model.exists():
                subprocess.run([sys.executable, "-m", "examples.llama", "--config", row.config,
                                "--kind", "decode", "--out", str(model)],
                               cwd=ROOT, check=True, capture_output=True)  # fmt: skip
            eager = Path(folder) / f"{row.target}-eager.yaml"
            eager.write_text(f"extends: {row.target}\nruntime: eager\n")
            fused = _figure(_plan(model, row.target, row.flags, Path(folder) / "f.json"), row.unit)
            slow = _figure(_plan(model, str(eager), row.flags, Path(folder) / "e.json"), row.unit)
            rows.append((row.what, f"{row.public:,.1f} {row.unit}", f"{fused:,.1f}",
                         f"{fused / row.public:.2f}", f"{slow:,.1f}", f"{slow / row.public:.2f}",
                         row.source))  # fmt: skip
    print_table(
        "GPU decode estimates against public figures (ratio = estimate / public)",
        ["setup", "public", "fused", "ratio", "eager", "ratio", "source"],
        rows,
    )


if __name__ == "__main__":
    main()
