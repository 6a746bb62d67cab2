"""Cerebras' public API prices matched to a model's size (`targets.api_prices`), by hand."""

from __future__ import annotations

from targets.api_prices import MATCH, api_price_comparison, listed_api_prices


def _models(active_params):
    return [p.model for p in api_price_comparison(active_params)]


def test_a_model_is_matched_to_the_listed_ones_of_its_size():
    # an 8B graph's FLOPs use 7.51B parameters a token (its input embedding is a lookup)
    assert _models(7.51e9) == ["Llama 3.1 8B"]
    # both 70B prices: 3.1 at launch and 3.3 now, the same network
    assert _models(69.5e9) == ["Llama 3.1 70B (launch price)", "Llama 3.3 70B"]
    assert _models(5.1e9) == ["gpt-oss-120B (5.1B active)"]
    assert _models(405e9) == [] and _models(None) == [] and _models(0.0) == []


def test_the_match_is_within_a_ratio_of_1_25_either_way():
    assert MATCH == 1.25
    assert _models(8.03e9 * 1.25) == ["Llama 3.1 8B"]  # 10.04B: at the edge
    assert _models(8.03e9 * 1.26) == []
    # 6.42B: 1.25 below 8.03B, but 1.26 above gpt-oss-120B's 5.1B
    assert _models(8.03e9 / 1.25) == ["Llama 3.1 8B"]


def test_the_listed_prices_are_the_sourced_ones():
    prices = {p.model: (p.usd_per_million_input, p.usd_per_million_output)
              for p in listed_api_prices()}  # fmt: skip
    assert prices == {
        "Llama 3.1 8B": (0.10, 0.10),
        "Llama 3.1 70B (launch price)": (0.60, 0.60),
        "Llama 3.3 70B": (0.85, 1.20),
        "gpt-oss-120B (5.1B active)": (0.35, 0.75),
    }
