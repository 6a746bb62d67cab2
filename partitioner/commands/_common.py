"""Options and helpers shared by several commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from passes.ir import Graph
from passes.load import load
from passes.transforms.dims import parse_dim_overrides

__all__ = ["add_model_arguments", "load_graph", "console", "err_console"]

# Rich assumes 80 columns when output is not a terminal; tables read better wider.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, highlight=False)


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
