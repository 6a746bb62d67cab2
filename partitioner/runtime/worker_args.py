"""The options of every rank, shared by `partition run` and the torchrun entry point.

No torch here: `partition run --help` works without it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_worker_arguments", "worker_argv"]


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `partition run` passes on to every rank."""
    parser.add_argument("model", metavar="MODEL", type=Path, help="the .onnx file (with weights)")
    parser.add_argument("plan", metavar="PLAN", type=Path, help="the plan JSON made for it")
    parser.add_argument("--engine", choices=("ort", "numpy"), default="ort",
                        help="onnxruntime (default) or the NumPy executor per stage")  # fmt: skip
    parser.add_argument("--microbatches", type=int, default=None, metavar="M",
                        help="micro-batches in flight per round (default: the plan's)")  # fmt: skip
    parser.add_argument("--requests", type=int, default=None, metavar="N",
                        help="micro-batches in all, in rounds of M (default: M)")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=1, metavar="K",
                        help="untimed micro-batches first (default 1)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated inputs")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SEC",
                        help="longest wait for a peer, per receive (default 60)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1,
                        help="onnxruntime intra-op threads per rank (default 1)")  # fmt: skip
    parser.add_argument("--trace", type=Path, metavar="FILE.json", help="write a Chrome trace")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    # `partition run` reads rank 0's report from here (and prints it itself)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The arguments `partition run` hands each rank (it writes --trace and prints itself)."""
    argv = [str(args.model), str(args.plan), "--engine", args.engine]
    for flag, value in (
        ("--microbatches", args.microbatches), ("--requests", args.requests),
        ("--warmup", args.warmup), ("--seed", args.seed), ("--timeout", args.timeout),
        ("--threads", args.threads),
    ):  # fmt: skip
        if value is not None:
            argv += [flag, str(value)]
    return argv
