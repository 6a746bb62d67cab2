"""Prompt and output lengths: fixed, or drawn from a distribution, in whole tokens.

Every draw is rounded to the nearest token and clipped to ``[min, max]``
(clipping, not redrawing, so a seed's draws do not depend on the bounds' tails;
the clipped mass sits on the bounds). ``min`` defaults to 1: a request has at
least one prompt token and produces at least one output token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "FixedLength",
    "UniformLength",
    "LognormalLength",
    "NormalLength",
    "LengthSpec",
]


def _clipped(draws: np.ndarray, min_tokens: int, max_tokens: int | None) -> np.ndarray:
    tokens = np.rint(draws)
    upper = np.inf if max_tokens is None else max_tokens
    return np.clip(tokens, min_tokens, upper).astype(np.int64)


@dataclass(frozen=True)
class FixedLength:
    """Every request has ``tokens`` tokens."""

    tokens: int

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return np.full(count, self.tokens, dtype=np.int64)

    def to_dict(self) -> int:
        return self.tokens


@dataclass(frozen=True)
class UniformLength:
    """Uniform integers in ``[min_tokens, max_tokens]``, both included."""

    min_tokens: int
    max_tokens: int

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return rng.integers(self.min_tokens, self.max_tokens + 1, size=count, dtype=np.int64)

    def to_dict(self) -> dict[str, object]:
        return {"distribution": "uniform", "min": self.min_tokens, "max": self.max_tokens}


@dataclass(frozen=True)
class LognormalLength:
    """``exp(N(ln median, sigma²))``, rounded and clipped; its mean is ``median·exp(sigma²/2)``
    before clipping."""

    median_tokens: float
    sigma: float
    min_tokens: int = 1
    max_tokens: int | None = None

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        draws = rng.lognormal(np.log(self.median_tokens), self.sigma, size=count)
        return _clipped(draws, self.min_tokens, self.max_tokens)

    def to_dict(self) -> dict[str, object]:
        return {
            "distribution": "lognormal",
            "median": self.median_tokens,
            "sigma": self.sigma,
            "min": self.min_tokens,
            "max": self.max_tokens,
        }


@dataclass(frozen=True)
class NormalLength:
    """``N(mean, std²)``, rounded and clipped."""

    mean_tokens: float
    std_tokens: float
    min_tokens: int = 1
    max_tokens: int | None = None

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        draws = rng.normal(self.mean_tokens, self.std_tokens, size=count)
        return _clipped(draws, self.min_tokens, self.max_tokens)

    def to_dict(self) -> dict[str, object]:
        return {
            "distribution": "normal",
            "mean": self.mean_tokens,
            "std": self.std_tokens,
            "min": self.min_tokens,
            "max": self.max_tokens,
        }


LengthSpec = FixedLength | UniformLength | LognormalLength | NormalLength
