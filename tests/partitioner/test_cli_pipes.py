"""Output into a pipe whose reader stops early (`partition ... | head`) ends quietly."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("args", [["--help"], ["targets"], ["plan", "--help"]])
def test_a_closed_pipe_is_not_a_traceback(args):
    # The reader closes the pipe before the command writes (it takes a while
    # to start), as `| head -0` does: every write then fails with EPIPE.
    proc = subprocess.Popen(
        [sys.executable, "-m", "partitioner", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err, err
