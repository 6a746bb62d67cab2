"""Workload files: YAML, with an optional JSONL trace beside them.

Format (every field but ``arrivals`` and, for a trace, ``requests`` has a default)::

    name: chat                       # default: the file's stem
    source: "ShareGPT lengths as published by ..."   # where the numbers come from
    requests: 1000                   # how many; a trace defaults to all its lines
    seed: 0                          # seed of the draws (>= 0)
    arrivals:                        # one of:
      {process: poisson, rate: 4.0}              # requests per second
      {process: gamma, rate: 4.0, burstiness: 0.5}   # vLLM bench serve's meaning; 1 = Poisson
      {process: trace, file: trace.jsonl}        # read relative to this file's folder
      {process: offline}                         # every request at t = 0
    prompt_len: 512                  # an int (fixed), or one of:
      {distribution: uniform, min: 16, max: 1024}
      {distribution: lognormal, median: 98, sigma: 1.0, min: 1, max: 1024}
      {distribution: normal, mean: 300, std: 80, min: 1, max: 1024}
    output_len: 128                  # as prompt_len
    slo: {ttft_p99_s: 2.0, tpot_p99_s: 0.2}     # optional; either key may be left out
    classes: {interactive: 0.3, batch: 0.7}     # optional: each request's class (a router's
                                     # SLO class), drawn with these fractions (summing to 1)

A trace is JSON Lines, one request a line:
``{"arrival_s": 0.25, "prompt_len": 512, "output_len": 128}`` (other keys are
ignored; lines are sorted by arrival). A trace gives the lengths, so
``prompt_len`` and ``output_len`` are refused beside it, and its file must lie
inside the workload file's folder.

Every error is a `UsageError` naming the file and the field:
``workload chat.yaml: arrivals.rate must be a positive number, got -1``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from partitioner.errors import UsageError
from partitioner.simulate.serving.lengths import (
    FixedLength,
    LengthSpec,
    LognormalLength,
    NormalLength,
    UniformLength,
)
from partitioner.simulate.serving.workload import Arrivals, Requests, Slo, Workload

__all__ = [
    "WORKLOADS_DIR",
    "FieldReader",
    "bundled_workloads",
    "load_workload",
    "parse_workload",
]

WORKLOADS_DIR = Path(__file__).resolve().parent / "workloads"
TOP_KEYS = {
    "name",
    "source",
    "requests",
    "seed",
    "arrivals",
    "prompt_len",
    "output_len",
    "slo",
    "classes",
}
ARRIVAL_KEYS = {
    "poisson": {"rate"},
    "gamma": {"rate", "burstiness"},
    "trace": {"file"},
    "offline": set(),
}


class FieldReader:
    """One file being read: every complaint names it (``workload chat.yaml: ...``) and the
    field."""

    def __init__(self, label: str, kind: str = "workload") -> None:
        self.label, self.kind = label, kind

    def error(self, message: str) -> UsageError:
        return UsageError(f"{self.kind} {self.label}: {message}")

    def inside(self, folder: Path, name: str, where: str) -> Path:
        """``name`` resolved against the file's ``folder``, refused if it escapes it."""
        base = folder.resolve()
        path = (base / name).resolve()
        if not path.is_relative_to(base):
            raise self.error(f"{where} {name!r} lies outside the {self.kind} file's folder")
        return path

    def read_yaml(self, path: Path) -> object:
        """The YAML document at ``path`` (the file this reader names)."""
        try:
            return yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise self.error(f"cannot be read ({err.__class__.__name__})") from None
        except yaml.YAMLError as err:
            first = str(err).splitlines()[0] if str(err) else "syntax error"
            raise self.error(f"not valid YAML ({first})") from None

    def mapping(self, value: object, where: str, allowed: set[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(f"{where} must be a mapping, got {value!r}")
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise self.error(
                f"unknown field {where}.{unknown[0]} (known: {', '.join(sorted(allowed))})"
            )
        return value

    def number(self, value: object, where: str, *, zero_ok: bool = False) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < 0 or (value == 0 and not zero_ok):
            kind = "a non-negative" if zero_ok else "a positive"
            raise self.error(f"{where} must be {kind} number, got {value!r}")
        return float(value)

    def integer(self, value: object, where: str, *, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise self.error(f"{where} must be {kind}, got {value!r}")
        return value


def _bounds(f: FieldReader, spec: Mapping[str, Any], where: str) -> tuple[int, int | None]:
    low = f.integer(spec.get("min", 1), f"{where}.min")
    high = spec.get("max")
    if high is not None:
        high = f.integer(high, f"{where}.max")
        if high < low:
            raise f.error(f"{where}.max ({high}) is below {where}.min ({low})")
    return low, high


def _length(f: FieldReader, value: object, where: str) -> LengthSpec:
    if isinstance(value, int) and not isinstance(value, bool):
        return FixedLength(f.integer(value, where))
    kinds = ("uniform", "lognormal", "normal")
    kind = value.get("distribution") if isinstance(value, Mapping) else None
    if kind not in kinds:
        raise f.error(
            f"{where} must be a positive integer or a mapping with distribution "
            f"{', '.join(kinds)}; got {value!r}"
        )
    params = {"uniform": {"min", "max"}, "lognormal": {"median", "sigma", "min", "max"}}
    spec = f.mapping(
        value, where, {"distribution"} | params.get(kind, {"mean", "std", "min", "max"})
    )
    if kind == "uniform":
        if "max" not in spec:
            raise f.error(f"{where}.max is required for a uniform distribution")
        low, high = _bounds(f, spec, where)
        assert high is not None
        return UniformLength(low, high)
    low, high = _bounds(f, spec, where)
    if kind == "lognormal":
        median = f.number(spec.get("median"), f"{where}.median")
        return LognormalLength(
            median, f.number(spec.get("sigma"), f"{where}.sigma", zero_ok=True), low, high
        )
    mean = f.number(spec.get("mean"), f"{where}.mean")
    return NormalLength(mean, f.number(spec.get("std"), f"{where}.std", zero_ok=True), low, high)


def _arrivals(f: FieldReader, value: object) -> tuple[Arrivals, str | None]:
    process = value.get("process") if isinstance(value, Mapping) else None
    if process not in ARRIVAL_KEYS:
        raise f.error(f"arrivals.process must be one of {', '.join(ARRIVAL_KEYS)}; got {process!r}")
    spec = f.mapping(value, "arrivals", {"process"} | ARRIVAL_KEYS[process])
    if process == "offline":
        return Arrivals("offline"), None
    if process == "trace":
        file = spec.get("file")
        if not isinstance(file, str) or not file:
            raise f.error(f"arrivals.file must name a JSONL file, got {file!r}")
        return Arrivals("trace"), file
    rate = f.number(spec.get("rate"), "arrivals.rate")
    burstiness = f.number(spec.get("burstiness", 1.0), "arrivals.burstiness")
    return Arrivals(process, rate, burstiness if process == "gamma" else 1.0), None


def _slo(f: FieldReader, value: object) -> Slo | None:
    if value is None:
        return None
    spec = f.mapping(value, "slo", {"ttft_p99_s", "tpot_p99_s"})
    if not spec:
        raise f.error("slo must give ttft_p99_s, tpot_p99_s or both")
    ttft, tpot = spec.get("ttft_p99_s"), spec.get("tpot_p99_s")
    return Slo(
        None if ttft is None else f.number(ttft, "slo.ttft_p99_s"),
        None if tpot is None else f.number(tpot, "slo.tpot_p99_s"),
    )


def _classes(f: FieldReader, value: object) -> tuple[tuple[str, float], ...] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise f.error(f"classes must map class names to fractions, got {value!r}")
    mix = []
    for name, fraction in value.items():
        if not isinstance(name, str) or not name:
            raise f.error(f"classes: a class name must be text, got {name!r}")
        mix.append((name, f.number(fraction, f"classes.{name}")))
    total = sum(fraction for _, fraction in mix)
    if abs(total - 1) > 1e-6:
        raise f.error(f"classes: the fractions must sum to 1, not {total:g}")
    return tuple(mix)


def _trace_line(f: FieldReader, where: str, text: str) -> tuple[float, int, int]:
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        raise f.error(f"{where}: not JSON ({err.msg})") from None
    if not isinstance(row, Mapping):
        raise f.error(f"{where}: must be a JSON object, got {text.strip()[:60]!r}")
    return (
        f.number(row.get("arrival_s"), f"{where}: arrival_s", zero_ok=True),
        f.integer(row.get("prompt_len"), f"{where}: prompt_len"),
        f.integer(row.get("output_len"), f"{where}: output_len"),
    )


def _read_trace(f: FieldReader, folder: Path, file: str) -> Requests:
    path = f.inside(folder, file, "arrivals.file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise f.error(f"arrivals.file {file!r} cannot be read ({err.__class__.__name__})") from None
    rows = [
        _trace_line(f, f"trace {path.name} line {number}", text)
        for number, text in enumerate(lines, 1)
        if text.strip()
    ]
    if not rows:
        raise f.error(f"trace {path.name} has no requests")
    arrival, prompt, output = (np.array(column) for column in zip(*rows, strict=True))
    order = np.argsort(arrival, kind="stable")
    return Requests(arrival[order], prompt[order], output[order])


def _requests(f: FieldReader, data: Mapping[str, Any], trace: Requests | None) -> int:
    if trace is None:
        return f.integer(data.get("requests"), "requests")
    count = f.integer(data.get("requests", len(trace)), "requests")
    if count > len(trace):
        raise f.error(f"requests ({count}) exceeds the trace's {len(trace)} requests")
    return count


def parse_workload(data: object, label: str, folder: Path, default_name: str) -> Workload:
    """A `Workload` from a parsed YAML document (the format in the module doc).

    Args:
        data: The document.
        label: What errors call the file (``chat.yaml``).
        folder: The folder a trace file is read from.
        default_name: The name when the document gives none.

    Raises:
        UsageError: A field is missing, unknown or out of range.
    """
    f = FieldReader(label)
    data = f.mapping(data, "the document", TOP_KEYS)
    for key in ("name", "source"):
        if key in data and not isinstance(data[key], str):
            raise f.error(f"{key} must be text, got {data[key]!r}")
    if "arrivals" not in data:
        raise f.error("arrivals is required")
    arrivals, trace_file = _arrivals(f, data["arrivals"])
    trace = None if trace_file is None else _read_trace(f, folder, trace_file)
    lengths: list[LengthSpec | None] = []
    for key in ("prompt_len", "output_len"):
        if trace is not None and key in data:
            raise f.error(f"{key} does not apply beside a trace (the trace gives each request's)")
        if trace is None and key not in data:
            raise f.error(f"{key} is required")
        lengths.append(None if trace is not None else _length(f, data[key], key))
    return Workload(
        name=data.get("name", default_name),
        source=data.get("source", "not stated"),
        requests=_requests(f, data, trace),
        arrivals=arrivals,
        prompt_len=lengths[0],
        output_len=lengths[1],
        slo=_slo(f, data.get("slo")),
        seed=f.integer(data.get("seed", 0), "seed", minimum=0),
        trace=trace,
        classes=_classes(f, data.get("classes")),
    )


def bundled_workloads() -> tuple[str, ...]:
    """Names of the workloads shipped with the package (``chat``, ``offline``, ...)."""
    return tuple(sorted(path.stem for path in WORKLOADS_DIR.glob("*.yaml")))


def load_workload(spec: str | Path) -> Workload:
    """A workload from a file path, or a bundled workload by name (a file of that name wins).

    Raises:
        UsageError: No such file or bundled workload, or the file is invalid.
    """
    path = Path(spec)
    if not path.is_file():
        if str(spec) not in bundled_workloads():
            raise UsageError(
                f"workload {spec}: no such file, and not a bundled workload "
                f"({', '.join(bundled_workloads())})"
            )
        path = WORKLOADS_DIR / f"{spec}.yaml"
    data = FieldReader(path.name).read_yaml(path)
    return parse_workload(data, path.name, path.parent, path.stem)
