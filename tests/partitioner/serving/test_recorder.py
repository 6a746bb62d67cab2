"""The recorder's inter-token gaps: merged into distinct gaps as they pile up, the
distribution is the one every gap recorded gives."""

from __future__ import annotations

import random

import partitioner.simulate.serving.recorder as recorder
from partitioner.simulate.serving.recorder import Recorder


def _record(rec: Recorder, draws: list[tuple[float, int]], start: int = 0) -> None:
    for k, (gap_s, count) in enumerate(draws, start):
        if k % 3:
            rec.repeated_gap(gap_s, count)
        else:
            rec.repeated_gaps([gap_s, gap_s / 2], count)


def test_merged_gaps_give_the_distribution_of_every_gap(monkeypatch):
    rng = random.Random(7)
    draws = [(rng.choice((0.01, 0.02, 0.03, 0.035)) * rng.randint(1, 4), rng.randint(0, 3))
             for _ in range(500)]  # fmt: skip
    whole = Recorder(0, 1)
    _record(whole, draws)
    # by hand: every gap and its count, summed
    expected: dict[float, int] = {}
    for k, (gap_s, count) in enumerate(draws):
        for g in (gap_s,) if k % 3 else (gap_s, gap_s / 2):
            expected[g] = expected.get(g, 0) + count
    expected = {g: c for g, c in expected.items() if c}
    values, counts = whole.itl_distribution()
    assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == {
        g: expected[g] for g in sorted(expected)
    }
    monkeypatch.setattr(recorder, "COMPACT_PAIRS", 8)
    merged, other = Recorder(0, 1), Recorder(0, 1)
    _record(merged, draws[:250])
    _record(other, draws[250:], 250)
    merged.absorb(other)
    assert len(merged._gap_values) < 100  # merged as it went: a few distinct gaps held
    again = merged.itl_distribution()
    assert again[0].tolist() == values.tolist() and again[1].tolist() == counts.tolist()
