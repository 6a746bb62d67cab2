"""Human-readable units for tables: decimal bytes (GB = 1e9, as GPU datasheets) and FLOPs."""

from __future__ import annotations

__all__ = ["human_bytes", "human_flops", "human_count", "human_seconds", "per_million_tokens"]

_DECIMAL = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def _scaled(value: float, unit: str, *, digits: int = 3) -> str:
    for scale, prefix in _DECIMAL:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"


def human_bytes(n: float) -> str:
    """1234567 -> '1.23 MB' (decimal, like HBM capacities on datasheets)."""
    if abs(n) < 1000:
        return f"{int(n)} B"
    return _scaled(n, "B")


def human_flops(n: float) -> str:
    """31.8e9 -> '31.8 GFLOP'."""
    return _scaled(n, "FLOP")


def human_count(n: float) -> str:
    """124439808 -> '124M'; small counts stay exact."""
    if abs(n) < 1000:
        return str(int(n))
    for scale, prefix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{prefix}"
    return str(n)


def human_seconds(s: float) -> str:
    """0.0123 -> '12.3 ms'."""
    if s == 0:
        return "0 s"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(s) >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def per_million_tokens(usd_per_million: float) -> str:
    """11.52 -> '$11.5 per million tokens' (the unit providers price in)."""
    return f"${usd_per_million:.3g} per million tokens"
