"""The `partition` command line.

``partition MODEL --target T`` plans a model; the other verbs are subcommands.
Errors the user can fix print one line on stderr and exit 2; a mismatch found
by ``validate`` or ``verify`` exits 1; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from partitioner import __version__
from targets.errors import PartitionError

__all__ = ["main", "build_parser"]

# verb -> (module under partitioner.commands, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "analyze": ("analyze", "FLOPs, parameters and memory of a model, per op and in total"),
    "validate": ("validate", "check a plan against the plan contract (and its model)"),
    "verify": ("verify", "run a plan partition by partition and compare with onnxruntime"),
    "simulate": ("simulate", "latency, throughput, bottleneck and link loads of a plan"),
    "targets": ("targets", "list the hardware presets with their key numbers"),
}
PLAN_VERB = ("plan", "plan MODEL onto target T and write the plan")

EPILOG = """\
commands:
  partition MODEL --target T ...  plan MODEL onto target T and write the plan
{verbs}

Run `partition COMMAND --help` for each command's options.
exit codes: 0 success, 1 validation/verification mismatch, 2 bad input or usage.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2, no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _verbs_help() -> str:
    return "\n".join(f"  partition {verb:<22}{help_}" for verb, (_, help_) in SUBCOMMANDS.items())


def build_parser(verb: str) -> argparse.ArgumentParser:
    """The parser for one subcommand ("plan" is the default command)."""
    module_name, help_ = SUBCOMMANDS[verb] if verb != "plan" else PLAN_VERB
    module = importlib.import_module(f"partitioner.commands.{module_name}")
    parser = _Parser(
        prog="partition" if verb == "plan" else f"partition {verb}",
        description=module.__doc__ or help_,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    parser.set_defaults(run=module.run)
    return parser


def _top_level_help() -> str:
    return (
        f"partition {__version__}: plan ONNX models onto GPU shards or a wafer-scale core grid.\n\n"
        + EPILOG.format(verbs=_verbs_help())
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `partition` console script."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args_in or args_in[0] in ("-h", "--help"):
        print(_top_level_help())
        return 0 if args_in else 2
    if args_in[0] == "--version":
        print(f"partition {__version__}")
        return 0
    verb = args_in[0] if args_in[0] in SUBCOMMANDS else "plan"
    rest = args_in[1:] if verb != "plan" else args_in
    parser = build_parser(verb)
    args = parser.parse_args(rest)
    args.argv = args_in
    try:
        return int(args.run(args))
    except PartitionError as err:
        print(f"partition: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(
            "partition: interrupted before a result was ready; nothing was written", file=sys.stderr
        )
        return 130
    except BrokenPipeError:
        return 0
