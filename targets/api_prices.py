"""Cerebras' public API prices as a comparison point beside a wafer plan's $ per token.

No hourly price of a Cerebras system is published (the wafer presets carry a labelled
assumption), so a wafer estimate is printed beside what Cerebras charges per million
tokens for a model of the same size. It is a comparison point, never an input: an API
price includes margin, batching across customers and speculative decoding, none of
which the estimate models.

A model is matched by the parameters a token's FLOPs use (``active_params``: twice
that is a decode step's FLOPs at batch 1 and an empty cache; for a mixture of
experts, the active ones). Sizes from the model cards [V]; within `MATCH` of each
other they are taken for the same size.
"""

from __future__ import annotations

from dataclasses import dataclass

from targets.presets import CEREBRAS_API_PRICES

__all__ = ["ApiPrice", "MATCH", "api_price_comparison", "listed_api_prices"]

#: The listed models' parameters per token [V, model cards]: Llama 3.1 8B 8.03B and
#: 70B 70.6B (Llama 3.3 70B is the same network); gpt-oss-120B 5.1B active of 117B.
#: The input embedding is a lookup, not FLOPs, so a graph's figure is a little lower.
ACTIVE_PARAMS = {
    "llama3.1-8b": ("Llama 3.1 8B", 8.03e9),
    "llama3.1-70b": ("Llama 3.1 70B (launch price)", 70.6e9),
    "llama3.3-70b": ("Llama 3.3 70B", 70.6e9),
    "gpt-oss-120b": ("gpt-oss-120B (5.1B active)", 5.1e9),
}
#: Largest ratio between a model's parameters and a listed one's that still matches.
MATCH = 1.25


@dataclass(frozen=True)
class ApiPrice:
    """One listed model's public API price, $ per million tokens in and out."""

    model: str
    usd_per_million_input: float
    usd_per_million_output: float


def listed_api_prices() -> list[ApiPrice]:
    """Every listed model's public API price."""
    return [ApiPrice(ACTIVE_PARAMS[k][0], *CEREBRAS_API_PRICES[k]) for k in ACTIVE_PARAMS]


def api_price_comparison(active_params: float | None) -> list[ApiPrice]:
    """The listed models of ``active_params``'s size (within `MATCH` of it); none when
    no listed model is, or the size is unknown (None)."""
    if active_params is None or active_params <= 0:
        return []
    return [
        price
        for (_, size), price in zip(ACTIVE_PARAMS.values(), listed_api_prices(), strict=True)
        if max(active_params, size) / min(active_params, size) <= MATCH
    ]
