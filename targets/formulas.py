"""Closed-form formulas of the cost model: links, collectives, stage memory, per-token figures.

Plain functions of numbers, shared by `targets.cost`'s models and importable on
their own; `targets.cost` re-exports them, so ``from targets.cost import ...``
keeps working.
"""

from __future__ import annotations

import math

from targets.gpu import Link

__all__ = [
    "COLLECTIVE_KINDS",
    "all_gather_s",
    "all_reduce_s",
    "collective_bytes_sent",
    "collective_s",
    "joules_per_token",
    "link_busy_s",
    "link_transfer_s",
    "pipelined_tokens_per_s",
    "reduce_scatter_s",
    "stage_memory_bytes",
    "to_int_units",
    "tokens_per_s",
    "usd_per_token",
]

_SECONDS_PER_HOUR = 3600.0


def _nonneg(name: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def link_transfer_s(nbytes: float, link: Link) -> float:
    """Seconds to move ``nbytes`` over ``link``: latency + bytes / effective bandwidth.

    0 for 0 bytes: nothing is sent, so no latency is paid.
    """
    if _nonneg("nbytes", nbytes) == 0:
        return 0.0
    return link.latency_s + nbytes / link.effective_bandwidth_bytes_per_s


def link_busy_s(nbytes: float, link: Link) -> float:
    """Seconds ``nbytes`` occupy ``link``: bytes / effective bandwidth.

    The latency of a transfer delays its arrival but does not occupy the link,
    so throughput bounds from shared links count only this.
    """
    return _nonneg("nbytes", nbytes) / link.effective_bandwidth_bytes_per_s


def _ring_s(bus_factor: float, nbytes: float, n: int, link: Link) -> float:
    """``bus_factor · (n−1)/n · nbytes / busbw + per-call latency``; 0 when nothing is sent.

    ``(n−1)/n · nbytes`` is what each device sends in one ring pass; an
    all-reduce is two passes (a reduce-scatter, then an all-gather), hence
    ``bus_factor`` 2. Dividing by the link's busbw, which nccl-tests compute
    with these same factors, makes the formula give back the time measured.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number of devices >= 1, got {n!r}")
    if _nonneg("nbytes", nbytes) == 0 or n == 1:
        return 0.0  # one device, or nothing to exchange: no call is made
    busbw = link.collective_bandwidth_bytes_per_s
    latency_s = link.collective_latency_s
    assert busbw is not None and latency_s is not None  # Link.__post_init__ derives them
    return bus_factor * (n - 1) / n * nbytes / busbw + latency_s


def all_reduce_s(nbytes: float, n: int, link: Link) -> float:
    """Seconds of a ring all-reduce of ``nbytes`` over ``n`` devices joined by ``link``.

    ``2(n−1)/n · nbytes / busbw + latency``, ``nbytes`` being the whole
    tensor each device holds (nccl-tests' "size"). 0 for one device or 0 bytes.
    """
    return _ring_s(2.0, nbytes, n, link)


def all_gather_s(nbytes: float, n: int, link: Link) -> float:
    """Seconds of a ring all-gather over ``n`` devices: ``(n−1)/n · nbytes / busbw + latency``.

    ``nbytes`` is the whole gathered tensor each device holds afterwards
    (nccl-tests' "size"), not one device's 1/n share. 0 for one device or 0 bytes.
    """
    return _ring_s(1.0, nbytes, n, link)


def reduce_scatter_s(nbytes: float, n: int, link: Link) -> float:
    """Seconds of a ring reduce-scatter over ``n`` devices: ``(n−1)/n · nbytes / busbw + latency``.

    ``nbytes`` is the whole tensor each device holds before the call
    (nccl-tests' "size"); each keeps a reduced 1/n of it. 0 for one device or 0 bytes.
    """
    return _ring_s(1.0, nbytes, n, link)


_COLLECTIVES = {
    "all_reduce": all_reduce_s,
    "all_gather": all_gather_s,
    "reduce_scatter": reduce_scatter_s,
}
#: The collective kinds the cost model prices (a plan's ``all_to_all`` is not one yet).
COLLECTIVE_KINDS: tuple[str, ...] = tuple(_COLLECTIVES)


def collective_s(kind: str, nbytes: float, n: int, link: Link) -> float:
    """Seconds of the collective ``kind`` (one of `COLLECTIVE_KINDS`); see its formula.

    Raises:
        ValueError: An unknown kind; the message lists the known ones.
    """
    formula = _COLLECTIVES.get(kind) if isinstance(kind, str) else None
    if formula is None:
        raise ValueError(
            f"unknown collective kind {kind!r}; known kinds: {', '.join(COLLECTIVE_KINDS)}"
        )
    return formula(nbytes, n, link)


#: Ring passes per collective kind: an all-reduce is a reduce-scatter then an all-gather.
_RING_PASSES = {"all_reduce": 2, "all_gather": 1, "reduce_scatter": 1}


def collective_bytes_sent(kind: str, nbytes: float, n: int) -> float:
    """Bytes each of ``n`` devices sends in the ring collective ``kind`` over ``nbytes``.

    ``passes · (n−1)/n · nbytes``: each ring pass moves n−1 of the n chunks
    through every device, and an all-reduce makes two passes. ``nbytes`` is
    the whole tensor each device holds (nccl-tests' "size"), as in
    `collective_s`; these are the bytes its formula divides by the busbw.

    Raises:
        ValueError: An unknown kind, a bad device count or byte count.
    """
    passes = _RING_PASSES.get(kind) if isinstance(kind, str) else None
    if passes is None:
        raise ValueError(
            f"unknown collective kind {kind!r}; known kinds: {', '.join(COLLECTIVE_KINDS)}"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number of devices >= 1, got {n!r}")
    return passes * (n - 1) / n * _nonneg("nbytes", nbytes)


def stage_memory_bytes(
    param_bytes: int,
    activation_peak_bytes: int,
    microbatches_in_flight: int = 1,
    transfer_buffer_bytes: int = 0,
    kv_cache_bytes: int = 0,
) -> int:
    """Memory a pipeline stage needs on its device.

    ``params + activation_peak × microbatches_in_flight + transfer buffers +
    KV cache`` (KV-cache inputs count on the stage that consumes them).
    """
    for name, value in (
        ("param_bytes", param_bytes),
        ("activation_peak_bytes", activation_peak_bytes),
        ("transfer_buffer_bytes", transfer_buffer_bytes),
        ("kv_cache_bytes", kv_cache_bytes),
    ):
        _nonneg(name, value)
    if microbatches_in_flight < 1:
        raise ValueError(f"microbatches_in_flight must be >= 1, got {microbatches_in_flight}")
    return (
        param_bytes
        + activation_peak_bytes * microbatches_in_flight
        + transfer_buffer_bytes
        + kv_cache_bytes
    )


def tokens_per_s(batch: int, step_s: float) -> float:
    """Decode throughput: ``batch`` tokens per step of ``step_s``.

    Each request then waits ``step_s`` seconds per token.
    """
    if batch < 1 or not step_s > 0:
        raise ValueError(f"need batch >= 1 and step_s > 0, got {batch} and {step_s}")
    return batch / step_s


def pipelined_tokens_per_s(batch: int, steps_per_s: float) -> float:
    """Decode throughput with the pipeline full: ``steps_per_s`` steps of ``batch`` tokens each."""
    if batch < 0 or not steps_per_s >= 0:
        raise ValueError(f"need batch >= 0 and steps_per_s >= 0, got {batch} and {steps_per_s}")
    return batch * steps_per_s


def usd_per_token(tokens_per_second: float, usd_per_hour: float | None) -> float | None:
    """Dollars per token at a price per hour; None when the price is unknown."""
    if usd_per_hour is None:
        return None
    if not tokens_per_second > 0:
        raise ValueError(f"tokens_per_second must be > 0, got {tokens_per_second}")
    return usd_per_hour / _SECONDS_PER_HOUR / tokens_per_second


def joules_per_token(tokens_per_second: float, power_w: float | None) -> float | None:
    """Energy per token at a power draw; None when the power is unknown."""
    if power_w is None:
        return None
    if not tokens_per_second > 0:
        raise ValueError(f"tokens_per_second must be > 0, got {tokens_per_second}")
    return power_w / tokens_per_second


def to_int_units(value: float, unit: float) -> int:
    """``value`` in whole ``unit`` s, rounded up (seconds to µs: ``unit=1e-6``; bytes to KiB: 1024).

    Rounding up keeps a positive cost positive and a capacity need a need;
    a quotient within 1e-9 of a whole number is taken as that number, so
    float noise does not add a unit.
    """
    _nonneg("value", value)
    if not unit > 0:
        raise ValueError(f"unit must be > 0, got {unit}")
    units = value / unit
    nearest = round(units)
    if abs(units - nearest) <= 1e-9 * max(1.0, abs(units)):
        return int(nearest)
    return math.ceil(units)
