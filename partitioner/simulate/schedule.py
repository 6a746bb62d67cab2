"""When each micro-batch is in each phase of each pipeline stage, as the simulator predicts.

One schedule serves the Gantt chart of ``simulate --png``, the Chrome trace of
``simulate --trace`` and the throughput ``run`` is compared with: items enter
one period apart, and each stage starts an item once the stage before has
computed it.
"""

from __future__ import annotations

from collections.abc import Sequence

from partitioner.simulate.gpu import StageLoad

__all__ = ["PHASES", "gantt_schedule", "makespan_s"]

PHASES = ("recv", "compute", "collective", "send", "host")


def gantt_schedule(
    stages: Sequence[StageLoad], period_s: float, items: int
) -> list[tuple[int, int, str, float, float]]:
    """When each item is in each phase of each stage, with one item entering per period.

    Stage i+1 receives while stage i sends, so stage i+1 starts ``recv_i +
    compute_i + collective_i`` after stage i. Every phase, and every stage's whole turn,
    lasts at most one period, so items never collide.

    Returns:
        ``(stage index, item, phase, start_s, duration_s)`` for phases that take time.
    """
    out = []
    offset = 0.0
    for index, s in enumerate(stages):
        for item in range(items):
            t = item * period_s + offset
            for phase in PHASES:
                duration = getattr(s, f"{phase}_s")
                if duration > 0:
                    out.append((index, item, phase, t, duration))
                t += duration
        offset += s.recv_s + s.compute_s + s.collective_s
    return out


def makespan_s(stages: Sequence[StageLoad], period_s: float, items: int) -> float:
    """Seconds from the first item entering to the last one leaving (0 for no items)."""
    return max(
        (start + duration for *_, start, duration in gantt_schedule(stages, period_s, items)),
        default=0.0,
    )
