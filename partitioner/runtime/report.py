"""What a run measured, per stage, beside what the plan estimated.

Every rank records, per timed micro-batch, when it started waiting for its
inputs, when each arrived, its compute (collectives apart), and how long it
was blocked on its previous sends. From these, per stage and micro-batch:

- ``compute_s``: kernels (the stage's first rank; a group's ranks run alike);
- ``collective_s``: inside the plan's collectives. A tensor-parallel group's gathers
  of its split outputs (a KV cache split by heads, made whole for rank 0's check)
  are in neither: the plan has none, as a serving runtime keeps them split. The
  trace shows them as ``gather``;
- ``recv_s``: the transfer itself, from the later of the sender posting it
  and the receiver waiting for it, to its arrival (the slowest input);
- ``idle_s``: the rest of the wait for inputs (the pipeline bubble: the
  stage before was still computing);
- ``send_s``: blocked on its previous sends.

Times come from each process's ``perf_counter`` (CLOCK_MONOTONIC, one clock
for every process of a machine); across machines the transfer times would
carry the clocks' offset. Estimates are the plan's own per-stage seconds, as
`partition simulate` reports them; the throughput estimate is the simulator's
schedule (`partitioner.simulate.schedule.makespan_s`) of the same rounds.
Nothing here imports torch.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from partitioner.plan import HOST, Plan
from partitioner.runtime.layout import RankLayout
from partitioner.simulate import PipelineReport, SimulationReport, simulate_plan
from partitioner.simulate.schedule import makespan_s
from partitioner.simulate.trace import TraceSpan

__all__ = ["RankRecord", "StageFigures", "stage_figures", "throughput_figures", "rank_spans"]

PHASES = ("compute_s", "collective_s", "recv_s", "send_s")


@dataclass(frozen=True)
class RankRecord:
    """One rank's timings: each round's (start, end) and one dict per timed micro-batch."""

    rank: int
    rounds: list[tuple[float, float]]
    steps: list[dict[str, Any]]


@dataclass(frozen=True)
class StageFigures:
    """Seconds per micro-batch of one stage, measured (mean) and estimated by the plan."""

    stage: int
    ranks: tuple[int, ...]
    partitions: tuple[int, ...]
    compute_s: float
    collective_s: float
    recv_s: float
    send_s: float
    idle_s: float
    estimated: Mapping[str, float]

    @property
    def busy_s(self) -> float:
        return self.compute_s + self.collective_s + self.recv_s + self.send_s

    def ratio(self, phase: str) -> float | None:
        """Measured / estimated for ``phase`` ("busy" for their sum); None without an estimate."""
        measured = self.busy_s if phase == "busy" else getattr(self, phase)
        estimate = (
            sum(self.estimated[p] for p in PHASES) if phase == "busy" else self.estimated[phase]
        )
        return measured / estimate if estimate > 0 else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["estimated"] = dict(self.estimated)
        out["ratio"] = {p: self.ratio(p) for p in (*PHASES, "busy")}
        return out


def _stage_estimates(
    plan: Plan, layout: RankLayout, report: SimulationReport | None
) -> dict[int, dict[str, float]]:
    """Per stage: the plan's compute, collective, receive and send seconds per item."""
    report = report or simulate_plan(plan)
    by_partition = (
        {s.partition: s for s in report.stages} if isinstance(report, PipelineReport) else {}
    )
    stage_of = {pid: role.stage for role in layout.roles for pid in role.partitions}
    out = {s: dict.fromkeys(PHASES, 0.0) for s in range(layout.num_stages)}
    for p in plan.partitions:
        figures = out[stage_of[p.id]]
        if p.id in by_partition:  # GPU: what `partition simulate` prints
            load = by_partition[p.id]
            for phase in PHASES:
                figures[phase] += getattr(load, phase)
            continue
        figures["compute_s"] += p.compute_s
    if not by_partition:  # wafer: transfers between stages (wafers)
        for t in plan.transfers:
            if HOST in (t.src, t.dst) or stage_of[t.src] == stage_of[t.dst]:
                continue
            out[stage_of[t.src]]["send_s"] += t.time_s
            out[stage_of[t.dst]]["recv_s"] += t.time_s
    return out


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def _transfer_s(
    step: Mapping[str, Any], senders: Sequence[Mapping[int, Mapping[str, Any]]]
) -> float:
    """The slowest input's own transfer time in one micro-batch (0 with no inputs)."""
    longest = 0.0
    for arrival, sent in zip(step["arrivals"], senders, strict=True):
        posted = sent[step["mb"]]["send_post"]
        longest = max(longest, arrival - max(posted, step["recv_post"]))
    return longest


