"""Options and helpers shared by several commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from passes.ir import Graph
from passes.load import external_data_files, load
from passes.transforms.dims import parse_dim_overrides

__all__ = ["add_model_arguments", "load_graph", "console", "err_console", "external_data_paths"]


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


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """MODEL plus the repeatable ``--dim NAME=VALUE``."""
    parser.add_argument("model", metavar="MODEL", type=Path, help="the .onnx file")
    parser.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix a symbolic dimension, e.g. --dim batch=1 --dim seq=128 (repeatable)",
    )


def load_graph(args: argparse.Namespace) -> Graph:
    """Load ``args.model`` with ``args.dim`` applied (raises one-line PartitionErrors)."""
    return load(args.model, parse_dim_overrides(args.dim))


def external_data_paths(graph: Graph) -> list[Path]:
    """The files holding the model's external weights (inputs no output may replace)."""
    base = graph.path.parent if graph.path else Path.cwd()
    return [base / location for location in external_data_files(graph) if location]
