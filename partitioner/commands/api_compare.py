"""Cerebras' public API prices beside a wafer plan's serving estimate (`targets.api_prices`).

No hourly price of a wafer system is published, so the $ per million tokens a
wafer plan reports rests on a labelled assumption. Cerebras' own API price for a model
of the same size is the public figure to read it against: printed and put in the JSON
(``cerebras_api_prices``), never used in any estimate.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from partitioner.plan import Plan
from partitioner.units import human_count
from targets.api_prices import api_price_comparison, listed_api_prices

__all__ = ["api_comparison", "api_comparison_line", "active_params"]


def active_params(plan: Plan) -> float | None:
    """Parameters a token's FLOPs use: half a decode step's FLOPs at batch 1 and an empty
    cache, from the plan's load model (None without one)."""
    load = plan.load_model
    if load is None:
        return None
    flops = sum(t.count * load.value(t.flops, 1, 0) for s in load.stages for t in s.terms)
    return flops / 2 if flops > 0 else None


def api_comparison(plan: Plan) -> dict[str, Any] | None:
    """For a wafer plan: its model's size, and the listed API prices of that size (or, when
    none is, every listed one, with ``same_size`` false); None for other plans."""
    if plan.target.kind != "wafer":
        return None
    size = active_params(plan)
    near = api_price_comparison(size)
    prices = near or listed_api_prices()
    return {"active_params": size, "same_size": bool(near),
            "prices": [asdict(p) for p in prices]}  # fmt: skip


def api_comparison_line(doc: dict[str, Any]) -> str:
    """One line: the comparison point, said as such."""
    prices = "; ".join(
        f"{p['model']} ${p['usd_per_million_input']:.2f} in / "
        f"${p['usd_per_million_output']:.2f} out"
        for p in doc["prices"]
    )
    size = doc["active_params"]
    said = "" if size is None else f" ({human_count(size)} parameters a token)"
    if doc["same_size"]:
        return (f"Cerebras' public API price for a model of this size{said}, per million "
                f"tokens: {prices} (a comparison point, not an input)")  # fmt: skip
    return (f"Cerebras' public API lists no model of this size{said}; its prices per million "
            f"tokens: {prices} (a comparison point, not an input)")  # fmt: skip
