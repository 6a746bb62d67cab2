"""Deployment files: serving pools, each a plan with replicas, and how requests are routed.

A deployment is what a serving stack's router needs to know: the pools of
identical engines, the policy that picks a pool for each request, the pool
that takes over when one fails, and each request class's latency targets.
Everything in it is plain YAML a router could read as its own configuration::

    name: hybrid                        # default: the file's stem
    pools:                              # one or more; a name is letters, digits, - _ .
      wafer:
        plan: llama.wse3.plan.json      # a plan with a load model, read relative to this
                                        # file's folder (never outside it)
        replicas: 1                     # engines running the plan (default 1); a plan
                                        # with dp > 1 counts as dp engines per replica
        max_batch: 64                   # optional: sequences per engine (vLLM --max-num-seqs)
        token_budget: 4096              # optional: tokens per iteration (--max-num-batched-tokens)
      gpu:
        plan: llama.h100x2.plan.json
        replicas: 2
    routing:                            # one of:
      {policy: slo-class, classes: {interactive: wafer, batch: gpu}}
      {policy: prompt-length, threshold_tokens: 1024, short: wafer, long: gpu}
      {policy: overflow, primary: wafer, fallback: gpu, queue_threshold: 32}
      {policy: weighted, weights: {wafer: 3, gpu: 1}}
    fallback: gpu                       # optional: where a failed pool's requests go
    slo:                                # optional, per request class
      interactive: {ttft_p99_s: 0.45, tpot_p99_s: 0.04}
      batch: {ttft_p99_s: 2.0, tpot_p99_s: 0.2}
    recovery_window_s: 10               # optional (default 10): see `fleet_report`

The policies are defined in `routing` (``slo-class`` needs a workload whose
requests carry classes: its ``classes:`` mix); inside a pool a request goes to
the replica with the fewest outstanding requests. A class without an entry
under ``slo`` is held to the workload's SLO.

Faults are not part of the file (they are an experiment, not a configuration):
``POOL@T[:DURATION]`` (`parse_fault`) takes pool POOL down at T seconds, for
DURATION seconds or to the end of the run; what happens then is in `fleet`.

Every error is a `UsageError` naming the file and the field:
``deployment hybrid.yaml: pools.gpu.replicas must be a positive integer, got 0``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from partitioner.errors import UsageError
from partitioner.simulate.serving.routing import (
    OverflowRouting,
    PromptLengthRouting,
    Routing,
    SloClassRouting,
    WeightedRouting,
)
from partitioner.simulate.serving.workload import Slo
from partitioner.simulate.serving.workload_file import FieldReader

__all__ = [
    "PoolSpec",
    "Deployment",
    "Fault",
    "check_faults",
    "load_deployment",
    "parse_deployment",
    "parse_fault",
]

TOP_KEYS = {"name", "pools", "routing", "fallback", "slo", "recovery_window_s"}
POOL_KEYS = {"plan", "replicas", "max_batch", "token_budget"}
POLICY_KEYS = {
    "slo-class": {"classes"},
    "prompt-length": {"threshold_tokens", "short", "long"},
    "overflow": {"primary", "fallback", "queue_threshold"},
    "weighted": {"weights"},
}
POOL_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class PoolSpec:
    """One pool as the file gives it.

    Attributes:
        name: The pool's name.
        plan_path: Its plan file (resolved, inside the deployment file's folder).
        replicas: Copies of the plan serving the pool.
        max_batch: Sequences per engine, or None for the command line's default.
        token_budget: Tokens per iteration, or None for the command line's default.
    """

    name: str
    plan_path: Path
    replicas: int = 1
    max_batch: int | None = None
    token_budget: int | None = None


@dataclass(frozen=True)
class Deployment:
    """A deployment file, parsed (format in the module doc).

    Attributes:
        name: Its name.
        pools: The pools, in the file's order.
        routing: The routing policy.
        fallback: The pool taking a failed pool's requests, or None.
        class_slos: ``(class, Slo)`` pairs.
        recovery_window_s: How long latency must stay in SLO to count as recovered.
    """

    name: str
    pools: tuple[PoolSpec, ...]
    routing: Routing
    fallback: str | None = None
    class_slos: tuple[tuple[str, Slo], ...] = ()
    recovery_window_s: float = 10.0

    def pool_names(self) -> tuple[str, ...]:
        return tuple(pool.name for pool in self.pools)


@dataclass(frozen=True)
class Fault:
    """Pool ``pool`` is down from ``start_s`` for ``duration_s`` (None: to the end)."""

    pool: str
    start_s: float
    duration_s: float | None = None

    @property
    def end_s(self) -> float | None:
        return None if self.duration_s is None else self.start_s + self.duration_s


def _name(f: FieldReader, value: object, where: str) -> str:
    if not isinstance(value, str) or not POOL_NAME.fullmatch(value):
        raise f.error(f"{where} must be a pool name (letters, digits, - _ .), got {value!r}")
    return value


def _plan_path(f: FieldReader, value: object, where: str, folder: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise f.error(f"{where} must name a plan file, got {value!r}")
    return f.inside(folder, value, where)


def _pool(f: FieldReader, name: object, value: object, folder: Path) -> PoolSpec:
    where = f"pools.{name}"
    pool = _name(f, name, f"the pool name {where}")
    spec = f.mapping(value, where, POOL_KEYS)
    if "plan" not in spec:
        raise f.error(f"{where}.plan is required")
    limits = [
        None if spec.get(key) is None else f.integer(spec[key], f"{where}.{key}")
        for key in ("max_batch", "token_budget")
    ]
    return PoolSpec(
        pool,
        _plan_path(f, spec["plan"], f"{where}.plan", folder),
        f.integer(spec.get("replicas", 1), f"{where}.replicas"),
        *limits,
    )


def _pool_ref(f: FieldReader, value: object, where: str, pools: set[str]) -> str:
    name = _name(f, value, where)
    if name not in pools:
        raise f.error(f"{where} names pool {name!r}, which is not in pools")
    return name


def _routing(f: FieldReader, value: object, pools: set[str]) -> Routing:
    policy = value.get("policy") if isinstance(value, Mapping) else None
    if policy not in POLICY_KEYS:
        raise f.error(f"routing.policy must be one of {', '.join(POLICY_KEYS)}; got {policy!r}")
    spec = f.mapping(value, "routing", {"policy"} | POLICY_KEYS[policy])
    for key in sorted(POLICY_KEYS[policy]):
        if key not in spec:
            raise f.error(f"routing.{key} is required for policy {policy}")
    if policy == "prompt-length":
        return PromptLengthRouting(
            f.integer(spec["threshold_tokens"], "routing.threshold_tokens"),
            _pool_ref(f, spec["short"], "routing.short", pools),
            _pool_ref(f, spec["long"], "routing.long", pools),
        )
    if policy == "overflow":
        return OverflowRouting(
            _pool_ref(f, spec["primary"], "routing.primary", pools),
            _pool_ref(f, spec["fallback"], "routing.fallback", pools),
            f.integer(spec["queue_threshold"], "routing.queue_threshold"),
        )
    key = "classes" if policy == "slo-class" else "weights"
    table = spec[key]
    if not isinstance(table, Mapping) or not table:
        raise f.error(f"routing.{key} must be a non-empty mapping, got {table!r}")
    if policy == "slo-class":
        return SloClassRouting(
            tuple(
                (_class(f, c, "routing.classes"), _pool_ref(f, p, f"routing.classes.{c}", pools))
                for c, p in table.items()
            )
        )
    weights = tuple(
        (
            _pool_ref(f, p, "a pool in routing.weights", pools),
            f.number(w, f"routing.weights.{p}", zero_ok=True),
        )
        for p, w in table.items()
    )
    if sum(w for _, w in weights) <= 0:
        raise f.error("routing.weights must give some pool a positive weight")
    return WeightedRouting(weights)


def _class(f: FieldReader, value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise f.error(f"a class name in {where} must be text, got {value!r}")
    return value


def _class_slos(f: FieldReader, value: object) -> tuple[tuple[str, Slo], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise f.error(f"slo must map classes to targets, got {value!r}")
    slos = []
    for name, targets in value.items():
        where = f"slo.{_class(f, name, 'slo')}"
        spec = f.mapping(targets, where, {"ttft_p99_s", "tpot_p99_s"})
        if not spec:
            raise f.error(f"{where} must give ttft_p99_s, tpot_p99_s or both")
        ttft, tpot = spec.get("ttft_p99_s"), spec.get("tpot_p99_s")
        slos.append(
            (
                name,
                Slo(
                    None if ttft is None else f.number(ttft, f"{where}.ttft_p99_s"),
                    None if tpot is None else f.number(tpot, f"{where}.tpot_p99_s"),
                ),
            )
        )
    return tuple(slos)


def parse_deployment(data: object, label: str, folder: Path, default_name: str) -> Deployment:
    """A `Deployment` from a parsed YAML document (the format in the module doc).

    Raises:
        UsageError: A field is missing, unknown or out of range; one line naming it.
    """
    f = FieldReader(label, "deployment")
    data = f.mapping(data, "the document", TOP_KEYS)
    name = data.get("name", default_name)
    if not isinstance(name, str):
        raise f.error(f"name must be text, got {name!r}")
    if "pools" not in data:
        raise f.error("pools is required")
    if not isinstance(data["pools"], Mapping) or not data["pools"]:
        raise f.error(f"pools must map pool names to pools, got {data['pools']!r}")
    pools = tuple(_pool(f, n, spec, folder) for n, spec in data["pools"].items())
    if "routing" not in data:
        raise f.error("routing is required")
    names = {pool.name for pool in pools}
    fallback = data.get("fallback")
    return Deployment(
        name=name,
        pools=pools,
        routing=_routing(f, data["routing"], names),
        fallback=None if fallback is None else _pool_ref(f, fallback, "fallback", names),
        class_slos=_class_slos(f, data.get("slo")),
        recovery_window_s=f.number(data.get("recovery_window_s", 10.0), "recovery_window_s"),
    )


def load_deployment(path: Path) -> Deployment:
    """Read a deployment file.

    Raises:
        UsageError: The file cannot be read, is not YAML, or is not a deployment.
    """
    data = FieldReader(path.name, "deployment").read_yaml(path)
    return parse_deployment(data, path.name, path.parent, path.stem)


def _seconds(text: str, what: str, spec: str, *, zero_ok: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0 and value < float("inf")) or (value == 0 and not zero_ok):
        kind = "a non-negative" if zero_ok else "a positive"
        raise UsageError(f"--fail {spec}: {what} must be {kind} number of seconds, got {text!r}")
    return value


def parse_fault(spec: str, deployment: Deployment) -> Fault:
    """``POOL@T[:DURATION]`` (seconds) as a `Fault` of one of ``deployment``'s pools.

    Raises:
        UsageError: The text is malformed or names no pool of the deployment.
    """
    pool, at, when = spec.partition("@")
    if not at or not pool:
        raise UsageError(f"--fail {spec}: give POOL@T or POOL@T:DURATION (seconds)")
    if pool not in deployment.pool_names():
        raise UsageError(
            f"--fail {spec}: the deployment has no pool {pool!r} "
            f"(pools: {', '.join(deployment.pool_names())})"
        )
    start, colon, duration = when.partition(":")
    return Fault(
        pool,
        _seconds(start, "T", spec, zero_ok=True),
        _seconds(duration, "DURATION", spec, zero_ok=False) if colon else None,
    )


def check_faults(faults: list[Fault]) -> None:
    """Refuse two faults of one pool whose windows overlap.

    Raises:
        UsageError: Naming the two.
    """
    ordered = sorted(faults, key=lambda fault: (fault.pool, fault.start_s))
    for first, second in zip(ordered, ordered[1:], strict=False):
        end = first.end_s
        if first.pool == second.pool and (end is None or end > second.start_s):
            raise UsageError(
                f"--fail: pool {first.pool} is already down at {second.start_s:g} s "
                f"(down from {first.start_s:g} s)"
            )