def stage_figures(
    plan: Plan,
    layout: RankLayout,
    records: Sequence[RankRecord],
    report: SimulationReport | None = None,
) -> list[StageFigures]:
    """Per stage, measured means beside the plan's estimates (``report``: the plan's
    simulation, made here when not given)."""
    by_rank = {r.rank: {s["mb"]: s for s in r.steps} for r in records}
    estimates = _stage_estimates(plan, layout, report)
    out = []
    for stage in range(layout.num_stages):
        ranks = layout.stage_ranks(stage)
        first = ranks[0]
        steps = list(by_rank[first].values())
        senders = [by_rank[route.src_rank] for route in layout.inbound(first)]
        transfer = [_transfer_s(s, senders) for s in steps]
        wait = [s["compute_start"] - s["recv_post"] for s in steps]
        collective = [
            _mean([sum(c[2] for c in by_rank[r][s["mb"]]["collectives"]) for r in ranks])
            for s in steps
        ]
        out.append(
            StageFigures(
                stage,
                ranks,
                layout.roles[first].partitions,
                compute_s=_mean(
                    [_mean([by_rank[r][s["mb"]]["compute_s"] for r in ranks]) for s in steps]
                ),
                collective_s=_mean(collective),
                recv_s=_mean(transfer),
                send_s=_mean([s["send_wait_s"] for s in steps]),
                idle_s=_mean([max(0.0, w - t) for w, t in zip(wait, transfer, strict=True)]),
                estimated=estimates[stage],
            )  # fmt: skip
        )
    return out


def throughput_figures(
    plan: Plan,
    records: Sequence[RankRecord],
    round_sizes: Sequence[int],
    report: SimulationReport | None = None,
) -> dict[str, Any]:
    """Measured micro-batches per second over the rounds, and the simulator's prediction."""
    walls = [max(r.rounds[k][1] - r.rounds[k][0] for r in records) for k in range(len(round_sizes))]
    measured_s = sum(walls)
    report = report or simulate_plan(plan)
    predicted_s = None
    if isinstance(report, PipelineReport):
        predicted_s = sum(makespan_s(report.stages, report.period_s, n) for n in round_sizes)
    items = sum(round_sizes)
    return {
        "microbatches": items,
        "rounds": len(round_sizes),
        "measured_s": measured_s,
        "measured_per_s": items / measured_s if measured_s > 0 else None,
        "predicted_s": predicted_s,
        "predicted_per_s": items / predicted_s if predicted_s else None,
        "round_s": walls,
    }


def rank_spans(layout: RankLayout, records: Sequence[RankRecord]) -> list[TraceSpan]:
    """The measured timeline, one track per rank, from the first round's start."""
    origin = min(r.rounds[0][0] for r in records if r.rounds)
    spans = []
    for record in records:
        name = layout.describe(record.rank)
        for s in record.steps:
            compute_end = s["send_post"] - s["send_wait_s"]
            args = {"microbatch": s["mb"], "round": s.get("round", 0)}
            pieces = (
                [
                    ("recv", s["recv_post"], s["compute_start"] - s["recv_post"]),
                    ("compute", s["compute_start"], compute_end - s["compute_start"]),
                    ("send", compute_end, s["send_wait_s"]),
                ]
                + [("collective", start, seconds) for _, start, seconds in s["collectives"]]
                + [("gather", start, seconds) for _, start, seconds in s.get("gathered", ())]
            )
            spans += [
                TraceSpan(
                    record.rank, name, f"{kind} mb {s['mb']}", kind, start - origin, seconds, args
                )
                for kind, start, seconds in pieces
                if seconds > 0
            ]
    return spans
