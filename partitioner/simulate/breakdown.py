"""Lines for a GPU plan's ``estimate.extra["time_breakdown"]``: where one step's time goes.

The planner records the breakdown (compute-bound, memory-bound, launches,
collective latency and bandwidth, pipeline transfers; per stage and per step)
and ``partition simulate`` prints it. The formatter lives here, in the simulate
package, because simulate may not import the planner; the planner may import it.

The breakdown is read as plain JSON from a plan that may have been edited by
hand, so a bucket that is missing or not a number is left out, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "BREAKDOWN_LABELS",
    "bottleneck_cell",
    "bottleneck_words",
    "breakdown_label",
    "breakdown_link",
    "breakdown_lines",
]

#: Bucket key -> its words; ``{link}`` is the collectives' link name(s).
BREAKDOWN_LABELS = {
    "compute_bound_s": "compute (FLOP-bound ops)",
    "memory_bound_s": "HBM traffic (memory-bound ops)",
    "launch_s": "kernel launches",
    "collective_latency_s": "{link} collective latency",
    "collective_bandwidth_s": "{link} collective bandwidth",
    "transfer_s": "pipeline transfers",
}

#: The two op buckets' words on a device that computes and moves memory in turn
#: (``compute_memory_overlap: false``, a CPU thread; the breakdown's ``in_turn``):
#: every op pays both terms, so neither bucket is a set of bound ops, and its memory
#: is not necessarily HBM.
IN_TURN_LABELS = {
    "compute_bound_s": "compute (every op's FLOPs)",
    "memory_bound_s": "memory traffic (every op's bytes, in turn with compute)",
}


def breakdown_label(key: str, link: str, in_turn: bool = False) -> str:
    """The words for bucket ``key`` of a breakdown (`BREAKDOWN_LABELS`, `IN_TURN_LABELS`)."""
    label = IN_TURN_LABELS.get(key) if in_turn else None
    return (label or BREAKDOWN_LABELS[key]).format(link=link)


def _number(value: object) -> float | None:
    """A JSON number as a float (None for anything else, booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def breakdown_link(breakdown: Mapping[str, Any]) -> str:
    """The collectives' link names, "/"-joined ("NVLink4", "NVLink4/IB"), or "link"."""
    stages = breakdown.get("stages")
    names = {
        s.get("link")
        for s in (stages if isinstance(stages, list) else [])
        if isinstance(s, Mapping) and isinstance(s.get("link"), str) and s.get("link")
    }
    return "/".join(sorted(names)) or "link"


def breakdown_lines(breakdown: object) -> list[str]:
    """Human lines for a plan's ``time_breakdown``; none when it is not a mapping.

    "where the step goes: compute (FLOP-bound ops) 3%, kernel launches 65%, ..."
    (the buckets the step spends time on, as shares of the step), then
    "largest share: kernel launches: 65% of the step" from its ``dominant``.
    """
    if not isinstance(breakdown, Mapping):
        return []
    link = breakdown_link(breakdown)
    step = breakdown.get("step")
    shares = breakdown.get("shares")
    step = step if isinstance(step, Mapping) else {}
    shares = shares if isinstance(shares, Mapping) else {}
    in_turn = breakdown.get("in_turn") is True
    parts = []
    for key in BREAKDOWN_LABELS:
        seconds, share = _number(step.get(key)), _number(shares.get(key))
        if seconds is not None and seconds > 0 and share is not None:
            parts.append(f"{breakdown_label(key, link, in_turn)} {100 * share:.0f}%")
    lines = [f"where the step goes: {', '.join(parts)}"] if parts else []
    dominant = breakdown.get("dominant")
    if isinstance(dominant, str) and dominant:
        lines.append(f"largest share: {dominant}")
    return lines


def _stage_entry(breakdown: Mapping[str, Any], stage: int) -> Mapping[str, Any] | None:
    stages = breakdown.get("stages")
    for entry in stages if isinstance(stages, list) else []:
        if isinstance(entry, Mapping) and entry.get("stage") == stage:
            return entry
    return None


def _stage_top(where: str, breakdown: object) -> tuple[str, float] | None:
    """The bucket stage ``where`` ("stage 3") spends most of its time on, and its share of
    the stage's time; None when the breakdown does not have that stage."""
    prefix = "stage "
    if not where.startswith(prefix) or not isinstance(breakdown, Mapping):
        return None
    try:
        entry = _stage_entry(breakdown, int(where[len(prefix) :]))
    except ValueError:
        return None
    if entry is None:
        return None
    seconds = {k: _number(entry.get(k)) for k in BREAKDOWN_LABELS}
    known = {k: v for k, v in seconds.items() if v is not None and v >= 0}
    total = sum(known.values())
    if total <= 0:
        return None
    top = max(known, key=lambda k: (known[k], -list(BREAKDOWN_LABELS).index(k)))
    link = entry.get("link") if isinstance(entry.get("link"), str) and entry.get("link") else "link"
    return breakdown_label(top, link, breakdown.get("in_turn") is True), known[top] / total


def bottleneck_words(kind: str, where: str, breakdown: object) -> str:
    """The bottleneck as a person reads it: "compute (stage 0)", or, when the plan's
    breakdown has the stage, what the stage spends most of its time on, since a
    "compute" stage's busy time holds its collectives too:
    "stage 0, NVLink4 collective latency 62% of its time"."""
    top = _stage_top(where, breakdown) if kind == "compute" else None
    if top is None:
        return f"{kind} ({where})"
    return f"{where}, {top[0]} {100 * top[1]:.0f}% of its time"


def bottleneck_cell(kind: str, where: str, breakdown: object) -> str:
    """The bottleneck in a table cell: what the slowest stage spends most on, and where
    ("NVLink4 collective latency, stage 0"), or the plan's kind ("compute, region 12 on
    wafer 0") where the breakdown says nothing of it."""
    top = _stage_top(where, breakdown) if kind == "compute" else None
    return f"{kind if top is None else top[0]}, {where}"
