"""A deep pipeline (a wafer's regions) is priced with arrays; it must give the loop's times."""

from __future__ import annotations

import numpy as np
import pytest

from partitioner.simulate.serving import ServingConfig, simulate_serving, workload_from_args
from partitioner.simulate.serving.engine import DEEP_PIPELINE_STAGES
from tests.partitioner.serving.costs import LinearCost


def _run(
    stages: int, deep_threshold: int, monkeypatch, overhead_s: float = 0.0, token_s: float = 0.0
) -> dict:
    import partitioner.simulate.serving.engine as engine

    monkeypatch.setattr(engine, "DEEP_PIPELINE_STAGES", deep_threshold)
    rng = np.random.default_rng(5)
    cost = LinearCost(stages=stages, base_s=1e-3, per_row_s=2e-5, per_context_s=1e-8,
                      stage_scale=tuple(rng.uniform(0.2, 2.0, stages)))  # fmt: skip
    workload = workload_from_args(40.0, 120, 48, 24, seed=3)
    config = ServingConfig(kv_capacity_tokens=4096, max_num_seqs=32, max_num_batched_tokens=256,
                           iteration_overhead_s=overhead_s, token_overhead_s=token_s)  # fmt: skip
    return simulate_serving(workload, cost, config).to_json()


@pytest.mark.parametrize(("overhead_s", "token_s"), [(0.0, 0.0), (4e-4, 0.0), (1e-4, 3e-6)])
def test_arrays_price_a_deep_pipeline_as_the_loop_does(monkeypatch, overhead_s, token_s):
    stages = DEEP_PIPELINE_STAGES + 8
    # never deep: the stage-by-stage loop; always deep: the array form
    looped = _run(stages, 10**9, monkeypatch, overhead_s, token_s)
    arrays = _run(stages, 1, monkeypatch, overhead_s, token_s)
    for key in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        for p, value in looped[key].items():
            assert arrays[key][p] == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert arrays["iterations"] == looped["iterations"]
    assert arrays["stage_utilisation"] == pytest.approx(looped["stage_utilisation"], rel=1e-9)
