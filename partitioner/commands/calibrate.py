"""Measure this machine and write a target file of what it measured.

On the CPU (the default), through onnxruntime with the threads a `partition
run` rank uses (--threads, default 1): MatMul FLOP/s per dtype at a few
transformer shapes (the best is the achieved peak), the bandwidth of a
streaming Add over 64 MB arrays, the overhead per op of a chain of small ops
of a transformer's kinds (Add, Transpose, Softmax, Mul, MatMul), and the fixed
cost of one step (a one-op session.run). With --ranks 2 or more (the default
is 2), the send/recv and all-reduce latency and bandwidth between that many local processes through
torch.distributed (gloo; needs torch), the step's cost again while the
ranks pass messages, which is what a stage of `run` pays, and the streaming
bandwidth each rank gets while all stream at once (they share the host's
memory; `simulate` prices pipeline stages running side by side with it). With
--device cuda the same figures come from torch on the GPU and NCCL.

The target has one device per rank (each a core's worth of threads on a CPU),
efficiencies of 1 (the rates are achieved ones), and a comment beside every
figure saying how it was measured. It takes seconds. Plan with it and compare
the plan's estimates with `partition run`.

examples:
  partition calibrate -o cpu.yaml
  partition model.onnx --target cpu.yaml --tp 1 --pp 2 --dim batch=1 --dim seq=64
  partition calibrate --device cuda --ranks 8 -o h200x8.yaml
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
from dataclasses import replace
from pathlib import Path

from partitioner.calibrate.host import Measured
from partitioner.calibrate.target import Calibration, target_dict, target_yaml
from partitioner.commands._common import console, err_console
from partitioner.errors import UsageError
from partitioner.outputs import Outputs
from partitioner.units import human_bytes, human_seconds
from targets.loader import target_from_dict

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="TARGET.yaml",
                        help="the target file to write")  # fmt: skip
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="what to measure (default cpu, through onnxruntime)")  # fmt: skip
    parser.add_argument("--ranks", type=int, default=2, metavar="N",
                        help="devices in the target, and local ranks for the link "
                        "benchmarks (default 2; 1 measures no links)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1,
                        help="onnxruntime threads per rank on CPU (default 1, as `run`)")  # fmt: skip


def _host_memory(ranks: int) -> Measured:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return Measured(
        total // ranks, f"physical memory {human_bytes(total)} shared by {ranks} rank(s)"
    )


def _cpu(args: argparse.Namespace) -> Calibration:
    from partitioner.calibrate import host

    gemm, stream = host.gemm_rates(args.threads), host.stream_rate(args.threads)
    name = f"CPU {platform.processor() or platform.machine()} ({args.threads} thread)"
    overlap = host.compute_memory_overlap(args.threads, gemm["float32"].value, stream.value)
    return Calibration(
        name, _host_memory(args.ranks), gemm, stream, host.per_op_overhead(args.threads),
        args.ranks, step_overhead=host.step_overhead(args.threads), overlap=overlap,
    )  # fmt: skip


def _cuda(args: argparse.Namespace) -> Calibration:
    from partitioner.calibrate.cuda import calibrate_cuda

    return calibrate_cuda(args.ranks)


def _check(args: argparse.Namespace) -> None:
    if not 1 <= args.ranks <= 64:
        raise UsageError(f"--ranks {args.ranks}: give a whole number from 1 to 64")
    if not 1 <= args.threads <= 1024:
        raise UsageError(f"--threads {args.threads}: give a whole number from 1 to 1024")
    torch = importlib.util.find_spec("torch") is not None
    if (args.device == "cuda" or args.ranks > 1) and not torch:
        what = "--device cuda" if args.device == "cuda" else f"--ranks {args.ranks} (links)"
        raise UsageError(f"{what} needs torch: pip install 'partition[torch]', or --ranks 1")


def run(args: argparse.Namespace) -> int:
    _check(args)
    outputs = Outputs()
    outputs.add("-o", args.output)
    err_console.print(f"measuring {args.device} ({args.ranks} rank(s)) ...", markup=False)
    calibration = _cuda(args) if args.device == "cuda" else _cpu(args)
    if args.ranks > 1:
        from partitioner.calibrate.links import measure_links

        backend = "nccl" if args.device == "cuda" else "gloo"
        together = measure_links(args.ranks, backend, threads=args.threads)
        # among ranks passing messages a step costs more than alone: keep that figure
        step = together.step or calibration.step_overhead
        calibration = replace(calibration, links=together.links, step_overhead=step,
                              contended_bandwidth=together.contended_bandwidth)  # fmt: skip
    stamp = datetime.date.today().isoformat()
    calibration = replace(
        calibration, description=f"measured by partition calibrate on {platform.node()}, {stamp}"
    )
    target_from_dict(target_dict(calibration))  # what we write must load
    with outputs:
        outputs.stage(args.output, target_yaml(calibration))
        outputs.commit()
    _print(calibration)
    console.print(f"target written to {args.output}", markup=False)
    warning = contention_warning(calibration)
    if warning:
        err_console.print(f"warning: {warning}", markup=False)
    return 0


def contention_warning(c: Calibration) -> str | None:
    """What to say when the ranks streaming at once measured no slower than one alone: a
    shared memory system cannot give each of them more, so the machine changed speed
    between the two timings (a busy or throttled host), and both figures are suspect."""
    together = c.contended_bandwidth
    if together is None or together.value < c.memory_bandwidth.value:
        return None
    return (
        f"each of {c.ranks} ranks streamed {human_bytes(together.value)}/s at once, no slower "
        f"than one alone ({human_bytes(c.memory_bandwidth.value)}/s): the machine changed "
        "speed between the two timings; calibrate again when it is quiet"
    )


def _print(c: Calibration) -> None:
    rows = [(f"GEMM {dtype}", f"{m.value / 1e9:.1f} GFLOP/s", m.how) for dtype, m in c.gemm.items()]
    rows += [
        ("memory bandwidth", f"{human_bytes(c.memory_bandwidth.value)}/s", c.memory_bandwidth.how),
        ("per op", human_seconds(c.per_op.value), c.per_op.how),
    ]
    if c.step_overhead is not None:
        rows.append(("per step", human_seconds(c.step_overhead.value), c.step_overhead.how))
    if c.contended_bandwidth is not None:
        rate = f"{human_bytes(c.contended_bandwidth.value)}/s"
        rows.append(("memory bandwidth, ranks at once", rate, c.contended_bandwidth.how))
    if c.overlap is not None:
        shown = "overlapped" if c.overlap.value else "in turn"
        rows.append(("compute and memory", shown, c.overlap.how))
    for key, m in c.links.items():
        rate = "bandwidth" in key
        shown = f"{human_bytes(m.value)}/s" if rate else human_seconds(m.value)
        label = key.removesuffix("_bytes_per_s" if rate else "_s").replace("_", " ")
        rows.append((f"link {label}", shown, m.how))
    for what, value, how in rows:
        console.print(f"{what:<34} {value:>14}   {how}", markup=False)
