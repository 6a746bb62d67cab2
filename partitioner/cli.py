"""The `partition` command line.

``partition MODEL --target T`` plans a model; the other verbs are subcommands.
Errors the user can fix print one line on stderr and exit 2; a mismatch found
by ``validate`` or ``verify`` exits 1; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from partitioner import __version__
from partitioner.solvers.interrupt import StopSignal, exit_code
from targets.errors import PartitionError

__all__ = ["main", "build_parser"]

# verb -> (module under partitioner.commands, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "analyze": ("analyze", "FLOPs, parameters and memory of a model, per op and in total"),
    "validate": ("validate", "check a plan against the plan contract (and its model)"),
    "verify": ("verify", "run a plan partition by partition and compare with onnxruntime"),
    "simulate": ("simulate", "latency, throughput, bottleneck and link loads of a plan"),
    "compare": ("compare", "plan one model on several targets and serve one workload on each"),
    "export": ("export", "one ONNX file per plan stage, a manifest and a Triton repository"),
    "run": ("run", "run a plan on torch.distributed ranks and measure it against the plan"),
    "calibrate": ("calibrate", "measure this machine and write a target file of what it measured"),
    "targets": ("targets", "list the hardware presets with their key numbers"),
}
PLAN_VERB = ("plan", "plan MODEL onto target T and write the plan")
VERB_ALIASES = {"analyse": "analyze"}

EPILOG = """\
commands:
  partition [plan] MODEL --target T ...  plan MODEL onto target T and write the plan
{verbs}

Run `partition COMMAND --help` for each command's options.
exit codes: 0 success, 1 validation/verification mismatch, 2 bad input or usage,
  130 (Ctrl-C) or 143 (SIGTERM) when interrupted; a plan search keeps its best plan.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2, no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _verbs_help() -> str:
    return "\n".join(f"  partition {verb:<29}{help_}" for verb, (_, help_) in SUBCOMMANDS.items())


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


def _verb(first: str) -> str:
    """The subcommand ``first`` names; "plan" when it is a model path.

    A word that is no verb and no existing file, but close to a verb, is a typo:
    say so rather than report a missing model called "simulte".
    """
    verb = VERB_ALIASES.get(first, first)
    if verb in SUBCOMMANDS or verb == "plan":
        return verb
    looks_like_path = first.startswith("-") or "." in first or "/" in first or Path(first).exists()
    if not looks_like_path:
        known = [*SUBCOMMANDS, "plan", *VERB_ALIASES]
        close = difflib.get_close_matches(first, known, n=1, cutoff=0.6)
        if close:
            raise UnknownCommand(
                f"unknown command {first[:40]!r}; did you mean `partition {VERB_ALIASES.get(close[0], close[0])}`? "
                "(`partition --help` lists the commands)"
            )
    return "plan"


class UnknownCommand(PartitionError):
    """The first argument is neither a command nor a model path."""


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise StopSignal(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `partition` console script."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM unwinds like Ctrl-C (temporary files are removed); while planning,
    # both only set a flag so that the best plan found so far is kept.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm) if in_main else None
    try:
        return _run(args_in)
    except BrokenPipeError:  # e.g. `partition --help | head`: the reader has what it wanted
        _silence_stdout()
        return 0
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises nothing more."""
    with contextlib.suppress(OSError, ValueError):  # no stdout to silence: nothing to do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _run(args_in: list[str]) -> int:
    if not args_in or args_in[0] in ("-h", "--help"):
        print(_top_level_help())
        return 0 if args_in else 2
    if args_in[0] == "--version":
        print(f"partition {__version__}")
        return 0
    try:
        verb = _verb(args_in[0])
        named = args_in[0] in (*SUBCOMMANDS, *VERB_ALIASES, "plan")
        rest = args_in[1:] if named else args_in
        parser = build_parser(verb)
        args = parser.parse_args(rest)
        args.argv = args_in
        return int(args.run(args))
    except PartitionError as err:
        print(f"partition: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as stop:
        print(
            "partition: interrupted before a result was ready; nothing was written", file=sys.stderr
        )
        return exit_code(stop.signum if isinstance(stop, StopSignal) else signal.SIGINT)
    except BrokenPipeError:
        _silence_stdout()
        return 0
