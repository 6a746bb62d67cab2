"""Running the CLI under fuzzing: a hang guard, the contract every run keeps, the corpus.

Whatever bytes a model file holds and whatever a plan file says, `partition`
must end with exit 0, 1 or 2: never a traceback, never a hang, never an
exception escaping `partitioner.cli.main`. Exit 2 is one line on stderr,
starting "partition: error:", and a failed command leaves no output file.

Python warnings and log records are printed to the captured stderr as a real
process prints them, so a stray warning line breaks the one-line rule here too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from hypothesis import HealthCheck, settings
from onnx import helper

from tests.cli import CliResult, run_cli
from tests.modelgen import init, make_model, save, vi

__all__ = [
    "FUZZ",
    "TIMEOUT_S",
    "Corpus",
    "build_corpus",
    "corpus_model",
    "cli",
    "check",
    "run_checked",
    "files",
]

TIMEOUT_S = 20
"""A single CLI call on these tiny inputs takes well under a second; 20 s is a hang."""

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,  # derandomized runs need no example database (and write no .hypothesis/)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class CliHang(BaseException):
    """Raised by SIGALRM inside a CLI call; a BaseException so that no `except Exception` eats it."""


class _CurrentStderr:
    """Writes to whatever sys.stderr is at the time of the write (run_cli redirects it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def like_a_process() -> Iterator[None]:
    """Python warnings and log records reach stderr as in a real `partition` process.

    Under pytest, warnings are recorded and log records captured, so a stray
    warning would pass unseen in-process yet break the one-line contract on a
    terminal. Here they print to the captured stderr, with Python's default
    warning filters and the CLI's own logging format (``logging.basicConfig`` in
    main is a no-op once pytest has given the root logger handlers).
    """
    handler = logging.StreamHandler(_CurrentStderr())  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()  # Python's defaults, as `python -m partitioner` has them
            for category in (
                DeprecationWarning,
                PendingDeprecationWarning,
                ImportWarning,
                ResourceWarning,
            ):
                warnings.filterwarnings("ignore", category=category)
            warnings.showwarning = _show_warning
            yield
    finally:
        root.removeHandler(handler)


def cli(*argv: str, timeout_s: float = TIMEOUT_S) -> CliResult:
    """run_cli with a hang guard; an exception escaping main becomes a test failure."""
    guard = threading.current_thread() is threading.main_thread()
    previous = None
    if guard:

        def on_alarm(signum: int, frame: Any) -> None:
            raise CliHang

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        with like_a_process():
            return run_cli(*argv)
    except CliHang:
        raise AssertionError(f"hang: `partition {' '.join(argv)}` ran over {timeout_s} s") from None
    except Exception as exc:
        raise AssertionError(
            f"exception escaped main: `partition {' '.join(argv)}`: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if guard:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def check(res: CliResult, argv: tuple[str, ...]) -> None:
    """The contract every run keeps, whatever its input."""
    cmd = f"`partition {' '.join(argv)}`"
    assert res.code in (0, 1, 2), f"{cmd} exited {res.code}; stderr: {res.err!r}"
    assert "Traceback" not in res.err, f"{cmd} printed a traceback:\n{res.err}"
    assert "Traceback" not in res.out, f"{cmd} printed a traceback:\n{res.out}"
    if res.code == 2:
        assert res.err.startswith("partition: error:"), f"{cmd}: exit 2 with stderr {res.err!r}"
        assert res.err.endswith("\n") and res.err.count("\n") == 1, (
            f"{cmd}: exit 2 must print exactly one line on stderr, got {res.err!r}"
        )


def run_checked(*argv: str, timeout_s: float = TIMEOUT_S) -> CliResult:
    res = cli(*argv, timeout_s=timeout_s)
    check(res, argv)
    return res


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


class Corpus(dict):
    """The fixture's files and their contents (a short repr keeps hypothesis reports readable)."""

    def __repr__(self) -> str:
        return "<corpus: m.onnx, m.plan.json>"


def corpus_model() -> onnx.ModelProto:
    """A small static-shape model: fc1 MatMul, add1 Add, relu, fc2 MatMul, add2 Add(m, x2)."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="add1"),
        helper.make_node("Relu", ["hb"], ["a"], name="relu"),
        helper.make_node("MatMul", ["a", "w2"], ["m"], name="fc2"),
        helper.make_node("Add", ["m", "x2"], ["y"], name="add2"),
    ]
    rng = np.random.default_rng(0)
    inits = [
        init("w1", rng.standard_normal((4, 6)).astype(np.float32)),
        init("b1", rng.standard_normal((6,)).astype(np.float32)),
        init("w2", rng.standard_normal((6, 4)).astype(np.float32)),
    ]
    return make_model(nodes, [vi("x", [2, 4]), vi("x2", [2, 4])], [vi("y", [2, 4])], inits)


def build_corpus(folder: Path) -> Corpus:
    """The corpus model (MatMul/Add/Relu, float32 weights), a GPU and a wafer plan for it."""
    model = save(corpus_model(), folder / "m.onnx")
    plan = folder / "m.plan.json"
    res = run_cli(str(model), "--target", "h100x2", "--pp", "2", "-o", str(plan), "-q")
    assert res.code == 0, res
    assert run_cli("validate", str(plan), str(model)).code == 0
    doc = json.loads(plan.read_text())
    assert len(doc["partitions"]) == 2, "the fuzz plan should have two stages"
    wafer = folder / "m.wse3.plan.json"  # regions, fabric hops and the wafer simulator
    res = run_cli(str(model), "--target", "wse3", "-o", str(wafer), "-q")
    assert res.code == 0, res
    assert run_cli("validate", str(wafer), str(model)).code == 0
    return Corpus(
        {
            "folder": folder,
            "model": model,
            "model_bytes": model.read_bytes(),
            "model_proto": onnx.load(str(model)),
            "plan": plan,
            "plans": {
                "gpu": (plan.read_bytes(), doc),
                "wafer": (wafer.read_bytes(), json.loads(wafer.read_text())),
            },
        }
    )
