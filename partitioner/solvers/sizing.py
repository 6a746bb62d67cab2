"""How many cores each region gets, and which rectangle shapes it may take.

Regions of one wafer run concurrently (layer pipelining), so the slowest
region bounds throughput. Sizing balances them: it finds the smallest time T
such that giving every region the fewest tiles that (a) hold its bytes in SRAM
and (b) compute it within T fits in the wafer's tile budget, by bisection on T.
A region's time falls with its tiles only up to a point: the mesh term of
its reductions grows with its sides (WaferLLM's PLMR), so no region gets more
than its fastest size, and tiles beyond every region's fastest size stay
free. Times come from the cost model through the caller's ``time_s(region, tiles)``.

Shapes: near-square rectangles of at least the region's tile count, with a
bounded aspect ratio and little waste, so the floorplanner has a choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["SizedRegion", "size_regions", "shape_options", "SizingError"]


class SizingError(Exception):
    """The regions cannot fit the tile budget even at their memory minimum."""


@dataclass(frozen=True)
class SizedRegion:
    """Tiles for one region: the memory minimum and the balanced allotment."""

    min_tiles: int
    tiles: int


def _fastest_size(region: int, lo: int, hi: int, time_s: Callable[[int, int], float]) -> int:
    """Tiles in [lo, hi] where the region is fastest.

    More tiles divide the work but lengthen the reductions across the region
    (the mesh term grows with its sides), so time falls and then rises:
    ternary search on this unimodal curve.
    """
    while hi - lo > 2:
        a = lo + (hi - lo) // 3
        b = hi - (hi - lo) // 3
        if time_s(region, a) <= time_s(region, b):
            hi = b
        else:
            lo = a
    return min(range(lo, hi + 1), key=lambda n: (time_s(region, n), n))


def _tiles_for_time(
    region: int, target_s: float, min_tiles: int, limit: int, time_s: Callable[[int, int], float]
) -> int:
    """Fewest tiles in [min_tiles, limit] with time <= target_s (time falls there), else limit + 1."""
    if time_s(region, min_tiles) <= target_s:
        return min_tiles
    if time_s(region, limit) > target_s:
        return limit + 1
    lo, hi = min_tiles, limit  # time(lo) > target >= time(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if time_s(region, mid) <= target_s:
            hi = mid
        else:
            lo = mid
    return hi


def size_regions(
    min_tiles: Sequence[int],
    budget_tiles: int,
    time_s: Callable[[int, int], float],
    *,
    iterations: int = 60,
) -> list[SizedRegion]:
    """Tiles per region minimising the slowest region's time within ``budget_tiles``.

    Args:
        min_tiles: tiles each region needs for its bytes (at least 1).
        budget_tiles: tiles available for all regions together.
        time_s: ``time_s(region, tiles)``, the region's compute seconds on that many tiles.

    Raises:
        SizingError: the memory minimums alone exceed the budget.
    """
    n = len(min_tiles)
    need = sum(min_tiles)
    if need > budget_tiles:
        raise SizingError(
            f"regions need {need} tiles for their bytes alone; {budget_tiles} are available"
        )
    most = budget_tiles - (need - max(min_tiles, default=0))  # most one region could get
    # Past its fastest size a region only slows down: never give it more.
    limits = [_fastest_size(i, min_tiles[i], max(min_tiles[i], most), time_s) for i in range(n)]
    lo = max((time_s(i, limits[i]) for i in range(n)), default=0.0)  # no allotment beats this
    hi = max(time_s(i, min_tiles[i]) for i in range(n)) if n else 0.0
    best = [min_tiles[i] for i in range(n)]
    if sum(limits) <= budget_tiles:
        return [SizedRegion(m, t) for m, t in zip(min_tiles, limits, strict=True)]
    for _ in range(iterations):
        mid = (lo + hi) / 2
        tiles = [_tiles_for_time(i, mid, min_tiles[i], limits[i], time_s) for i in range(n)]
        if sum(tiles) <= budget_tiles:
            hi, best = mid, tiles
        else:
            lo = mid
        if hi - lo <= hi * 1e-6:
            break
    return [SizedRegion(m, t) for m, t in zip(min_tiles, best, strict=True)]


def shape_options(
    tiles: int, grid_w: int, grid_h: int, *, max_aspect: float = 4.0, max_options: int = 5
) -> list[tuple[int, int]]:
    """Rectangles (w, h) in tiles with w·h >= tiles that fit the grid, least waste first.

    Keeps shapes within ``max_aspect`` (falling back to the least-waste shapes
    when none is), spread across aspect ratios so placement has real choices.
    """
    candidates = []
    for w in range(1, min(grid_w, tiles) + 1):
        h = math.ceil(tiles / w)
        if h > grid_h:
            continue
        aspect = max(w / h, h / w)
        candidates.append((w * h - tiles, aspect, w, h))
    if not candidates:
        return []
    within = [c for c in candidates if c[1] <= max_aspect] or candidates
    waste_cap = min(c[0] for c in within) + max(1, tiles // 8)
    good = sorted((c for c in within if c[0] <= waste_cap), key=lambda c: (c[1], c[0]))
    picked: list[tuple[int, int]] = []
    for _, _, w, h in good:
        if (w, h) not in picked:
            picked.append((w, h))
        if len(picked) == max_options:
            break
    return picked
