"""Workloads: when requests arrive, how long their prompts and outputs are, and the SLO.

A `Workload` is a recipe; `Workload.sample` turns it into `Requests` (arrays
of arrival time, prompt and output length). Arrivals follow vLLM's ``bench
serve``: the first request arrives at t = 0 and the gaps between requests are
gamma-distributed with shape ``burstiness`` and scale ``1/(rate·burstiness)``
(mean gap ``1/rate``; burstiness 1 is a Poisson process, below 1 burstier,
above 1 more regular). ``offline`` puts every request at t = 0; a trace gives
each request's arrival and lengths.

Randomness comes from one seed split into independent streams (gaps, prompt
lengths, output lengths, and the requests' classes when the workload mixes
classes), so changing the rate rescales the same gaps and keeps the same
lengths: a rate sweep compares like with like. The class stream is the fourth
child of the seed, so adding a class mix leaves the other draws as they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from partitioner.errors import UsageError
from partitioner.simulate.serving.lengths import (
    FixedLength,
    LengthSpec,
    LognormalLength,
    NormalLength,
    UniformLength,
)

__all__ = ["Requests", "Slo", "Arrivals", "Workload", "workload_from_args"]


@dataclass(frozen=True, eq=False)
class Requests:
    """Concrete requests, in arrival order.

    Attributes:
        arrival_s: Arrival times in seconds, non-decreasing (float64).
        prompt_tokens: Prompt length of each request, at least 1 (int64).
        output_tokens: Tokens each request generates, at least 1 (int64).
        classes: Each request's class name (a router's SLO class), or None when the
            workload has no classes.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    classes: np.ndarray | None = None

    def __post_init__(self) -> None:
        arrival = np.array(self.arrival_s, dtype=np.float64)
        prompt = np.array(self.prompt_tokens, dtype=np.int64)
        output = np.array(self.output_tokens, dtype=np.int64)
        if not (arrival.ndim == prompt.ndim == output.ndim == 1):
            raise ValueError("requests: arrival_s, prompt_tokens and output_tokens must be 1-D")
        if not (arrival.size == prompt.size == output.size):
            raise ValueError(
                "requests: arrival_s, prompt_tokens and output_tokens differ in length"
            )
        if arrival.size and not (np.isfinite(arrival).all() and (arrival >= 0).all()):
            raise ValueError("requests: arrival times must be finite and non-negative")
        if arrival.size > 1 and (np.diff(arrival) < 0).any():
            raise ValueError("requests: arrival times must be non-decreasing")
        if arrival.size and (prompt.min() < 1 or output.min() < 1):
            raise ValueError("requests: every prompt and output has at least one token")
        arrays = [("arrival_s", arrival), ("prompt_tokens", prompt), ("output_tokens", output)]
        if self.classes is not None:
            classes = np.array(self.classes, dtype=np.str_)
            if classes.shape != arrival.shape:
                raise ValueError("requests: classes must give one class per request")
            arrays.append(("classes", classes))
        for name, array in arrays:
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return int(self.arrival_s.size)


@dataclass(frozen=True)
class Slo:
    """Latency targets. Each is checked two ways: per request (goodput, as vLLM's
    ``--goodput``) and on the 99th percentile over requests (MLPerf's server rule).

    Attributes:
        ttft_s: Time to first token, seconds; None means no target.
        tpot_s: Time per output token after the first, seconds; None means no target.
    """

    ttft_s: float | None = None
    tpot_s: float | None = None


@dataclass(frozen=True)
class Arrivals:
    """How requests arrive.

    Attributes:
        process: ``"poisson"``, ``"gamma"``, ``"trace"`` or ``"offline"``.
        rate_per_s: Mean requests per second (poisson and gamma; for a trace, set only
            when the trace's times are rescaled to this rate).
        burstiness: Gamma shape (1 = Poisson).
    """

    process: str
    rate_per_s: float | None = None
    burstiness: float = 1.0


def _classes(
    mix: tuple[tuple[str, float], ...], rng: np.random.Generator, count: int
) -> np.ndarray:
    """``count`` class names drawn with the mix's fractions (one uniform draw per request)."""
    names = np.array([name for name, _ in mix], dtype=np.str_)
    edges = np.cumsum([fraction for _, fraction in mix])
    picks = np.searchsorted(edges / edges[-1], rng.random(count), side="right")
    return names[np.minimum(picks, len(mix) - 1)]


def _gaps_s(arrivals: Arrivals, rng: np.random.Generator, count: int) -> np.ndarray:
    """Arrival times of ``count`` requests for poisson/gamma/offline (see the module doc)."""
    if arrivals.process == "offline" or count == 0:
        return np.zeros(count)
    assert arrivals.rate_per_s is not None
    shape = arrivals.burstiness if arrivals.process == "gamma" else 1.0
    # standard gamma draws times the scale, so a new rate rescales the same draws
    gaps = rng.standard_gamma(shape, size=count - 1) / (arrivals.rate_per_s * shape)
    return np.concatenate(([0.0], np.cumsum(gaps)))


