"""Options and helpers shared by several commands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Self

from rich.console import Console

from partitioner.console import console, err_console
from passes.ir import Graph
from passes.load import external_data_files, load
from passes.transforms.dims import parse_dim_overrides

__all__ = [
    "add_model_arguments", "load_graph", "console", "err_console", "external_data_paths",
    "path_from", "LiveStatus",
]  # fmt: skip


class LiveStatus:
    """A live status line on ``screen`` (stderr's console) while a block runs; None shows
    nothing."""

    def __init__(self, message: str, screen: Console | None) -> None:
        self.status = screen.status(message) if screen is not None else None

    def __enter__(self) -> Self:
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.stop()


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


def path_from(folder: Path, path: Path) -> str:
    """``path`` relative to ``folder`` (POSIX separators), as a plan records the files it
    was made from, so that the plan and its models can move together."""
    return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
