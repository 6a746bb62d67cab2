"""Which bound dims of a decode step are its batch and its past, and which move with the
past: what a load model is fitted over (`partitioner.planning.load_fit`)."""

from __future__ import annotations

from collections.abc import Mapping

from passes.errors import ModelError
from passes.ir import Graph

__all__ = [
    "BATCH_NAMES",
    "PAST_NAMES",
    "serving_dims",
    "past_followers",
    "dims_at",
    "check_shapes_known",
]

BATCH_NAMES = ("batch", "batch_size", "batchsize", "n")
PAST_NAMES = ("past", "past_len", "past_length", "past_seq_len", "past_sequence_length")


def serving_dims(graph: Graph) -> dict[str, str] | None:
    """``{"batch": name, "past": name}`` among the dims the user bound, or None."""
    if not any(t.is_kv_cache for t in graph.iter_tensors()):
        return None
    bound = {name.lower(): name for name in graph.dims}
    batch = next((bound[n] for n in BATCH_NAMES if n in bound), None)
    past = next((bound[n] for n in PAST_NAMES if n in bound), None)
    return {"batch": batch, "past": past} if batch and past else None


# words in the name of a dim that can count the cache's rows: exporters name the
# attention mask's length "total_sequence_length" (onnxruntime-genai, Hugging Face's
# exports) or "past_sequence_length + 1" (older optimum exports)
LENGTH_WORDS = ("total", "past", "seq", "len", "kv", "cache", "context", "ctx")


def past_followers(graph: Graph, dims: Mapping[str, str]) -> dict[str, int]:
    """The other bound dims that move with the past: their offset from it.

    A decode step's attention mask spans the cache and the new token, so its length
    is past + 1 at every point; held at the plan's value while the past moves, the
    graph would contradict itself. A dim follows the past when its name says it
    counts rows and it was bound to the past or one more.
    """
    past = graph.dims[dims["past"]]
    return {
        name: value - past
        for name, value in graph.dims.items()
        if name not in dims.values()
        and value - past in (0, 1)
        and any(word in name.lower() for word in LENGTH_WORDS)
    }


def dims_at(graph: Graph, dims: Mapping[str, str], point: tuple[int, int]) -> dict[str, int]:
    """Every bound dim at (batch, past) ``point``, the past's followers moved with it."""
    followers = past_followers(graph, dims)
    bound = {**graph.dims, dims["batch"]: point[0], dims["past"]: point[1]}
    return {**bound, **{name: point[1] + offset for name, offset in followers.items()}}


def check_shapes_known(
    graph: Graph, at_point: Graph, bound: Mapping[str, int], dims: Mapping[str, str]
) -> None:
    """Raise ModelError when shape inference at another point loses a shape it knew at the
    plan's dims: a dim held at its value contradicts the moved ones."""
    lost = [name for name, t in graph.tensors.items()
            if t.is_static and (moved := at_point.tensors.get(name)) is not None
            and not moved.is_static]  # fmt: skip
    if lost:
        point = ", ".join(f"{name}={bound[name]}" for name in dims.values())
        held = [f"{n}={v}" for n, v in bound.items() if n not in dims.values()]
        raise ModelError(
            f"at {point}, shape inference no longer knows {lost[0]!r}; a dim held at its value "
            f"({', '.join(held) or 'none'}) may move with the past: name it so, e.g. "
            "total_sequence_length"
        )
