"""Shared benchmark helpers: cached example models, timed CLI runs, tables.

Models are built once into ``bench/.cache`` (git-ignored) with the example
scripts; torch is needed only for the torch examples. Each measured command
runs in a fresh process, so wall time and peak RSS are its own.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
sys.path.insert(0, str(ROOT))

from partitioner.calibrate.host import median_s  # noqa: E402  (one timing helper)

__all__ = [
    "ROOT",
    "CACHE",
    "model",
    "timed",
    "Timed",
    "best_of",
    "partition_json",
    "calibrate",
    "median_s",
    "print_table",
    "machine",
    "DIMS",
]

console = Console(width=160)

# name -> (module, build kwargs, --dim overrides used by every benchmark)
MODELS: dict[str, tuple[str, dict, dict[str, int]]] = {
    "mlp": ("examples.mlp", {"size": "base"}, {"batch": 8}),
    "resnet18": (
        "examples.resnet",
        {"preset": "resnet18"},
        {"batch": 8, "height": 224, "width": 224},
    ),
    "gpt2-small": ("examples.gpt2", {"size": "small"}, {"batch": 1, "seq": 128}),
    "bert-base": ("examples.bert", {"size": "base"}, {"batch": 1, "seq": 128}),
    "llama3.1-8b-prefill": (
        "examples.llama",
        {"config": "llama3.1-8b", "kind": "prefill"},
        {"batch": 1, "seq": 2048},
    ),
    "llama3.1-8b-decode": (
        "examples.llama",
        {"config": "llama3.1-8b", "kind": "decode"},
        {"batch": 1, "past": 4095},
    ),
    "llama3.1-70b-prefill": (
        "examples.llama",
        {"config": "llama3.1-70b", "kind": "prefill"},
        {"batch": 1, "seq": 2048},
    ),
    "llama3.1-70b-decode": (
        "examples.llama",
        {"config": "llama3.1-70b", "kind": "decode"},
        {"batch": 1, "past": 4095},
    ),
    "llama3.1-405b-decode": (
        "examples.llama",
        {"config": "llama3.1-405b", "kind": "decode"},
        {"batch": 1, "past": 4095},
    ),
}
DIMS = {name: dims for name, (_, _, dims) in MODELS.items()}


def model(name: str) -> Path:
    """Path of an example model, building it on first use."""
    module_name, kwargs, _ = MODELS[name]
    path = CACHE / f"{name}.onnx"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        import importlib

        module = importlib.import_module(module_name)
        console.print(f"[dim]building {name} with {module_name} ...[/dim]")
        module.build(path, **kwargs)
    return path


def dim_args(name: str) -> list[str]:
    return [a for k, v in DIMS[name].items() for a in ("--dim", f"{k}={v}")]


@dataclass(frozen=True)
class Timed:
    wall_s: float
    max_rss_bytes: int
    stdout: str
    returncode: int


def timed(argv: Sequence[str], *, module: str = "partitioner") -> Timed:
    """Run ``python -m MODULE ARGV`` in a fresh process: its wall time and its own peak RSS.

    The peak RSS comes from GNU time (``%M``): the rusage of a child forked from
    this (large) process would count this process's pages copied at fork.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, sys.executable, "-m", module, *argv],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        wall = time.perf_counter() - start
        kib = int(rss.read().strip().splitlines()[-1])
    if proc.returncode not in (0, 1):
        console.print(f"[red]{' '.join(argv)} failed:[/red] {proc.stderr.strip()}")
    return Timed(wall, kib * 1024, proc.stdout, proc.returncode)


def partition_json(*argv: str) -> dict:
    """``python -m partitioner ARGV`` whose stdout is JSON (exits with its stderr on failure)."""
    done = subprocess.run(
        [sys.executable, "-m", "partitioner", *argv], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)},  # keep the caller's
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"partition {argv[0]} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}


def calibrate(target: Path, ranks: int) -> str:
    """``partition calibrate --ranks RANKS -o TARGET`` in a fresh process; what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "partitioner", "calibrate", "--ranks", str(ranks), "-o",
         str(target)], cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout


def best_of(runs: int, fn: Callable[[], object]) -> tuple[float, object]:
    """The fastest of ``runs`` calls (seconds) and the last result."""
    best, result = math.inf, None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    table = Table(title=title, title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[str(c) for c in row])
    console.print(table)


def machine() -> str:
    cpus = os.cpu_count()
    return f"{platform.node()}: {platform.processor() or platform.machine()}, {cpus} cores, Python {platform.python_version()}"
