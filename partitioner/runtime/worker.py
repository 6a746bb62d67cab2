"""One rank of `partition run`, on torch.distributed; also a torchrun entry point.

    torchrun --nproc-per-node K -m partitioner.runtime.worker MODEL PLAN [options]

``partition run`` starts K of these itself. Each reads the plan and model,
joins the process group (gloo; NCCL when CUDA is present, messages then
staged on the rank's GPU), builds its stage, and streams the micro-batches:
receive (batched irecv, bounded by --timeout), compute, send (batched isend,
waited only before the next micro-batch's sends, so sending overlaps the next
receive and compute). Requests go through in rounds of --microbatches, the
pipeline draining between rounds (a GPipe flush). Afterwards every rank hands
its timings and outputs to rank 0, which checks the outputs against
onnxruntime on the whole model and writes the report (--result, or printed).

Exit codes: 0 ok, 1 outputs differ or the plan is invalid, 2 bad input,
3 this rank failed (a peer died or timed out).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from typing import Any

import numpy as np
import onnx
import torch.distributed as dist

from partitioner.executor.verify import compare_output
from partitioner.runtime.engines import EngineConfig
from partitioner.runtime.finish import finish_run
from partitioner.runtime.layout import RankLayout
from partitioner.runtime.program import RankProgram, load_run
from partitioner.runtime.report import RankRecord
from partitioner.runtime.transport import (
    Expected,
    TorchCollectives,
    post_sends,
    recv_routes,
    use_device,
)
from partitioner.runtime.worker_args import add_worker_arguments
from targets.errors import PartitionError

__all__ = ["main", "ERROR_PREFIX", "RANK_FAILED"]

ERROR_PREFIX = "partition run: error: "
RANK_FAILED = 3
# Input sets per run: each is checked against onnxruntime once; micro-batches cycle through them.
DISTINCT_INPUTS = 8


class PeerError(PartitionError):
    """A peer died, hung past the timeout, or closed its connection."""

    exit_code = RANK_FAILED


def _expected(program: RankProgram, layout: RankLayout, rank: int) -> dict[str, Expected]:
    out = {}
    for route in layout.inbound(rank):
        t = program.graph.tensors[route.tensor]
        if not t.is_static:
            raise PartitionError(
                f"tensor {route.tensor!r} has no static shape at the plan's dims "
                f"({t.shape}); run sends tensors of known shapes: plan with --dim"
            )
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))
        out[route.tensor] = Expected(tuple(int(d) for d in t.shape), dtype)  # type: ignore[union-attr]
    return out


def _groups(layout: RankLayout, rank: int) -> TorchCollectives | None:
    """Every rank creates every group, in stage order (torch requires it); ours is returned."""
    mine = None
    for stage in range(layout.num_stages):
        ranks = layout.stage_ranks(stage)
        if len(ranks) > 1:
            group = dist.new_group(list(ranks))
            if rank in ranks:
                mine = TorchCollectives(group, len(ranks))
    return mine


class _Stream:
    """The micro-batch loop of one rank, recording when each part happened."""

    def __init__(
        self, program: RankProgram, layout: RankLayout, rank: int, seed: int, distinct: int
    ) -> None:
        self.program, self.rank, self.seed, self.layout = program, rank, seed, layout
        # micro-batch m takes input set m % distinct: made once, before any timing
        self.inputs = [program.feeds(seed, k) for k in range(distinct)]
        self.repeats: list[dict[str, Any]] = []  # repeated inputs whose outputs changed
        self.inbound, self.outbound = layout.inbound(rank), layout.outbound(rank)
        self.expected = _expected(program, layout, rank)
        self.collectives = _groups(layout, rank)
        self.pending: list[Any] = []
        self.outputs: dict[int, dict[str, np.ndarray]] = {}

    def _drain(self) -> float:
        start = time.perf_counter()
        for work in self.pending:
            work.wait()
        self.pending = []
        return time.perf_counter() - start

    def _receive(self) -> tuple[dict[str, np.ndarray], list[float]]:
        try:
            return recv_routes(self.inbound, self.expected)
        except RuntimeError as error:  # gloo: the peer closed the connection, or the timeout
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            senders = sorted({r.src_rank for r in self.inbound})
            names = ", ".join(self.layout.describe(r) for r in senders)
            raise PeerError(f"waiting for the tensors of {names}: {first[:300]}") from None

    def _keep_outputs(self, microbatch: int, values: dict[str, Any]) -> None:
        """The first output of each input set is kept (rank 0 checks it against onnxruntime);
        each later one must equal it, within verify's tolerances."""
        outputs = {n: np.asarray(values[n]) for n in self.program.outputs}
        first = self.outputs.get(microbatch % len(self.inputs))
        if first is None:
            self.outputs[microbatch] = outputs
            return
        for name, value in outputs.items():
            c = compare_output(name, value, first[name], None)
            if not c.ok:
                self.repeats.append({"microbatch": microbatch, "name": name, "max_abs": c.max_abs})

    def step(self, microbatch: int, keep: bool) -> dict[str, Any]:
        feeds = self.inputs[microbatch % len(self.inputs)]
        recv_post = time.perf_counter()
        received, arrivals = self._receive()
        compute_start = time.perf_counter()
        values, timing = self.program.compute(feeds, received, self.collectives)
        send_wait_s = self._drain()
        send_post = time.perf_counter()
        self.pending = post_sends(self.outbound, values)
        if keep and self.program.outputs:
            self._keep_outputs(microbatch, values)
        return {
            "mb": microbatch, "recv_post": recv_post, "arrivals": arrivals,
            "compute_start": compute_start, "compute_s": timing.compute_s,
            "collectives": [list(c) for c in timing.collectives],
            "gathered": [list(c) for c in timing.gathered],
            "send_wait_s": send_wait_s, "send_post": send_post, "end": time.perf_counter(),
        }  # fmt: skip

    def round(self, microbatches: range, keep: bool) -> tuple[list[dict[str, Any]], float, float]:
        try:
            dist.barrier()  # the flush: every rank finished the round before
        except RuntimeError as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise PeerError(
                f"waiting for every rank to finish micro-batches before {microbatches.start}: "
                f"{first[:300]}"
            ) from None
        start = time.perf_counter()
        steps = [self.step(m, keep) for m in microbatches]
        self._drain()
        return steps, start, time.perf_counter()


