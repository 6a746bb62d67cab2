"""Chrome trace JSON (opens in Perfetto and chrome://tracing): one track per rank or stage.

``simulate --trace`` writes the timeline the cost model predicts
(`predicted_spans`, from the simulator's own schedule); ``run --trace`` writes
the measured one in the same format, so the two sit side by side. Events are
complete events (``"ph": "X"``) in microseconds; each track is a process
(``pid``) named by a metadata event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from partitioner.simulate.gpu import PipelineReport
from partitioner.simulate.schedule import gantt_schedule

__all__ = ["TraceSpan", "chrome_trace", "predicted_spans"]


@dataclass(frozen=True)
class TraceSpan:
    """One interval on one track: ``category`` is compute, recv, send, collective, host or idle."""

    track: int
    track_name: str
    name: str
    category: str
    start_s: float
    duration_s: float
    args: Mapping[str, Any] = field(default_factory=dict)


def chrome_trace(spans: Iterable[TraceSpan], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The Chrome trace document of ``spans`` (tracks sorted, events by start)."""
    spans = sorted(spans, key=lambda s: (s.track, s.start_s))
    names = {s.track: s.track_name for s in spans}
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": track, "tid": 0, "args": {"name": name}}
        for track, name in sorted(names.items())
    ]
    events += [
        {
            "name": "process_sort_index",
            "ph": "M",
            "pid": track,
            "tid": 0,
            "args": {"sort_index": track},
        }
        for track in sorted(names)
    ]
    events += [
        {
            "name": s.name,
            "cat": s.category,
            "ph": "X",
            "pid": s.track,
            "tid": 0,
            "ts": round(s.start_s * 1e6, 3),
            "dur": round(s.duration_s * 1e6, 3),
            "args": dict(s.args),
        }
        for s in spans
    ]
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": dict(metadata)}


def predicted_spans(report: PipelineReport, items: int) -> list[TraceSpan]:
    """The simulator's schedule of ``items`` micro-batches, one track per stage."""
    return [
        TraceSpan(
            index,
            f"stage {index} (predicted)",
            f"{phase} mb {item}",
            phase,
            start,
            duration,
            {"microbatch": item, "partition": report.stages[index].partition},
        )
        for index, item, phase, start, duration in gantt_schedule(
            report.stages, report.period_s, items
        )
    ]
