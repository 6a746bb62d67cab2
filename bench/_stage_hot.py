"""Each stage of a pipeline plan timed alone, in a hot loop, as `partition run` builds it.

`partition run` times a stage while its ranks take turns: a later stage blocks on its
receive while the stage before computes, and on this VM a core left idle for a
millisecond runs its next burst measurably slower (BENCHMARKS, "Why the tiny Llama's
stages run slow in `partition run`: idle wake-up"). That is the machine, not the
stage's compute, and it swamps sub-millisecond stages. Here each rank's program (the
same `RankProgram`, engine and thread count) runs on inputs made by chaining the
stages once, then again ``repeats`` times back to back; the median is the stage's
compute with no idle gap before it, which is what calibrate's figures describe.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from partitioner.runtime.engines import EngineConfig
from partitioner.runtime.program import RankProgram, load_run

__all__ = ["hot_stage_seconds"]


def hot_stage_seconds(model: Path, plan: Path, repeats: int = 50, seed: int = 0) -> list[float]:
    """Median compute seconds of each rank's stage, rank by rank; one rank per stage
    (``--tp 1``), since a tensor-parallel group needs its collectives to run."""
    run = load_run(model, plan)
    if any(role.degree > 1 for role in run.layout.roles):
        raise ValueError("hot stage timing needs one rank per stage (--tp 1)")
    programs = [RankProgram(run, rank, "ort", EngineConfig(threads=1))
                for rank in range(len(run.layout.roles))]  # fmt: skip
    feeds = programs[0].feeds(seed, 0)
    received: list[dict] = []
    values: dict = {}
    for program in programs:  # chain once: each stage's inputs as it would receive them
        received.append(dict(values))
        outputs, _ = program.compute(feeds, values, None)
        values = {**values, **outputs}
    seconds = []
    for program, inbound in zip(programs, received, strict=True):
        program.compute(feeds, inbound, None)  # warm: sessions built, caches filled
        runs = [program.compute(feeds, inbound, None)[1].compute_s for _ in range(repeats)]
        seconds.append(statistics.median(runs))
    return seconds
