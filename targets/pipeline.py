"""Latency, throughput and bottleneck of a chain of pipeline stages.

Stage ``i`` computes for ``stage_compute_s[i]`` and then sends its outputs on
for ``stage_send_s[i]`` (to stage ``i+1``, or to the host after the last
stage). Stage 0 first receives its inputs for ``input_s``. So stage ``i``
receives for ``recv_i = stage_send_s[i-1]`` (``input_s`` for stage 0).

- Latency of one item: everything along the chain,
  ``input_s + Σ compute + Σ send``.
- Without overlap, a stage is busy receiving, computing and sending in turn
  (blocking send/recv), so its period is ``recv_i + compute_i + send_i``.
- With overlap (transfers run beside compute, by design: async copies or a
  streaming fabric), compute and each transfer are separate pipeline steps:
  the period of stage i is ``max(recv_i, compute_i, send_i)``.
- Host I/O of a stage (model inputs it receives from the host, outputs it
  returns there) takes ``stage_host_s[i]``: it adds to the stage's period like
  a transfer (another step with overlap), and to the latency.
- Steady-state throughput is 1 / the longest period. Shared links (wafer
  fabric links carrying several flows) can bound it too: pass each link's busy
  seconds per item as ``link_busy_s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PipelineEstimate", "StageBottleneck", "pipeline_estimate", "stage_recv_s"]


@dataclass(frozen=True)
class StageBottleneck:
    """What limits a stage chain's throughput, by stage or link index.

    A plan records its bottleneck as a kind and a readable place; this is the
    cost model's form, with the index and the seconds the place is named from.

    Attributes:
        kind: ``"compute"`` (a stage's compute), ``"transfer"`` (a stage's
            transfers), ``"host"`` (a stage's host I/O) or ``"link"`` (a
            shared link, see ``link_busy_s``).
        index: Stage index; for a transfer with overlap, the sending stage
            (-1 for the host input); for a link, its index in ``link_busy_s``.
        time_s: The period it imposes.
    """

    kind: str
    index: int
    time_s: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {"kind": self.kind, "index": self.index, "time_s": self.time_s}


@dataclass(frozen=True)
class PipelineEstimate:
    """Result of `pipeline_estimate`.

    Attributes:
        latency_s: Time for one item to pass the whole chain.
        throughput_per_s: Items per second in steady state (``inf`` for a zero period).
        period_s: Seconds between items in steady state (the bottleneck's time).
        stage_period_s: Each stage's own period.
        bottleneck: What sets ``period_s``.
    """

    latency_s: float
    throughput_per_s: float
    period_s: float
    stage_period_s: tuple[float, ...]
    bottleneck: StageBottleneck

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict; an infinite throughput is written as null."""
        throughput = self.throughput_per_s if math.isfinite(self.throughput_per_s) else None
        return {
            "latency_s": self.latency_s,
            "throughput_per_s": throughput,
            "period_s": self.period_s,
            "stage_period_s": list(self.stage_period_s),
            "bottleneck": self.bottleneck.to_dict(),
        }


def _check_times(name: str, values: Sequence[float]) -> list[float]:
    out = [float(v) for v in values]
    for index, value in enumerate(out):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}[{index}] must be a finite number >= 0, got {value}")
    return out


def _argmax(values: Sequence[float]) -> int:
    """Index of the first largest value."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def stage_recv_s(stage_send_s: Sequence[float], input_s: float = 0.0) -> list[float]:
    """Seconds each stage receives per item: ``input_s`` for stage 0, else what the stage before sends.

    Raises:
        ValueError: A negative or non-finite time.
    """
    send = _check_times("stage_send_s", stage_send_s)
    (first_input,) = _check_times("input_s", [input_s])
    return [first_input, *send[:-1]] if send else []


def pipeline_estimate(
    stage_compute_s: Sequence[float],
    stage_send_s: Sequence[float],
    overlap_transfers: bool,
    *,
    input_s: float = 0.0,
    link_busy_s: Sequence[float] = (),
    stage_host_s: Sequence[float] = (),
) -> PipelineEstimate:
    """Latency, throughput and bottleneck of a stage chain (rules in the module docstring).

    Ties go to the earliest stage, and to compute over transfers.

    Args:
        stage_compute_s: Compute seconds per item, per stage.
        stage_send_s: Seconds per item each stage spends sending its outputs on.
        overlap_transfers: Whether transfers overlap compute.
        input_s: Seconds to bring one item's inputs to stage 0.
        link_busy_s: Busy seconds per item of shared links that may bound throughput.
        stage_host_s: Host I/O seconds per item, per stage (default: none).

    Raises:
        ValueError: No stages, mismatched lengths, or a negative or non-finite time.
    """
    compute = _check_times("stage_compute_s", stage_compute_s)
    send = _check_times("stage_send_s", stage_send_s)
    links = _check_times("link_busy_s", link_busy_s)
    host = _check_times("stage_host_s", stage_host_s) or [0.0] * len(compute)
    (first_input,) = _check_times("input_s", [input_s])
    if not compute or len(compute) != len(send) or len(host) != len(compute):
        raise ValueError(
            f"need one send and host time per stage and at least one stage, got {len(compute)} "
            f"compute, {len(send)} send and {len(host)} host times"
        )
    recv = stage_recv_s(send, first_input)
    latency_s = first_input + sum(compute) + sum(send) + sum(host)
    if overlap_transfers:
        stage_period = [
            max(r, c, s, h) for r, c, s, h in zip(recv, compute, send, host, strict=True)
        ]
        transfers = [first_input, *send]  # transfer j is sent by stage j - 1 (-1 = host)
        worst_compute, worst_transfer, worst_host = (
            _argmax(compute),
            _argmax(transfers),
            _argmax(host),
        )
        if compute[worst_compute] >= max(transfers[worst_transfer], host[worst_host]):
            bottleneck = StageBottleneck("compute", worst_compute, compute[worst_compute])
        elif transfers[worst_transfer] >= host[worst_host]:
            bottleneck = StageBottleneck("transfer", worst_transfer - 1, transfers[worst_transfer])
        else:
            bottleneck = StageBottleneck("host", worst_host, host[worst_host])
    else:
        stage_period = [r + c + s + h for r, c, s, h in zip(recv, compute, send, host, strict=True)]
        worst = _argmax(stage_period)
        moved = recv[worst] + send[worst]
        if compute[worst] >= moved + host[worst]:
            kind = "compute"
        else:
            kind = "transfer" if moved >= host[worst] else "host"
        bottleneck = StageBottleneck(kind, worst, stage_period[worst])
    if links:
        busiest = _argmax(links)
        if links[busiest] > bottleneck.time_s:
            bottleneck = StageBottleneck("link", busiest, links[busiest])
    period_s = bottleneck.time_s
    throughput = 1.0 / period_s if period_s > 0 else math.inf
    return PipelineEstimate(latency_s, throughput, period_s, tuple(stage_period), bottleneck)
