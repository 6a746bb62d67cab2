"""Routing policies of a deployment: which pool each arriving request goes to.

Four policies, each a frozen description (what a deployment file says) that
`Router` turns into decisions:

- `SloClassRouting`: by the request's class (``interactive`` to the wafer
  pool, ``batch`` to the GPUs); every class the workload draws must be mapped.
- `PromptLengthRouting`: prompts shorter than ``threshold_tokens`` go to
  ``short``, the others to ``long``.
- `OverflowRouting`: to ``primary`` unless the requests waiting there (queued
  for admission on all its replicas, the one arriving now not counted) number
  ``queue_threshold`` or more, or it is down (`fleet`); then to ``fallback``.
- `WeightedRouting`: smooth weighted round robin (nginx's): before each pick
  every pool's credit grows by its weight, the pool with the most credit (the
  first listed on a tie) takes the request and gives back the total weight.
  Over any run of requests each pool's share is within one request of its
  weight's share, and the sequence is a function of the weights alone, so a
  seed (which fixes the arrivals) fixes the routing. Weights are read as exact
  decimals, so ties fall the way they do by hand.

Inside a pool a request goes to the replica with the fewest outstanding
requests (queued or running), the first replica on a tie: `fleet`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from partitioner.errors import UsageError
from partitioner.simulate.serving.workload import Requests

__all__ = [
    "SloClassRouting",
    "PromptLengthRouting",
    "OverflowRouting",
    "WeightedRouting",
    "Routing",
    "Router",
]


@dataclass(frozen=True)
class SloClassRouting:
    """``classes``: ``(class, pool)`` pairs."""

    classes: tuple[tuple[str, str], ...]

    def pools(self) -> tuple[str, ...]:
        return tuple(pool for _, pool in self.classes)

    def to_json(self) -> dict[str, Any]:
        return {"policy": "slo-class", "classes": dict(self.classes)}


@dataclass(frozen=True)
class PromptLengthRouting:
    """Prompts of fewer than ``threshold_tokens`` tokens to ``short``, the rest to ``long``."""

    threshold_tokens: int
    short: str
    long: str

    def pools(self) -> tuple[str, ...]:
        return (self.short, self.long)

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": "prompt-length",
            "threshold_tokens": self.threshold_tokens,
            "short": self.short,
            "long": self.long,
        }


@dataclass(frozen=True)
class OverflowRouting:
    """To ``primary`` unless ``queue_threshold`` or more requests wait there."""

    primary: str
    fallback: str
    queue_threshold: int

    def pools(self) -> tuple[str, ...]:
        return (self.primary, self.fallback)

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": "overflow",
            "primary": self.primary,
            "fallback": self.fallback,
            "queue_threshold": self.queue_threshold,
        }


@dataclass(frozen=True)
class WeightedRouting:
    """``weights``: ``(pool, weight)`` pairs, weights >= 0 with a positive total."""

    weights: tuple[tuple[str, float], ...]

    def pools(self) -> tuple[str, ...]:
        return tuple(pool for pool, _ in self.weights)

    def to_json(self) -> dict[str, Any]:
        return {"policy": "weighted", "weights": dict(self.weights)}


Routing = SloClassRouting | PromptLengthRouting | OverflowRouting | WeightedRouting


def _integer_weights(weights: Sequence[float]) -> list[int]:
    """The weights scaled to integers in the same ratios (read as exact decimals)."""
    exact = [Fraction(repr(float(w))) for w in weights]
    scale = math.lcm(*(f.denominator for f in exact))
    return [int(f * scale) for f in exact]


class Router:
    """Picks a pool index for each request (mutable: the weighted policy keeps credits).

    Args:
        routing: The policy.
        pools: The deployment's pool names; pool indices refer to this order.
        requests: The requests routed (their classes and prompt lengths).
        label: What errors call the deployment.

    Raises:
        UsageError: The policy names a pool that is not listed, or (by class) the
            requests carry no classes or a class the policy does not map.
    """

    def __init__(
        self, routing: Routing, pools: Sequence[str], requests: Requests, label: str
    ) -> None:
        index = {name: i for i, name in enumerate(pools)}
        for name in routing.pools():
            if name not in index:
                raise UsageError(f"{label}: routing names pool {name!r}, which is not in pools")
        self.routing, self.index, self.requests = routing, index, requests
        self.credits = [0] * len(pools)
        self.weights: list[tuple[int, int]] = []
        self.by_class: dict[str, int] = {}
        self.class_pool: list[int] = []  # per request, by class
        if isinstance(routing, WeightedRouting):
            scaled = _integer_weights([w for _, w in routing.weights])
            self.weights = [
                (index[p], w) for (p, _), w in zip(routing.weights, scaled, strict=True)
            ]
        if isinstance(routing, SloClassRouting):
            self.by_class = {cls: index[pool] for cls, pool in routing.classes}
            self._check_classes(label)
            assert requests.classes is not None
            self.class_pool = [self.by_class[c] for c in requests.classes.tolist()]

    def _check_classes(self, label: str) -> None:
        classes = self.requests.classes
        if classes is None:
            raise UsageError(
                f"{label}: routing by slo-class needs requests with classes "
                "(give the workload a classes: mix)"
            )
        for name in sorted(set(classes.tolist())):
            if name not in self.by_class:
                raise UsageError(
                    f"{label}: the workload has class {name!r}, which routing.classes "
                    "does not map to a pool"
                )

    def choose(self, request: int, waiting: Callable[[int], int]) -> int:
        """The pool index for ``request``; ``waiting(pool)`` gives the requests queued there now."""
        routing = self.routing
        if isinstance(routing, SloClassRouting):
            return self.class_pool[request]
        if isinstance(routing, PromptLengthRouting):
            short = self.requests.prompt_tokens[request] < routing.threshold_tokens
            return self.index[routing.short if short else routing.long]
        if isinstance(routing, OverflowRouting):
            primary = self.index[routing.primary]
            if waiting(primary) < routing.queue_threshold:
                return primary
            return self.index[routing.fallback]
        return self._weighted()

    def _weighted(self) -> int:
        credits, total = self.credits, sum(w for _, w in self.weights)
        best = -1
        for pool, weight in self.weights:
            credits[pool] += weight
            if best < 0 or credits[pool] > credits[best]:
                best = pool
        credits[best] -= total
        return best
