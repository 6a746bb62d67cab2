"""A plan's load model: what each stage computes at any batch and context, as polynomials.

A decode-step graph with symbolic ``batch`` and ``past`` dims does work that is
a polynomial of low degree in them: a projection's FLOPs grow with the batch,
attention's with batch × past, the weights' bytes not at all. The planner
evaluates the analysis at a few (batch, past) points and solves for the exact
coefficients (`partitioner.planning.load_fit`); this module holds them and
evaluates them, so `simulate` and serving stacks can price any iteration
without the ONNX file. Seconds come from the plan's target and the one cost
model (`targets.cost`), never from here.

Every polynomial is a list of coefficients over `MONOMIALS`, the exponents of
(batch, past) of total degree at most 2: ``1, b, p, b², b·p, p²``.

A plan made with a second, prefill file (`partitioner.planning.prefill_fit`)
also holds that graph's load model as ``prefill``: polynomials in (batch, seq)
over `PREFILL_MONOMIALS`, ``1, b, s, b·s, s², b·s²`` (a prompt's attention
grows with seq², and prompts of a batch are independent), with the file it
came from as ``source``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MONOMIALS",
    "PREFILL_MONOMIALS",
    "BATCH_PAST",
    "LoadModel",
    "LoadTerm",
    "LoadCollective",
    "LoadStage",
    "LoadTransfer",
    "evaluate",
    "load_model_from_dict",
]

#: Exponents of (batch, past) for each coefficient, in order.
MONOMIALS: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2))
#: Exponents of (batch, seq) for a prefill graph's coefficients, in order.
PREFILL_MONOMIALS: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2))
#: Where the b·p coefficient sits: per sequence and token of context (a KV cache's bytes).
BATCH_PAST = MONOMIALS.index((1, 1))
#: Roles of the dims the polynomials are in, in `MONOMIALS` order.
ROLES = ("batch", "past")

Poly = tuple[float, ...]


def evaluate(
    poly: Sequence[float],
    batch: float,
    past: float,
    monomials: Sequence[tuple[int, int]] = MONOMIALS,
) -> float:
    """The polynomial's value at (batch, past), or at (batch, seq) over `PREFILL_MONOMIALS`."""
    return sum(c * batch**i * past**j for c, (i, j) in zip(poly, monomials, strict=True))


def _poly(value: Any, where: str) -> Poly:
    if not isinstance(value, list) or len(value) != len(MONOMIALS):
        raise ValueError(f"{where} must list {len(MONOMIALS)} coefficients")
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class LoadTerm:
    """``count`` identical kernels on one rank of a stage: FLOPs and bytes moved each, the
    launches they cost (GPU) and the contractions among them (a wafer's mesh term)."""

    count: int
    dtype: str
    kernels: int
    matmuls: int
    flops: Poly
    bytes: Poly


@dataclass(frozen=True)
class LoadCollective:
    """``count`` identical collectives of a stage's group: bytes of the whole tensor each."""

    count: int
    kind: str
    bytes: Poly


@dataclass(frozen=True)
class LoadStage:
    """One partition's work per step, per rank, and its KV cache bytes per rank."""

    partition: int
    terms: tuple[LoadTerm, ...]
    collectives: tuple[LoadCollective, ...]
    kv_cache_bytes: Poly


@dataclass(frozen=True)
class LoadTransfer:
    """A tensor between partitions (or the host, -1), its bytes."""

    src: int
    dst: int
    bytes: Poly


