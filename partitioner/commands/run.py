"""Run a plan on torch.distributed, one process per rank, and measure it against the plan.

Every plan stage is a rank (a tensor-parallel stage one rank per GPU), started
here on this machine with gloo (NCCL and onnxruntime's CUDA provider when CUDA
is present). Micro-batches stream through the stages:
each rank receives its inputs (batched irecv along the plan's transfers),
runs its partitions with onnxruntime (one intra-op thread per rank by
default) or the NumPy executor (--engine numpy), and sends on (batched
isend), so stages overlap. Tensor-parallel groups run their collectives with
torch.distributed. --requests micro-batches go through in rounds of
--microbatches, the pipeline draining between rounds (GPipe).

Rank 0 checks every micro-batch's outputs against onnxruntime on the whole
model with verify's tolerances. The table gives, per stage and micro-batch,
the measured compute, collective, receive (the transfer itself), send
(blocked on sends) and idle (waiting for the stage before) seconds beside the
plan's estimates, and the throughput beside the simulator's schedule of the
same rounds. --trace writes a Chrome trace (one track per rank, opens in
Perfetto), the format `partition simulate --trace` predicts in.

Across machines, start the ranks with torchrun instead:
  torchrun --nnodes N --nproc-per-node K -m partitioner.runtime.worker MODEL PLAN

Needs torch (pip install 'partition[torch]'). A rank that dies or hangs stops
the run: every receive waits at most --timeout, and the ranks that are left
are stopped. Exit 0 when the outputs match, 1 when they differ (or the plan
is invalid), 2 for bad input, 3 when a rank failed, 130 on Ctrl-C.

examples:
  partition run gpt2.onnx gpt2.h100x4.plan.json
  partition run gpt2.onnx plan.json --microbatches 4 --requests 64 --trace run.json --json
"""

from __future__ import annotations

import argparse
import importlib.util

from partitioner.commands._common import err_console, external_data_paths
from partitioner.errors import UsageError
from partitioner.outputs import Outputs
from partitioner.runtime.finish import publish
from partitioner.runtime.launcher import Launch, launch
from partitioner.runtime.program import load_run
from partitioner.runtime.worker_args import add_worker_arguments, worker_argv

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_worker_arguments(parser)
    parser.add_argument(
        "--deadline", type=float, default=1800.0, metavar="SEC",
        help="stop every rank when the whole run takes longer (default 1800)",
    )  # fmt: skip


def _check_numbers(args: argparse.Namespace) -> None:
    limits = (
        ("--microbatches", args.microbatches, 1, 1 << 16),
        ("--requests", args.requests, 1, 1 << 24),
        ("--warmup", args.warmup, 0, 1 << 16),
        ("--threads", args.threads, 1, 1024),
        ("--seed", args.seed, 0, (1 << 32) - 1),
    )
    for flag, value, low, high in limits:
        if value is not None and not low <= value <= high:
            raise UsageError(f"{flag} {value}: give a whole number from {low} to {high}")
    for flag, seconds in (("--timeout", args.timeout), ("--deadline", args.deadline)):
        if not 0 < seconds < 1e6:
            raise UsageError(f"{flag} {seconds:g}: give seconds above 0")


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("torch") is None:
        raise UsageError("partition run needs torch: pip install 'partition[torch]'")
    _check_numbers(args)
    outputs = Outputs([args.model, args.plan])
    if args.trace is not None:
        outputs.add("--trace", args.trace)
    inputs = load_run(args.model, args.plan)
    outputs.add_inputs(external_data_paths(inputs.graph))
    layout = inputs.layout
    err_console.print(
        f"starting {layout.world_size} ranks ({args.engine} engine) for {layout.num_stages} stages",
        markup=False,
    )
    document = launch(Launch(worker_argv(args), layout, args.deadline, args.threads))
    return publish(document, args, outputs)