def _engine_config(args: argparse.Namespace) -> tuple[EngineConfig, str]:
    """gloo and onnxruntime's CPU provider; with CUDA, NCCL and the CUDA provider on this
    rank's GPU (LOCAL_RANK), when onnxruntime has it (the NumPy engine stays on the host).

    The CUDA path has not run on a GPU yet: no GPU was lent to the sessions that wrote it.
    """
    import onnxruntime as ort
    import torch

    if not torch.cuda.is_available():
        return EngineConfig(args.threads), "gloo"
    device = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
    torch.cuda.set_device(device)
    use_device(torch.device("cuda", device))
    on_gpu = args.engine == "ort" and "CUDAExecutionProvider" in ort.get_available_providers()
    return EngineConfig(args.threads, device if on_gpu else None), "nccl"


def _rounds(requests: int, microbatches: int) -> list[range]:
    return [range(k, min(k + microbatches, requests)) for k in range(0, requests, microbatches)]


def _stream_all(stream: _Stream, args: argparse.Namespace, m: int, n: int) -> RankRecord:
    if args.warmup:
        stream.round(range(args.warmup), keep=False)
    steps: list[dict[str, Any]] = []
    rounds: list[tuple[float, float]] = []
    for k, microbatches in enumerate(_rounds(n, m)):
        done, start, end = stream.round(microbatches, keep=True)
        steps += [{**s, "round": k} for s in done]
        rounds.append((start, end))
    return RankRecord(stream.rank, rounds, steps)


def _run(args: argparse.Namespace, rank: int, world: int) -> int:
    inputs = load_run(args.model, args.plan)
    layout = inputs.layout
    if world != layout.world_size:
        raise PartitionError(
            f"the plan runs as {layout.world_size} ranks, but {world} were started "
            f"(torchrun --nproc-per-node {layout.world_size})"
        )
    m = args.microbatches or inputs.plan.parallelism.microbatches
    n = args.requests or m
    config, backend = _engine_config(args)
    args.backend = backend
    dist.init_process_group(backend, timeout=timedelta(seconds=args.timeout))
    try:
        program = RankProgram(inputs, rank, args.engine, config)
        stream = _Stream(program, layout, rank, args.seed, min(n, DISTINCT_INPUTS))
        record = _stream_all(stream, args, m, n)
        gathered: list[Any] = [None] * world if rank == 0 else []
        mine = (record, stream.outputs, stream.repeats)
        dist.gather_object(mine, gathered if rank == 0 else None, dst=0)
        if rank != 0:
            return 0
        return finish_run(inputs, args, gathered, [len(r) for r in _rounds(n, m)])
    finally:
        dist.destroy_process_group()


def _say(rank: int, message: str) -> None:
    print(f"{ERROR_PREFIX}rank {rank}: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m partitioner.runtime.worker")
    add_worker_arguments(parser)
    args = parser.parse_args(argv)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    try:
        return _run(args, rank, world)
    except PartitionError as error:
        _say(rank, str(error))
        return getattr(error, "exit_code", 2)
    except (RuntimeError, ValueError) as error:  # torch.distributed: a peer died or timed out
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        _say(rank, f"{first[:400]}")
        return RANK_FAILED


if __name__ == "__main__":
    sys.exit(main())
