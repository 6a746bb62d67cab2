"""What the GPU and wafer simulators share: errors, plan checks and the decode-step figures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from partitioner.plan import HOST, Partition, Transfer
from targets.cost import CostModel
from targets.errors import PartitionError

__all__ = [
    "SimulateError",
    "check_transfer_ends",
    "decode_figures",
    "devices_in_use",
    "partition_positions",
    "utilisation",
]


class SimulateError(PartitionError):
    """A plan cannot be simulated: a transfer names a missing partition, a region is missing, ..."""


def partition_positions(partitions: Sequence[Partition]) -> dict[int, int]:
    """Partition id -> its index in plan order (ids must be unique)."""
    position: dict[int, int] = {}
    for index, p in enumerate(partitions):
        if p.id in position:
            raise SimulateError(f"partition id {p.id} appears twice; run `partition validate`")
        position[p.id] = index
    return position


def check_transfer_ends(t: Transfer, position: Mapping[int, int]) -> None:
    """Raise a one-line `SimulateError` if a transfer names a missing partition."""
    for end in (t.src, t.dst):
        if end != HOST and end not in position:
            raise SimulateError(
                f"transfer of '{t.tensor}' names partition {end}, which the plan does not have; "
                "run `partition validate`"
            )
    if t.src == t.dst:
        raise SimulateError(
            f"transfer of '{t.tensor}' goes from {t.src} to itself; run `partition validate`"
        )


def devices_in_use(partitions: Iterable[Partition]) -> list[int]:
    """The devices (GPUs or wafers) the partitions use, in order of first use."""
    return list(dict.fromkeys(p.device for p in partitions))


def utilisation(busy_s: float, period_s: float) -> float:
    """Fraction of each period something is busy (0 when the period is 0)."""
    return busy_s / period_s if period_s > 0 else 0.0


def decode_figures(
    batch: int,
    latency_s: float,
    throughput_per_s: float,
    cost: CostModel,
    devices: Sequence[int],
) -> dict[str, object]:
    """Figures of an LLM decode step that makes ``batch`` tokens per run.

    With one batch in flight a request waits a whole pass per token
    (``s_per_token`` = latency); with the pipeline full it makes ``batch ×
    throughput`` tokens per second. ``usd_per_token`` appears only when every
    device used has a price.
    """
    figures: dict[str, object] = {
        "llm_decode_step": True,
        "batch": batch,
        "s_per_token": latency_s,
        "tokens_per_s_per_stream": 1.0 / latency_s if latency_s > 0 else 0.0,
        "tokens_per_s": batch * throughput_per_s,
    }
    usd = (
        cost.usd_per_token(figures["tokens_per_s"], list(devices))  # type: ignore[arg-type]
        if throughput_per_s > 0
        else None
    )
    if usd is not None:
        figures["usd_per_token"] = usd
    return figures
