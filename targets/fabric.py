"""Geometry of a 2-D core mesh: hops, X-then-Y routes, link loads, region boundaries.

Cores are ``(x, y)`` with x the column and y the row. A directed link is a
pair of neighbouring cores ``((x, y), (x', y'))``. A region is a rectangle
``(x, y, w, h)`` of cores: columns ``x .. x+w-1``, rows ``y .. y+h-1``.
Routing is dimension-ordered, X first then Y, as Cerebras' static routes
and most mesh NoCs do; it is deterministic, so link loads are reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "Coord",
    "DirectedLink",
    "Rect",
    "center_hops",
    "manhattan_hops",
    "region_center",
    "transfer_lanes",
    "region_hops",
    "route_link_loads",
    "shared_boundary_links",
    "xy_route",
]

Coord = tuple[int, int]
DirectedLink = tuple[Coord, Coord]
Rect = tuple[int, int, int, int]


def manhattan_hops(a: Coord, b: Coord) -> int:
    """Hops between two cores on a mesh: |dx| + |dy|."""
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def _step(a: int, b: int) -> int:
    return (b > a) - (b < a)


def xy_route(src: Coord, dst: Coord) -> list[DirectedLink]:
    """The links a packet crosses from ``src`` to ``dst``: along x first, then along y.

    Example: ``(0, 0) -> (2, 1)`` is ``[((0,0),(1,0)), ((1,0),(2,0)), ((2,0),(2,1))]``.
    """
    route: list[DirectedLink] = []
    x, y = src
    dx, dy = _step(x, dst[0]), _step(y, dst[1])
    while x != dst[0]:
        route.append(((x, y), (x + dx, y)))
        x += dx
    while y != dst[1]:
        route.append(((x, y), (x, y + dy)))
        y += dy
    return route


def route_link_loads(flows: Iterable[tuple[Coord, Coord, float]]) -> dict[DirectedLink, float]:
    """Bytes each directed link carries when every flow takes its X-then-Y route.

    Args:
        flows: ``(src_core, dst_core, nbytes)`` triples.

    Returns:
        Link -> summed bytes, for links that carry anything; insertion order
        follows the flows, so the result is deterministic.
    """
    loads: dict[DirectedLink, float] = {}
    for src, dst, nbytes in flows:
        if nbytes < 0:
            raise ValueError(f"flow {src}->{dst} has negative bytes {nbytes}")
        for link in xy_route(src, dst):
            loads[link] = loads.get(link, 0) + nbytes
    return loads


def _gap(a0: int, a_len: int, b0: int, b_len: int) -> int:
    """Hops along one axis between the nearest cores of two intervals; 0 if they overlap."""
    return max(0, b0 - (a0 + a_len - 1), a0 - (b0 + b_len - 1))


def region_hops(a: Rect, b: Rect) -> int:
    """Fewest hops from a core of region ``a`` to a core of region ``b`` (1 when adjacent)."""
    return _gap(a[0], a[2], b[0], b[2]) + _gap(a[1], a[3], b[1], b[3])


def _overlap(a0: int, a_len: int, b0: int, b_len: int) -> int:
    return max(0, min(a0 + a_len, b0 + b_len) - max(a0, b0))


def shared_boundary_links(a: Rect, b: Rect) -> int:
    """Links (per direction) that join region ``a`` to region ``b`` directly.

    Two regions side by side share one link per row (or column) of their
    common edge; regions that do not touch along an edge share none.
    """
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    if ax + aw == bx or bx + bw == ax:
        return _overlap(ay, ah, by, bh)
    if ay + ah == by or by + bh == ay:
        return _overlap(ax, aw, bx, bw)
    return 0


def region_center(r: Rect) -> Coord:
    """The core at the middle of a region (rounded towards its origin)."""
    x, y, w, h = r
    return (x + w // 2, y + h // 2)


def center_hops(a: Rect, b: Rect) -> int:
    """Hops between the centres of two regions.

    A region's tensor is spread over all its cores, so on average an element
    travels from the middle of one region to the middle of the other: this is
    the ``hops`` of a transfer, and what the floorplanner's Σ bytes × hops counts.
    """
    return manhattan_hops(region_center(a), region_center(b))


def transfer_lanes(a: Rect, b: Rect) -> int:
    """Parallel links a transfer between two regions spreads over.

    Regions side by side use every link of their common edge; others send
    along as many parallel rows (or columns) as the narrower side of either
    region allows.
    """
    shared = shared_boundary_links(a, b)
    if shared:
        return shared
    return max(1, min(a[2], a[3], b[2], b[3]))
