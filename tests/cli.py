"""Run the CLI in-process and capture its exit code, stdout and stderr."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from partitioner.cli import main

__all__ = ["CliResult", "run_cli"]


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*argv: str) -> CliResult:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors and --help
            code = int(exc.code or 0)
    return CliResult(code, out.getvalue(), err.getvalue())
