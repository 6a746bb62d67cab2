"""Ctrl-C or SIGTERM during a solve writes the best plan found so far, and says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples import llama
from partitioner.plan.io import load_plan

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_stop_signal_keeps_the_best_plan(tmp_path, signum, code):
    """SIGTERM is what `timeout`, CI runners and Kubernetes send: it must act like Ctrl-C."""
    model = llama.build(tmp_path / "l405.onnx", "llama3.1-405b", kind="decode")
    out = tmp_path / "plan.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "partitioner",
            str(model),
            "--target",
            "h100x32",
            "--dim",
            "batch=1",
            "--dim",
            "past=1023",
            "--time-limit",
            "600",
            "-o",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    # Wait for the solver to start (the CLI announces it on stderr), then interrupt.
    deadline = time.monotonic() + 120
    line = ""
    while "solving with CP-SAT" not in line and time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "the planner exited before solving"
    time.sleep(2.0)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "interrupted: wrote the best plan found so far" in stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1].startswith("interrupted: wrote the best plan")  # the last word
    plan = load_plan(out)
    assert plan.solver.status in ("FEASIBLE", "HEURISTIC")
    assert len(plan.partitions) == 32
    assert not list(tmp_path.glob(".plan.json.*"))  # no temp file left behind


def test_the_unknown_status_is_cp_sats_and_commands_start_without_or_tools():
    """`interrupt` spares every command OR-Tools' import (a third of a second); its own
    UNKNOWN must still be CP-SAT's."""
    import subprocess
    import sys

    from ortools.sat.python import cp_model

    from partitioner.solvers import interrupt

    assert interrupt.UNKNOWN == cp_model.UNKNOWN
    code = "import sys, partitioner.cli; print(any(m.startswith('ortools') for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
