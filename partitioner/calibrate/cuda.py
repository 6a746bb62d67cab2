"""Micro-benchmarks of this machine's GPU through torch (``calibrate --device cuda``).

The same figures as `host` measures on a CPU, with CUDA events around each
timed loop: matmul FLOP/s per dtype (best of a few shapes), the bandwidth of
a 1 GiB device-to-device copy (one read and one write per byte), and the
time per kernel of a chain of tiny adds (launch overhead). Not yet run on a
GPU: no GPU was lent to the sessions that wrote it.
"""

from __future__ import annotations

import torch

from partitioner.calibrate.host import Measured
from partitioner.calibrate.target import Calibration
from partitioner.errors import UsageError

__all__ = [
    "calibrate_cuda",
    "device_facts",
    "gemm_rates",
    "copy_rate",
    "mean_seconds",
    "per_op_overhead",
]

GEMM_SHAPES = ((8, 8192, 8192), (4096, 4096, 4096), (8192, 8192, 8192))
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def mean_seconds(run, repeats: int) -> float:
    """Mean seconds of ``run`` over ``repeats`` calls on the GPU (CUDA events), after one."""
    run()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        run()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / repeats


def device_facts() -> tuple[str, int]:
    """The GPU's name and memory in bytes."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return props.name, int(props.total_memory)


def gemm_rates(repeats: int = 20) -> dict[str, Measured]:
    out = {}
    for name, dtype in DTYPES.items():
        rates = {}
        for m, k, n in GEMM_SHAPES:
            a = torch.randn(m, k, device="cuda", dtype=dtype)
            b = torch.randn(k, n, device="cuda", dtype=dtype)
            rates[(m, k, n)] = 2 * m * k * n / mean_seconds(lambda a=a, b=b: a @ b, repeats)
        (m, k, n), best = max(rates.items(), key=lambda item: item[1])
        out[name] = Measured(
            best, f"torch.matmul {name} on CUDA, mean of {repeats}, best shape {m}x{k}x{n}"
        )
    return out


def copy_rate(repeats: int = 20) -> Measured:
    nbytes = 1 << 30
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    seconds = mean_seconds(lambda: dst.copy_(src), repeats)
    return Measured(2 * nbytes / seconds, f"torch copy_ of 1 GiB on the device, mean of {repeats}")


def per_op_overhead(ops: int = 200) -> Measured:
    x = torch.zeros(1, device="cuda")

    def chain() -> None:
        y = x
        for _ in range(ops):
            y = y + 1

    seconds = mean_seconds(chain, 10) / ops
    return Measured(seconds, f"torch chain of {ops} adds on 1 element on CUDA, per kernel")


def calibrate_cuda(ranks: int) -> Calibration:
    """This machine's GPU 0 measured, for a target of ``ranks`` such GPUs (links apart).

    Raises:
        UsageError: no CUDA device, or fewer GPUs than ``ranks``.
    """
    if not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device here; calibrate the CPU instead")
    if ranks > torch.cuda.device_count():
        raise UsageError(f"--ranks {ranks}: this machine has {torch.cuda.device_count()} GPUs")
    name, memory = device_facts()
    launch = per_op_overhead()
    # a fused runtime replays a decode step as one CUDA graph: one launch a step, as the
    # presets assume (`targets.presets`), here at the launch just measured
    step = Measured(launch.value, f"one launch a step (a CUDA-graph replay): {launch.how}")
    return Calibration(
        name, Measured(memory, "torch.cuda device properties"), gemm_rates(),
        copy_rate(), launch, ranks, step_overhead=step,
    )  # fmt: skip
