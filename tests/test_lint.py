"""Lint and format guards: ``ruff check .`` and ``ruff format --check .`` pass.

They run from the repository root with the settings in ``pyproject.toml``, so
the README's test command covers them; each failure shows ruff's own report.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff_command() -> list[str] | None:
    """How to run the ruff that belongs to this interpreter, or None if it is not installed."""
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    name = "ruff.exe" if os.name == "nt" else "ruff"
    beside = Path(sys.executable).parent / name
    return [str(beside)] if beside.is_file() else None


@pytest.mark.parametrize(
    "args", [("check", "."), ("format", "--check", ".")], ids=["check", "format"]
)
def test_ruff(args):
    ruff = _ruff_command()
    if ruff is None:
        pytest.skip(f"ruff is not installed for {sys.executable} (pip install -e '.[dev]')")
    # --no-cache: nothing is written to the tree, so parallel workers never race on the cache
    result = subprocess.run(
        [*ruff, *args, "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`ruff {' '.join(args)}` failed (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}",
            pytrace=False,
        )