@dataclass(frozen=True)
class LoadModel:
    """The polynomials of every stage and transfer, and how well they fit.

    Attributes:
        dims: role ("batch", "past") -> the model's dim name.
        points: the (batch, past) points the coefficients were solved from.
        checked: points evaluated apart, where the polynomials were compared with
            the analysis (the plan's own dims among them).
        max_relative_error: the worst difference found there, over any FLOP or
            byte count (0 when every polynomial is exact).
        monomials: the basis: `MONOMIALS`, or `PREFILL_MONOMIALS` for ``prefill``.
        prefill: the load model of a prefill graph run on the same stages, when the
            plan was made with one (its dims are "batch" and "seq").
        source: for ``prefill``, the file it was fitted from: path (relative to the
            plan's folder) and sha256.
    """

    dims: Mapping[str, str]
    points: tuple[tuple[int, int], ...]
    checked: tuple[tuple[int, int], ...]
    max_relative_error: float
    stages: tuple[LoadStage, ...]
    transfers: tuple[LoadTransfer, ...]
    monomials: tuple[tuple[int, int], ...] = MONOMIALS
    prefill: LoadModel | None = None
    source: Mapping[str, str] | None = None

    def value(self, poly: Sequence[float], batch: float, second: float) -> float:
        """``poly`` of this model at (batch, past), or (batch, seq) for a prefill model."""
        return evaluate(poly, batch, second, self.monomials)

    def stage(self, partition: int) -> LoadStage:
        for s in self.stages:
            if s.partition == partition:
                return s
        raise KeyError(partition)

    def to_dict(self) -> dict[str, Any]:
        """The plan's ``load_model`` section."""
        return {
            **({"source": dict(self.source)} if self.source else {}),
            "dims": dict(self.dims),
            "monomials": [list(m) for m in self.monomials],
            "points": [list(p) for p in self.points],
            "checked": [list(p) for p in self.checked],
            "max_relative_error": self.max_relative_error,
            "stages": [_stage_dict(s) for s in self.stages],
            "transfers": [
                {"src": t.src, "dst": t.dst, "bytes": list(t.bytes)} for t in self.transfers
            ],
            **({"prefill": self.prefill.to_dict()} if self.prefill else {}),
        }


def _stage_dict(s: LoadStage) -> dict[str, Any]:
    return {
        "partition": s.partition,
        "terms": [
            {
                "count": t.count,
                "dtype": t.dtype,
                "kernels": t.kernels,
                "matmuls": t.matmuls,
                "flops": list(t.flops),
                "bytes": list(t.bytes),
            }
            for t in s.terms
        ],
        "collectives": [
            {"count": c.count, "kind": c.kind, "bytes": list(c.bytes)} for c in s.collectives
        ],
        "kv_cache_bytes": list(s.kv_cache_bytes),
    }


def load_model_from_dict(doc: Mapping[str, Any]) -> LoadModel:
    """Build from a plan's ``load_model`` section (already schema-checked).

    Raises:
        ValueError: the monomials are not `MONOMIALS` (a newer tool's basis) or a
            polynomial has the wrong length.
    """
    basis = PREFILL_MONOMIALS if "seq" in doc["dims"] else MONOMIALS
    if [tuple(m) for m in doc["monomials"]] != list(basis):
        raise ValueError("load_model.monomials is not the basis this version reads")
    stages = tuple(
        LoadStage(
            s["partition"],
            tuple(
                LoadTerm(
                    t["count"],
                    t["dtype"],
                    t["kernels"],
                    t["matmuls"],
                    _poly(t["flops"], "flops"),
                    _poly(t["bytes"], "bytes"),
                )
                for t in s["terms"]
            ),
            tuple(
                LoadCollective(c["count"], c["kind"], _poly(c["bytes"], "bytes"))
                for c in s["collectives"]
            ),
            _poly(s["kv_cache_bytes"], "kv_cache_bytes"),
        )
        for s in doc["stages"]
    )
    transfers = tuple(
        LoadTransfer(t["src"], t["dst"], _poly(t["bytes"], "bytes")) for t in doc["transfers"]
    )
    return LoadModel(
        dict(doc["dims"]),
        tuple((int(b), int(p)) for b, p in doc["points"]),
        tuple((int(b), int(p)) for b, p in doc["checked"]),
        float(doc["max_relative_error"]),
        stages,
        transfers,
        basis,
        load_model_from_dict(doc["prefill"]) if "prefill" in doc else None,
        dict(doc["source"]) if "source" in doc else None,
    )
