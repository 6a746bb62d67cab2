"""Ctrl-C or SIGTERM while planning: a flag, and a solve that stops on it and keeps its best answer.

A KeyboardInterrupt raised in the middle of OR-Tools' C++ calls (while a model
is being built, say) can leave it in a state that aborts the process at exit.
So while planning runs, SIGINT and SIGTERM (what `timeout`, CI runners and
Kubernetes send) only set a flag; the solve runs in a worker thread and is told
to stop when the flag is set, and model building checks the flag when it is
done. Contexts nest: the command opens one around the whole planning, the
solvers open their own inside it, and all see the same flag.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # every command imports this module; only planning needs OR-Tools
    from ortools.sat.python import cp_model

#: CP-SAT's UNKNOWN status (`cp_model.UNKNOWN`), without importing OR-Tools for it.
UNKNOWN = 0

__all__ = ["Interrupt", "StopSignal", "solve_interruptibly", "STOP_SIGNALS", "exit_code"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal(KeyboardInterrupt):
    """SIGTERM outside a planning phase: unwinds like Ctrl-C, so temporary files are removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(signum: int | None) -> int:
    """The shell's convention: 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + int(signum if signum is not None else signal.SIGINT)


class Interrupt:
    """Context in which SIGINT and SIGTERM set a shared flag instead of raising (main thread only)."""

    _depth = 0
    _signum: int | None = None
    _previous: dict[int, Any] = {}

    @property
    def hit(self) -> bool:
        return Interrupt._signum is not None

    @property
    def signum(self) -> int | None:
        """The first stop signal received in the outermost context, if any."""
        return Interrupt._signum

    @staticmethod
    def _handler(signum: int, frame: FrameType | None) -> None:
        if Interrupt._signum is None:
            Interrupt._signum = signum

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is not threading.main_thread():
            return self
        if Interrupt._depth == 0:
            Interrupt._signum = None
            Interrupt._previous = {s: signal.signal(s, Interrupt._handler) for s in STOP_SIGNALS}
        Interrupt._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        Interrupt._depth -= 1
        if Interrupt._depth == 0:
            for s, previous in Interrupt._previous.items():
                signal.signal(s, previous)
            Interrupt._previous = {}


def solve_interruptibly(
    solver: cp_model.CpSolver,
    model: cp_model.CpModel,
    callback: cp_model.CpSolverSolutionCallback | None = None,
    interrupt: Interrupt | None = None,
) -> tuple[int, bool]:
    """Solve in a worker thread; Ctrl-C stops the search and keeps the best answer.

    Returns:
        (CP-SAT status, whether the user interrupted).
    """
    with interrupt or Interrupt() as stop:
        if stop.hit:
            return UNKNOWN, True
        result: dict[str, int] = {}

        def work() -> None:
            result["status"] = solver.solve(model, callback)

        worker = threading.Thread(target=work, name="cp-sat", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.1)
            if stop.hit:
                # Repeated: a stop asked for before the search starts would be forgotten.
                solver.stop_search()
        return result.get("status", UNKNOWN), stop.hit
