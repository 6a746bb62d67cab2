"""Ctrl-C while a solver runs: a flag, and a solve that stops on it and keeps its best answer.

A KeyboardInterrupt raised in the middle of OR-Tools' C++ calls (while a model
is being built, say) can leave it in a state that aborts the process at exit.
So while a solver phase runs, SIGINT only sets a flag; the solve runs in a
worker thread and is told to stop when the flag is set, and model building
checks the flag when it is done.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from ortools.sat.python import cp_model

__all__ = ["Interrupt", "solve_interruptibly"]


class Interrupt:
    """Context in which Ctrl-C sets ``hit`` instead of raising (main thread only)."""

    def __init__(self) -> None:
        self.hit = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.hit = True

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


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
            return cp_model.UNKNOWN, True
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
        return result.get("status", cp_model.UNKNOWN), stop.hit
