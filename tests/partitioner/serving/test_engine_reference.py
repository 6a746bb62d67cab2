"""The engine against `reference`, a literal one-request-at-a-time simulator, on random
workloads that chunk, preempt, queue, reject and pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from partitioner.simulate.serving import Requests, ServingConfig
from partitioner.simulate.serving.engine import Engine
from partitioner.simulate.serving.steady import steady_run
from tests.partitioner.serving.costs import BulkEveryFieldCost, EveryFieldCost, LinearCost
from tests.partitioner.serving.reference import reference_run


def random_requests(seed: int, count: int, rate: float, longest: int, outputs: int = 0) -> Requests:
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1 / rate, count)
    gaps[rng.random(count) < 0.2] = 0.0  # some arrive together
    prompts = rng.integers(1, longest, count)
    return Requests(np.cumsum(gaps), prompts, rng.integers(1, outputs or longest // 2, count))


CASES = {
    # name: (config, stages, rate per second)
    "roomy": (ServingConfig(100_000), 1, 50.0),
    "chunking": (ServingConfig(100_000, max_num_batched_tokens=24), 1, 50.0),
    "preempting": (ServingConfig(160, block_size_tokens=4, max_num_batched_tokens=48), 1, 200.0),
    "few seqs": (ServingConfig(100_000, max_num_seqs=3), 1, 200.0),
    "unchunked": (
        ServingConfig(400, block_size_tokens=8, max_num_batched_tokens=40, chunked_prefill=False),
        1,
        200.0,
    ),
    "pipeline": (ServingConfig(100_000, max_num_batched_tokens=32), 3, 100.0),
    "pipeline preempting": (
        ServingConfig(200, block_size_tokens=4, max_num_batched_tokens=40),
        2,
        300.0,
    ),
    "rejecting": (ServingConfig(48, block_size_tokens=16), 1, 100.0),
    # two seats, 24 blocks, 3 stages: without the pipeline wait rule (see ordered) two
    # requests preempt themselves by turns forever
    "pipeline livelock": (
        ServingConfig(48, max_num_seqs=2, max_num_batched_tokens=8, block_size_tokens=2),
        3,
        300.0,
    ),
    # long decodes between sparse arrivals: one group decoding alone (the steady loop)
    "steady": (ServingConfig(100_000, block_size_tokens=8), 1, 5.0),
    "steady at the cap": (ServingConfig(100_000, max_num_seqs=4, block_size_tokens=8), 1, 20.0),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bulk", [False, True], ids=["one by one", "runs in bulk"])
def test_engine_matches_the_reference(name: str, seed: int, bulk: bool) -> None:
    config, stages, rate = CASES[name]
    outputs = 150 if "steady" in name else 60 if "livelock" in name else 0
    reqs = random_requests(seed, 60, rate, longest=40, outputs=outputs)
    cost, ref_cost = (
        (BulkEveryFieldCost if bulk else EveryFieldCost)(stages),
        EveryFieldCost(stages),
    )
    rec = Engine(reqs, cost, config).run()
    ref = reference_run(reqs, ref_cost, config)
    if bulk:  # a run priced in bulk, on a pipeline summed in bulk, rounds differently
        assert rec.first_scheduled_s == pytest.approx(ref.first_scheduled_s, nan_ok=True, rel=1e-12)
    else:
        assert rec.first_scheduled_s == ref.first_scheduled_s
    assert rec.first_token_s == pytest.approx(ref.first_token_s, nan_ok=True, rel=1e-12)
    assert rec.finish_s == pytest.approx(ref.finish_s, nan_ok=True, rel=1e-12)
    values, counts = rec.itl_distribution()
    gaps = sorted(
        b - a for times in ref.token_times_s for a, b in zip(times, times[1:], strict=False)
    )
    assert np.repeat(values, counts).tolist() == pytest.approx(gaps, rel=1e-9)
    assert (rec.iterations, rec.preemptions, rec.rejected) == (
        ref.iterations,
        ref.preemptions,
        ref.rejected,
    )
    assert rec.kv_peak_blocks == ref.peak_blocks
    assert rec.stage_busy_s == pytest.approx(ref.stage_busy_s, rel=1e-12)
    assert rec.kv_used_blocks == 0  # every block came back


def test_the_cases_exercise_what_they_are_named_for() -> None:
    def outcome(name: str):
        config, stages, rate = CASES[name]
        return reference_run(
            random_requests(0, 60, rate, 40), LinearCost(stages, 1e-3, 1e-5), config
        )

    assert outcome("preempting").preemptions > 0
    assert outcome("pipeline preempting").preemptions > 0
    assert outcome("rejecting").rejected > 0
    assert any(s.rows > s.sequences for s in outcome("chunking").shapes)


def test_the_steady_loop_carries_most_iterations(monkeypatch) -> None:
    from partitioner.simulate.serving import engine as engine_module

    iterations: list[int] = []

    def counted(engine, now):
        before = engine.rec.iterations
        ran = steady_run(engine, now)
        iterations.append(engine.rec.iterations - before)
        return ran

    monkeypatch.setattr(engine_module, "steady_run", counted)
    config, stages, rate = CASES["steady"]
    rec = Engine(
        random_requests(0, 60, rate, 40, outputs=150), EveryFieldCost(stages), config
    ).run()
    assert sum(iterations) > 0.8 * rec.iterations


@pytest.mark.parametrize("cost", [EveryFieldCost, BulkEveryFieldCost])
def test_the_steady_loop_prices_host_work_as_the_event_loop_does(monkeypatch, cost) -> None:
    from dataclasses import replace

    from partitioner.simulate.serving import engine as engine_module

    base, stages, rate = CASES["steady"]
    config = replace(base, iteration_overhead_s=2e-4, token_overhead_s=3e-5)
    reqs = random_requests(1, 60, rate, 40, outputs=150)
    fast = Engine(reqs, cost(stages), config).run()
    monkeypatch.setattr(engine_module, "steady_run", lambda engine, now: False)
    slow = Engine(reqs, EveryFieldCost(stages), config).run()
    assert fast.finish_s == slow.finish_s
    assert fast.first_token_s == slow.first_token_s
    assert fast.stage_busy_s == slow.stage_busy_s


def test_a_cost_that_prices_runs_in_bulk_lets_the_steady_loop_commit_many_at_once(
    monkeypatch,
) -> None:
    from partitioner.simulate.serving import steady

    committed: list[int] = []
    commit = steady._Run.commit

    def counted(run, ends, count):
        committed.append(count)
        commit(run, ends, count)

    monkeypatch.setattr(steady._Run, "commit", counted)
    config, stages, rate = CASES["steady"]
    reqs = random_requests(0, 60, rate, 40, outputs=150)
    rec = Engine(reqs, BulkEveryFieldCost(stages), config).run()
    assert max(committed) > steady.FIRST_WINDOW  # windows grew past the first
    assert sum(committed) > 0.7 * rec.iterations
    before = len(committed)
    Engine(reqs, EveryFieldCost(stages), config).run()
    assert len(committed) == before  # priced one at a time, it steps one at a time


def test_a_pipeline_runs_a_group_decoding_alone_in_bulk_too(monkeypatch) -> None:
    """On three stages, with nothing else in flight, a lone group's iterations each start
    when the last leaves the last stage: committed in bulk, as the event loop runs them."""
    from partitioner.simulate.serving import steady

    committed: list[int] = []
    commit = steady._Run.commit
    monkeypatch.setattr(
        steady._Run,
        "commit",
        lambda run, ends, count: (committed.append(count), commit(run, ends, count)),
    )
    config = ServingConfig(100_000, block_size_tokens=8)
    reqs = random_requests(0, 60, 5.0, 40, outputs=150)
    rec = Engine(reqs, BulkEveryFieldCost(3), config).run()
    ref = reference_run(reqs, EveryFieldCost(3), config)
    assert max(committed) > steady.FIRST_WINDOW
    assert rec.finish_s == pytest.approx(ref.finish_s, rel=1e-12)
    assert rec.stage_busy_s == pytest.approx(ref.stage_busy_s, rel=1e-12)
    assert rec.iterations == ref.iterations
