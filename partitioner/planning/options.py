"""Planning options, typed per target kind.

A GPU pipeline and a wafer floorplan take different knobs: micro-batches and
transfer overlap mean nothing on a wafer, regions and tiles nothing on GPUs.
Each kind has its own frozen options class, so a flag cannot be silently
ignored, and every value is checked once, here, for the CLI and the Python API
alike (`UsageError`, one line).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from partitioner.errors import UsageError

__all__ = [
    "GPU_SOLVERS",
    "WAFER_SOLVERS",
    "OBJECTIVES",
    "MAX_MICROBATCHES",
    "GpuOptions",
    "WaferOptions",
    "PlanOptions",
]

GPU_SOLVERS = ("cpsat", "dp", "greedy", "params", "uniform")
WAFER_SOLVERS = ("cpsat", "snake", "blind")
OBJECTIVES = ("auto", "throughput", "latency")
"""``auto``: latency per step for LLM decode-step graphs (what one stream waits for),
throughput for everything else; plans record the objective it resolved to."""
MAX_MICROBATCHES = 1 << 16
"""Far above any pipeline depth, and small enough that memory stays within CP-SAT's int64."""


def _check_whole(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{flag} {value}: give a whole number of at least 1")


@dataclass(frozen=True)
class _CommonOptions:
    """What every planner takes.

    Attributes:
        devices: None or "all" for every device of the target, "auto" for the
            fewest that fit, or a count.
        time_limit_s: CP-SAT budget in deterministic seconds; None for the
            planner's default.
        command: the command line recorded in the plan's provenance.
    """

    devices: int | str | None = None
    solver: str = "cpsat"
    objective: str = "auto"
    time_limit_s: float | None = None
    seed: int = 0
    command: str = ""

    kind: ClassVar[str] = ""
    solvers: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if self.solver not in self.solvers:
            raise UsageError(
                f"--solver {self.solver}: on {self.kind} targets choose one of {', '.join(self.solvers)}"
            )
        if self.objective not in OBJECTIVES:
            raise UsageError(f"--objective {self.objective}: choose one of {', '.join(OBJECTIVES)}")
        limit = self.time_limit_s
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise UsageError(f"--time-limit {limit:g}: give a positive, finite number of seconds")
        if not 0 <= self.seed < 2**31:  # CP-SAT's seed is a 32-bit integer
            raise UsageError(
                f"--seed {str(self.seed)[:24]}: give a whole number from 0 to {2**31 - 1}"
            )
        # A count is checked against the target's devices when planning starts.
        if not isinstance(self.devices, int) and self.devices not in (None, "all", "auto"):
            raise UsageError(f"--devices {self.devices!r}: give a whole number or 'auto'")


@dataclass(frozen=True)
class GpuOptions(_CommonOptions):
    """Options of the GPU pipeline planner.

    Attributes:
        microbatches_in_flight: micro-batches resident per stage at once: the
            activation memory is counted this many times.
        overlap_transfers: transfers overlap compute (a stage's period is the
            max, not the sum).
        target_blocks: coarsen to about this many blocks (None: by device count).
        tp: tensor-parallel degree, devices per stage (None: search).
        pp: pipeline stages (None: search); tp × pp is the devices used.
        dp: replicas of the tp × pp pipeline, each on its own devices (None: one,
            or searched for the throughput objective); tp × pp × dp is the devices used.
    """

    microbatches_in_flight: int = 1
    overlap_transfers: bool = False
    target_blocks: int | None = None
    tp: int | None = None
    pp: int | None = None
    dp: int | None = None

    kind: ClassVar[str] = "gpu"
    solvers: ClassVar[tuple[str, ...]] = GPU_SOLVERS

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_whole("--microbatches", self.microbatches_in_flight)
        _check_whole("--blocks", self.target_blocks)
        _check_whole("--tp", self.tp)
        _check_whole("--pp", self.pp)
        _check_whole("--dp", self.dp)
        if self.dp is not None and self.devices == "auto":
            raise UsageError(
                "--dp with --devices auto: give the devices to use (a count, or all), "
                "which the replicas share"
            )
        if self.microbatches_in_flight > MAX_MICROBATCHES:
            raise UsageError(
                f"--microbatches {str(self.microbatches_in_flight)[:24]}: at most "
                f"{MAX_MICROBATCHES:,} micro-batches can be in flight per stage"
            )


@dataclass(frozen=True)
class WaferOptions(_CommonOptions):
    """Options of the wafer planner.

    Attributes:
        regions_per_wafer: blocks (rectangles) per wafer (None: the default, 48).
        tile_cores: floorplan in tiles of this many cores a side (None: about
            3000 tiles a wafer).
    """

    regions_per_wafer: int | None = None
    tile_cores: int | None = None

    kind: ClassVar[str] = "wafer"
    solvers: ClassVar[tuple[str, ...]] = WAFER_SOLVERS

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_whole("--regions", self.regions_per_wafer)
        _check_whole("--tile", self.tile_cores)


PlanOptions = GpuOptions | WaferOptions
