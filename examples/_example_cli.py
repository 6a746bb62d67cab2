"""The command line the torch examples share (``python -m examples.gpt2`` and the others).

Each example names its config argument (``--size`` or ``--preset``) and its own options;
:func:`run_example_cli` adds ``--out``, ``--exporter``, ``--opset`` and ``--seed``, builds
the model and prints the written path.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from examples._torch_export import DEFAULT_OPSET, EXPORTERS, SUPPORTED_OPSETS

__all__ = ["add_export_arguments", "example_parser", "run_example_cli"]

logger = logging.getLogger(__name__)


def example_parser(
    module: str,
    description: str,
    *,
    config_flag: str,
    config_names: Iterable[str],
    default: str,
    config_help: str,
) -> argparse.ArgumentParser:
    """A parser for ``python -m <module>`` with the example's config choice as first option.

    Args:
        module: The example's module (``"examples.gpt2"``).
        description: What the command exports.
        config_flag: ``"--size"`` or ``"--preset"``.
        config_names: The names it accepts.
        default: The name used when the flag is absent.
        config_help: Help text of the flag.

    Returns:
        The parser; the example may add its own options before :func:`run_example_cli`.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument(config_flag, choices=list(config_names), default=default, help=config_help)
    return parser


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--out``, ``--exporter``, ``--opset`` and ``--seed`` to a CLI parser."""
    parser.add_argument("--out", required=True, type=Path, help="path of the .onnx file to write")
    parser.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default="dynamo",
        help="torch.onnx exporter: 'dynamo' (torch.export based, default) or 'legacy' "
        "(TorchScript based)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        choices=SUPPORTED_OPSETS["dynamo"],
        default=DEFAULT_OPSET,
        help=f"ONNX opset to target (default {DEFAULT_OPSET}; dynamo: 17..23, legacy: 17..20)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random (untrained) weights (default 0)"
    )


def run_example_cli(
    argv: Sequence[str] | None,
    parser: argparse.ArgumentParser,
    build: Callable[..., Path],
    config_from_args: Callable[[argparse.Namespace], Any],
) -> int:
    """Add the export options, parse ``argv``, build the model and print its path.

    Args:
        argv: Command-line arguments (``None``: ``sys.argv[1:]``).
        parser: From :func:`example_parser`, with the example's own options.
        build: The example's ``build(out_path, config, *, exporter, opset, seed)``.
        config_from_args: The config (or config name) the parsed options ask for.

    Returns:
        0 (errors are raised; the example's ``main`` turns them into exit codes).
    """
    add_export_arguments(parser)
    args = parser.parse_args(argv)
    path = build(
        args.out, config_from_args(args), exporter=args.exporter, opset=args.opset, seed=args.seed
    )
    print(path)
    return 0
