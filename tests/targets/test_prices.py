"""Preset prices and power: the sourced defaults, and $ and joules per token worked by hand."""

from __future__ import annotations

import pytest

from targets import get_preset
from targets.cost import CostModel
from targets.presets import CEREBRAS_API_PRICES, CS3_USD_PER_HOUR


def test_gpu_presets_carry_their_sourced_price_per_gpu_hour():
    prices = {
        f: get_preset(f"{f}x8").devices[0].usd_per_hour for f in ("a100", "h100", "h200", "b200")
    }
    assert prices == {"a100": 2.21, "h100": 2.95, "h200": 4.00, "b200": 5.25}
    assert get_preset("h100x8-pcie").devices[0].usd_per_hour is None  # no figure collected


def test_the_wafer_price_is_the_labelled_assumption_worked_out():
    # $2.5M over 3 years of 8,760 h = 95.129 $/h, plus 23 kW at $0.10/kWh = 2.30 $/h
    assert CS3_USD_PER_HOUR == 97.43
    wse3 = get_preset("wse3x4")
    assert (wse3.wafer.usd_per_hour, wse3.wafer.power_w) == (97.43, 23_000.0)
    assert get_preset("wse2").wafer.usd_per_hour is None
    assert CEREBRAS_API_PRICES["llama3.1-70b"] == (0.60, 0.60)


def test_dollars_and_joules_per_token_by_hand():
    cost = CostModel(get_preset("h100x8"))
    # 8 x $2.95 = $23.60 an hour at 10,000 tokens/s: 23.6 / 3.6e7 $ a token
    assert cost.usd_per_token(10_000.0) == pytest.approx(23.6 / 3.6e7)
    # 8 x 700 W at 10,000 tokens/s: 0.56 J a token
    assert cost.joules_per_token(10_000.0) == pytest.approx(0.56)
    wafers = CostModel(get_preset("wse3x4"))
    assert wafers.usd_per_hour() == pytest.approx(4 * 97.43)