@dataclass(frozen=True, eq=False)
class Workload:
    """A serving workload (format: `partitioner.simulate.serving.workload_file`).

    Attributes:
        name: Short name (``chat``, or the file's stem).
        source: Where the numbers come from, in words.
        requests: How many requests.
        arrivals: The arrival process.
        prompt_len: Prompt lengths (None for a trace, which carries its own).
        output_len: Output lengths (None for a trace).
        slo: Latency targets, if any.
        seed: Seed of the draws, unless the serving config overrides it.
        trace: The trace's requests (``arrivals.process == "trace"`` only).
        classes: The class mix, ``(name, fraction)`` pairs with fractions summing to 1;
            None for a workload without classes.
    """

    name: str
    source: str
    requests: int
    arrivals: Arrivals
    prompt_len: LengthSpec | None
    output_len: LengthSpec | None
    slo: Slo | None = None
    seed: int = 0
    trace: Requests | None = None
    classes: tuple[tuple[str, float], ...] | None = None

    def with_rate(self, rate_per_s: float) -> Workload:
        """The same workload at another mean arrival rate (a trace is rescaled in time).

        Raises:
            UsageError: The rate is not a positive finite number, or the workload is offline.
        """
        if isinstance(rate_per_s, bool) or not (
            isinstance(rate_per_s, int | float) and 0 < rate_per_s < math.inf
        ):
            raise UsageError(
                f"workload {self.name}: rate must be a positive number, got {rate_per_s!r}"
            )
        if self.arrivals.process == "offline":
            raise UsageError(f"workload {self.name}: an offline workload has no arrival rate")
        if self.arrivals.process == "trace":
            _trace_span_s(self)  # refuses a trace with no span to rescale
        return replace(self, arrivals=replace(self.arrivals, rate_per_s=float(rate_per_s)))

    def with_requests(self, requests: int) -> Workload:
        """The same workload with another request count (a trace keeps its first ones)."""
        if isinstance(requests, bool) or not isinstance(requests, int) or requests <= 0:
            raise UsageError(
                f"workload {self.name}: requests must be a positive integer, got {requests!r}"
            )
        if self.trace is not None and requests > len(self.trace):
            raise UsageError(
                f"workload {self.name}: the trace has {len(self.trace)} requests, not {requests}"
            )
        return replace(self, requests=requests)

    def sample(self, seed: int | None = None) -> Requests:
        """Draw the requests (``seed`` overrides the workload's own)."""
        streams = np.random.SeedSequence(self.seed if seed is None else seed).spawn(4)
        gaps, prompts, outputs, classes = (np.random.default_rng(s) for s in streams)
        if self.trace is not None:
            drawn = _trace_requests(self)
        else:
            assert self.prompt_len is not None and self.output_len is not None
            drawn = Requests(
                _gaps_s(self.arrivals, gaps, self.requests),
                self.prompt_len.sample(prompts, self.requests),
                self.output_len.sample(outputs, self.requests),
            )
        if self.classes is None:
            return drawn
        return replace(drawn, classes=_classes(self.classes, classes, len(drawn)))


def _trace_span_s(workload: Workload) -> float:
    trace = workload.trace
    assert trace is not None
    arrival = trace.arrival_s[: workload.requests]
    span = float(arrival[-1] - arrival[0]) if arrival.size else 0.0
    if span <= 0:
        raise UsageError(
            f"workload {workload.name}: the trace's requests all arrive at once; "
            "it has no rate to rescale"
        )
    return span


def _trace_requests(workload: Workload) -> Requests:
    trace = workload.trace
    assert trace is not None
    count = workload.requests
    arrival = trace.arrival_s[:count]
    rate = workload.arrivals.rate_per_s
    if rate is not None:
        # the trace's own mean rate is (count - 1) gaps over its span
        own_rate = (count - 1) / _trace_span_s(workload)
        arrival = arrival[0] + (arrival - arrival[0]) * (own_rate / rate)
    return Requests(arrival, trace.prompt_tokens[:count], trace.output_tokens[:count])


def _cli_positive_int(value: object, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"{flag} must be a positive integer, got {value!r}")
    return value


def workload_from_args(
    rate_per_s: float,
    requests: int,
    prompt_tokens: int | LengthSpec,
    output_tokens: int | LengthSpec,
    *,
    burstiness: float = 1.0,
    seed: int = 0,
    slo: Slo | None = None,
) -> Workload:
    """A workload from command-line figures (``--rate --requests --prompt-len --output-len``).

    A rate of ``math.inf`` sends every request at t = 0 (vLLM's ``--request-rate inf``).

    Raises:
        UsageError: A figure is out of range.
    """
    if isinstance(rate_per_s, bool) or not (isinstance(rate_per_s, int | float) and rate_per_s > 0):
        raise UsageError(f"--rate must be a positive number, got {rate_per_s!r}")
    if not (isinstance(burstiness, int | float) and 0 < burstiness < math.inf):
        raise UsageError(f"--burstiness must be a positive number, got {burstiness!r}")
    _cli_positive_int(requests, "--requests")
    lengths: list[LengthSpec] = []
    for value, flag in ((prompt_tokens, "--prompt-len"), (output_tokens, "--output-len")):
        if isinstance(value, FixedLength | UniformLength | LognormalLength | NormalLength):
            lengths.append(value)
        else:
            lengths.append(FixedLength(_cli_positive_int(value, flag)))
    if rate_per_s == math.inf:
        arrivals = Arrivals("offline")
    else:
        process = "poisson" if burstiness == 1 else "gamma"
        arrivals = Arrivals(process, float(rate_per_s), float(burstiness))
    source = f"command line: {requests} requests at {rate_per_s} per second"
    return Workload("cli", source, requests, arrivals, lengths[0], lengths[1], slo, seed)
