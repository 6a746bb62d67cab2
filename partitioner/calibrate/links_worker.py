"""One rank of the link micro-benchmarks (run as a process by `partitioner.calibrate.links`).

Rank 0 and rank 1 ping-pong a 4-byte and a 4 MiB message (one-way time is half
the round trip); then every rank all-reduces 4 bytes and 16 MiB. Last, the
ranks form a pipeline, each receiving a step from the one before, running a
one-op onnxruntime model and sending on, and time the run alone: what a stage
pays per step while its neighbours pass messages (gloo's threads share the
cores); and every rank streams memory at once (`host.stream_rate`), what each
gets of a memory system they share. Rank 0 writes the medians (seconds; the
step time and the bandwidth of the slowest rank) as JSON to OUT.

    python -m partitioner.calibrate.links_worker RANK WORLD PORT OUT BACKEND [THREADS]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

SMALL, LARGE_P2P, LARGE_REDUCE = 4, 4 << 20, 16 << 20


def _pingpong(rank: int, nbytes: int, repeats: int, device: torch.device) -> float:
    buffer = torch.zeros(nbytes, dtype=torch.uint8, device=device)
    times = []
    for _ in range(repeats + 1):
        if rank > 1:
            continue
        start = time.perf_counter()
        if rank == 0:
            dist.send(buffer, 1)
            dist.recv(buffer, 1)
        else:
            dist.recv(buffer, 0)
            dist.send(buffer, 0)
        times.append((time.perf_counter() - start) / 2)
    return statistics.median(times[1:]) if times else 0.0


def _all_reduce(nbytes: int, repeats: int, device: torch.device) -> float:
    tensor = torch.zeros(nbytes // 4, dtype=torch.float32, device=device)
    times = []
    for _ in range(repeats + 1):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(tensor)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def _pipelined_step(rank: int, world: int, repeats: int) -> float:
    """Median seconds of a one-op ``session.run`` on each rank of a running pipeline."""
    from partitioner.calibrate.host import STEP_ELEMENTS, session, step_model

    run = session(step_model(), 1)
    buffer = torch.zeros(STEP_ELEMENTS, dtype=torch.float32)
    times = []
    for _ in range(repeats + 1):
        if rank > 0:
            dist.recv(buffer, rank - 1)
        start = time.perf_counter()
        run.run(None, {"x": buffer.numpy()})
        times.append(time.perf_counter() - start)
        if rank < world - 1:
            dist.send(buffer, rank + 1)
    slowest = torch.tensor([statistics.median(times[1:])], dtype=torch.float64)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    return float(slowest.item())


def _stream_together(threads: int) -> float:
    """Bytes per second of `host.stream_rate` on every rank at once, the slowest rank's:
    ranks on one host share its memory system, and a pipeline's stages stream at once."""
    from partitioner.calibrate.host import stream_rate

    stream_rate(threads, repeats=1)  # allocate and warm up before the ranks start together
    dist.barrier()
    rate = torch.tensor([stream_rate(threads, repeats=15).value], dtype=torch.float64)
    dist.all_reduce(rate, op=dist.ReduceOp.MIN)
    return float(rate.item())


def main(argv: list[str]) -> int:
    rank, world, port, out, backend = int(argv[0]), int(argv[1]), argv[2], argv[3], argv[4]
    threads = int(argv[5]) if len(argv) > 5 else 1
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=rank, world_size=world)
    figures = {
        "p2p_small_s": _pingpong(rank, SMALL, 200, device),
        "p2p_large_s": _pingpong(rank, LARGE_P2P, 20, device),
        "reduce_small_s": _all_reduce(SMALL, 100, device),
        "reduce_large_s": _all_reduce(LARGE_REDUCE, 10, device),
    }
    if backend == "gloo":  # a CPU rank's step: onnxruntime on the host
        figures["step_s"] = _pipelined_step(rank, world, 300)
        figures["stream_together_bytes_per_s"] = _stream_together(threads)
    dist.barrier()
    dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
