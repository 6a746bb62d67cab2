"""Start a run's ranks on this machine, watch them, and stop them all on any failure.

Each rank is ``python -m partitioner.runtime.worker`` with the torchrun
environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) in a
session of its own, so a terminal's Ctrl-C reaches the launcher only, and the
launcher decides. The ranks also get a parent-death signal: should the
launcher itself be killed, they die with it.

When a rank exits non-zero or is killed, the others are stopped (SIGTERM, then
SIGKILL after a grace period) and `RankFailure` names the stage, the rank and
what it said. An interrupt (Ctrl-C, SIGTERM) stops every rank the same way
before it propagates. A run that outlives ``deadline_s`` is stopped too.
Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from partitioner.runtime.layout import RankLayout
from targets.errors import PartitionError

__all__ = ["RankFailure", "Launch", "launch"]

ERROR_PREFIX = "partition run: error: "
GRACE_S = 3.0
POLL_S = 0.05


class RankFailure(PartitionError):
    """A rank failed, hung past the deadline, or was killed (exit 3)."""

    exit_code = 3


@dataclass(frozen=True)
class Launch:
    """What the ranks need: the worker's arguments, the layout, limits and the environment."""

    worker_args: Sequence[str]
    layout: RankLayout
    deadline_s: float
    threads: int = 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: SIGKILL when the launcher dies (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)


def _environment(rank: int, world: int, port: int, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
        OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1",
    )  # fmt: skip
    # the ranks import this package as the launcher does, wherever it was run from
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _stop(processes: Sequence[subprocess.Popen]) -> None:
    """SIGTERM every live rank's session, then SIGKILL what is left after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        live = [p for p in processes if p.poll() is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)
        end = time.monotonic() + GRACE_S
        while any(p.poll() is None for p in live) and time.monotonic() < end:
            time.sleep(POLL_S)
    for p in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=GRACE_S)


def _said(log: Path) -> str | None:
    """The last error line a rank wrote, without our prefix."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    ours = [line[len(ERROR_PREFIX) :] for line in lines if line.startswith(ERROR_PREFIX)]
    if ours:
        return ours[-1]
    tail = [line for line in lines if line.strip()]
    return tail[-1][:300] if tail else None


def _failure(layout: RankLayout, rank: int, code: int, log: Path, others: int) -> RankFailure:
    who = layout.describe(rank)
    if code < 0:
        name = signal.Signals(-code).name
        what = f"{who} was killed by {name}"
    else:
        said = _said(log)
        what = f"{who} failed (exit {code})" + (f": {said}" if said else "")
    stopped = f"; stopped the other {others} rank{'s' if others != 1 else ''}" if others else ""
    return RankFailure(what + stopped)


def _watch(
    processes: Sequence[subprocess.Popen], launch: Launch, logs: Sequence[Path], result: Path
) -> None:
    """Wait for every rank; on the first failure stop the rest and raise."""
    started = time.monotonic()
    while True:
        codes = [p.poll() for p in processes]
        if codes[0] == 1 and result.exists():  # rank 0 reported outputs that differ
            codes[0] = 0
        failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            # a killed rank is the cause; the ranks it broke exit non-zero after it
            rank, code = min(failed, key=lambda f: (f[1] >= 0, f[0]))
            others = sum(c is None for c in codes)
            _stop(processes)
            raise _failure(launch.layout, rank, code, logs[rank], others)
        if all(c == 0 for c in codes):
            return
        if time.monotonic() - started > launch.deadline_s:
            _stop(processes)
            raise RankFailure(
                f"the run took longer than {launch.deadline_s:g} s; stopped all "
                f"{len(processes)} ranks (raise --deadline, or look for a hung stage)"
            )
        time.sleep(POLL_S)


def launch(launch: Launch, on_start: Callable[[int], None] | None = None) -> dict:
    """Run every rank to the end; rank 0's JSON report.

    Raises:
        RankFailure: a rank failed or was killed, or the deadline passed (all ranks stopped).
    """
    import json

    world, port = launch.layout.world_size, _free_port()
    with tempfile.TemporaryDirectory(prefix="partition-run-") as folder:
        result = Path(folder) / "result.json"
        logs = [Path(folder) / f"rank{r}.log" for r in range(world)]
        command = [sys.executable, "-m", "partitioner.runtime.worker", *launch.worker_args]
        processes: list[subprocess.Popen] = []
        try:
            for rank in range(world):
                args = [*command, "--result", str(result)] if rank == 0 else command
                with open(logs[rank], "wb") as log:
                    processes.append(
                        subprocess.Popen(
                            args,
                            env=_environment(rank, world, port, launch.threads),
                            stdin=subprocess.DEVNULL,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                            preexec_fn=_die_with_parent,
                        )  # fmt: skip
                    )
            if on_start is not None:
                on_start(world)
            _watch(processes, launch, logs, result)
        finally:
            _stop(processes)
        try:
            return json.loads(result.read_text())
        except (OSError, ValueError):
            said = _said(logs[0]) or "no report"
            raise RankFailure(f"rank 0 ended without its report: {said}") from None
