"""A block of mixed dtypes on a wafer region, worked by hand on the tiny grid."""

from __future__ import annotations

import dataclasses

import pytest

from targets import CostModel, WaferTarget
from targets.cost import UNTYPED_FLOPS_DTYPE
from tests.targets.builders import tiny_wafer


def test_untyped_flops_run_at_the_half_precision_rate(tiny2: WaferTarget) -> None:
    cost = CostModel(tiny2)
    assert UNTYPED_FLOPS_DTYPE == "float16"
    # 8×4 cores × 4 lanes × 2 FLOP × 1 GHz × η 0.5 = 128e9 FLOP/s: 1.28e6 FLOP take 1e-5 s,
    # whether they are float16 or of unknown dtype (they add up before the division)
    assert cost.block_compute_s({None: 0.64e6, "float16": 0.64e6}, 8, 4) == pytest.approx(1e-5)


def test_mixed_dtypes_add_and_the_mesh_term_counts_once(tiny2: WaferTarget) -> None:
    wafer = tiny_wafer(fmac_lanes_per_cycle={"float16": 4, "float32": 1})
    cost = CostModel(dataclasses.replace(tiny2, wafer=wafer))
    # float16: 1.28e6 / 128e9 = 1e-5 s; float32 at 1 lane: 0.32e6 / 32e9 = 1e-5 s;
    # mesh once: 2 matmuls × (8 + 4) hops × 1 cycle / 1 GHz = 24e-9 s
    seconds = cost.block_compute_s({"float16": 1.28e6, "float32": 0.32e6}, 8, 4, num_matmuls=2)
    assert seconds == pytest.approx(2e-5 + 24e-9, rel=1e-12)


def test_a_block_without_flops_still_pays_its_mesh_hops(tiny2: WaferTarget) -> None:
    cost = CostModel(tiny2)
    assert cost.block_compute_s({}, 8, 4, num_matmuls=1) == pytest.approx(12e-9)
    assert cost.block_compute_s({}, 8, 4) == 0.0
