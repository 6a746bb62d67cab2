"""Reading plan files: refuse what is not a plan before parsing it.

A plan file is user input: a FIFO or a device would block forever, a huge file
is not a plan, and a non-UTF-8 file is not JSON. Each is one PlanError line.
"""

from __future__ import annotations

import stat
from pathlib import Path

from partitioner.plan.document import Plan
from partitioner.plan.schema import PlanError
from passes.external import file_kind

__all__ = ["MAX_PLAN_BYTES", "regular_file_problem", "read_plan_text", "load_plan"]

MAX_PLAN_BYTES = 256 << 20
"""A 405B model's plan is a few MB; anything far larger is not a plan file."""


def regular_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a regular file (None when it can), without opening it.

    A FIFO or a device would block or stream forever on read, so they are
    refused from their metadata alone.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return "does not exist; check the path"
    except OSError as err:
        return f"cannot be read: {err.strerror or err}"
    if stat.S_ISREG(info.st_mode):
        return None
    return f"is {file_kind(info.st_mode)}, not a file"


def read_plan_text(path: Path) -> str:
    """The text of a plan file (one-line PlanError if missing, special, huge or unreadable)."""
    problem = regular_file_problem(path)
    if problem is not None:
        raise PlanError(f"plan file '{path}' {problem}")
    size = path.stat().st_size
    if size > MAX_PLAN_BYTES:
        raise PlanError(
            f"plan file '{path}' is {size:,} bytes, far more than any plan; is it a plan file?"
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PlanError(f"plan file '{path}' is not UTF-8 text; is it a plan file?") from None
    except OSError as err:
        raise PlanError(f"cannot read plan file '{path}': {err.strerror or err}") from err


def load_plan(path: Path) -> Plan:
    """Read a plan file (one-line PlanError if unreadable or invalid)."""
    return Plan.from_json(read_plan_text(path), source=f"'{path}'")
