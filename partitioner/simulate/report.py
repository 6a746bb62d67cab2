"""What every simulation report offers, whichever simulator made it.

`simulate_plan`, ``partition simulate`` and its picture take a
`SimulationReport`; only the tables and figures that really differ by kind
(stages and device links of a GPU pipeline, regions and fabric links of a
wafer) look at `PipelineReport` or `FabricReport`, each from one small
dispatch function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, Protocol, Self, runtime_checkable

from partitioner.plan import Bottleneck

__all__ = ["SimulationReport", "report_dict"]


@runtime_checkable
class SimulationReport(Protocol):
    """A simulated plan: the figures the plan's ``estimate`` records, and more.

    Attributes:
        kind: ``"gpu"`` or ``"wafer"``; ``to_dict()["kind"]``.
        latency_s: Seconds one item takes through the plan.
        throughput_per_s: Items per second in steady state (``inf`` for a zero period).
        period_s: Seconds between items in steady state.
        bottleneck: What limits throughput, as the plan's ``estimate.bottleneck`` records it.
        decode: LLM decode-step figures (`decode_figures`), None for other plans.
    """

    @property
    def kind(self) -> str: ...

    @property
    def latency_s(self) -> float: ...

    @property
    def throughput_per_s(self) -> float: ...

    @property
    def period_s(self) -> float: ...

    @property
    def bottleneck(self) -> Bottleneck: ...

    @property
    def decode(self) -> Mapping[str, Any] | None: ...

    def with_decode(self, figures: Mapping[str, Any]) -> Self:
        """The same report with decode-step figures."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict for ``--json``: `report_dict` of the shared figures and the kind's own."""
        ...


def report_dict(report: SimulationReport, details: Mapping[str, Any]) -> dict[str, Any]:
    """``to_dict`` of a report: the shared figures, the kind's ``details``, then ``decode``.

    JSON has no infinity, so a zero-period plan's throughput is null.
    """
    throughput = report.throughput_per_s
    return {
        "kind": report.kind,
        "latency_s": report.latency_s,
        "throughput_per_s": throughput if math.isfinite(throughput) else None,
        "period_s": report.period_s,
        "bottleneck": asdict(report.bottleneck),
        **details,
        "decode": dict(report.decode) if report.decode is not None else None,
    }
