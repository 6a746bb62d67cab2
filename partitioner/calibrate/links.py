"""Send/recv and all-reduce latency and bandwidth through torch.distributed, measured.

Starts ``ranks`` local processes (`links_worker`; gloo on CPU, NCCL on CUDA)
and turns their medians into link figures: the latency is the one-way time of
a 4-byte message; the bandwidth is what a 4 MiB message adds on top of it; the
all-reduce's bus bandwidth divides the bytes each rank sends in the ring
(`targets.formulas.collective_bytes_sent`, the cost model's own count) by
what a 16 MiB all-reduce adds to a 4-byte one. Needs torch.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from partitioner.calibrate.host import STREAM_ELEMENTS, Measured
from targets.errors import PartitionError
from targets.formulas import collective_bytes_sent

__all__ = ["LinkFigures", "RankFigures", "measure_links", "step_in_pipeline"]

SMALL, LARGE_P2P, LARGE_REDUCE = 4, 4 << 20, 16 << 20

LinkFigures = dict[str, Measured]


@dataclass(frozen=True)
class RankFigures:
    """What local ranks measured together: their links; on CPU (gloo) also a step's
    overhead among them and the memory bandwidth each gets while all stream at once."""

    links: LinkFigures
    step: Measured | None = None
    contended_bandwidth: Measured | None = None


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_ranks(ranks: int, backend: str, timeout_s: float, threads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="partition-calibrate-") as folder:
        out, port = Path(folder) / "links.json", str(_port())
        command = [sys.executable, "-m", "partitioner.calibrate.links_worker"]
        processes = [
            subprocess.Popen(
                [*command, str(r), str(ranks), port, str(out), backend, str(threads)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for r in range(ranks)
        ]
        try:
            errors = [p.communicate(timeout=timeout_s)[1] for p in processes]
        except subprocess.TimeoutExpired:
            raise PartitionError(f"the link benchmark took over {timeout_s:g} s") from None
        finally:
            for p in processes:
                p.kill()
        if any(p.returncode for p in processes) or not out.exists():
            said = next((e.strip().splitlines()[-1] for e in errors if e.strip()), "no output")
            raise PartitionError(f"the link benchmark failed: {said[:300]}")
        return json.loads(out.read_text())


def step_in_pipeline(raw: dict[str, float], ranks: int) -> Measured | None:
    """The per-step overhead the gloo workers measured (None from NCCL workers)."""
    if "step_s" not in raw:
        return None
    return Measured(
        raw["step_s"],
        f"onnxruntime CPU session.run of a one-op model on each of {ranks} local ranks "
        "passing steps along a torch.distributed gloo pipeline, median, slowest rank",
    )


def measure_links(
    ranks: int, backend: str, timeout_s: float = 120.0, threads: int = 1
) -> RankFigures:
    """Point-to-point and all-reduce figures between ``ranks`` local processes, and on
    CPU (gloo) the per-step overhead of a rank among them and the bandwidth each gets
    while all stream at once (``threads`` each)."""
    raw = _run_ranks(ranks, backend, timeout_s, threads)
    how = f"torch.distributed {backend}, {ranks} local processes, median"
    p2p_latency = raw["p2p_small_s"]
    reduce_latency = raw["reduce_small_s"]
    bus_bytes = collective_bytes_sent("all_reduce", LARGE_REDUCE, ranks)
    links = {
        "latency_s": Measured(p2p_latency, f"{how}: one-way time of a {SMALL} B send/recv"),
        "bandwidth_bytes_per_s": Measured(
            LARGE_P2P / max(raw["p2p_large_s"] - p2p_latency, 1e-9),
            f"{how}: a {LARGE_P2P >> 20} MiB send/recv beyond the latency",
        ),
        "collective_latency_s": Measured(reduce_latency, f"{how}: a {SMALL} B all_reduce"),
        "collective_bandwidth_bytes_per_s": Measured(
            bus_bytes / max(raw["reduce_large_s"] - reduce_latency, 1e-9),
            f"{how}: ring bytes each rank sends in a {LARGE_REDUCE >> 20} MiB all_reduce "
            "over its time beyond the latency (busbw)",
        ),
    }
    return RankFigures(links, step_in_pipeline(raw, ranks), _stream_together(raw, ranks, threads))


def _stream_together(raw: dict[str, float], ranks: int, threads: int) -> Measured | None:
    if "stream_together_bytes_per_s" not in raw:
        return None
    return Measured(
        raw["stream_together_bytes_per_s"],
        f"onnxruntime CPU Add of two {4 * STREAM_ELEMENTS >> 20} MiB float32 arrays on each "
        f"of {ranks} local ranks at once, {threads} thread(s) each, median, slowest rank",
    )
