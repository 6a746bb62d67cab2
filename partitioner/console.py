"""The consoles every command prints through (and `partition run`'s rank 0 under torchrun)."""

from __future__ import annotations

import sys

from rich.console import Console

__all__ = ["console", "err_console"]


# Rich assumes 80 columns when output is not a terminal; tables read better wider.
# Text is never wrapped there (soft_wrap): a script greps whole lines, and an
# error stays the one line it was written as. Markup is off: names and paths come
# from the user's files ("[/]" is a valid ONNX node name), so styles are given as
# rich Text styles, never as markup in strings.
class _Console(Console):
    """rich's console, but a closed pipe (`| head`) ends the command like any other:
    rich exits 1 there, which our exit codes reserve for a failed check."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


console = _Console(
    highlight=False,
    markup=False,
    width=None if sys.stdout.isatty() else 140,
    soft_wrap=not sys.stdout.isatty(),
)
err_console = _Console(
    stderr=True, highlight=False, markup=False, soft_wrap=not sys.stderr.isatty()
)
