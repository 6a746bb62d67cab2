"""Geometry of a 2-D core mesh: hops, X-then-Y routes, link loads, region boundaries.

Cores are ``(x, y)`` with x the column and y the row. A directed link is a
pair of neighbouring cores ``((x, y), (x', y'))``. A region is a rectangle
``(x, y, w, h)`` of cores: columns ``x .. x+w-1``, rows ``y .. y+h-1``.
Routing is dimension-ordered, X first then Y, as Cerebras' static routes
and most mesh NoCs do; it is deterministic, so link loads are reproducible.

Directions: east is +x, west is -x, south is +y (the next row), north is -y.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Coord",
    "DirectedLink",
    "MeshLinkLoads",
    "Rect",
    "center_hops",
    "manhattan_hops",
    "mesh_link_loads",
    "region_center",
    "transfer_lanes",
    "transfer_paths",
    "region_hops",
    "route_link_loads",
    "shared_boundary_links",
    "split_bytes",
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


def _span(a0: int, a_len: int, b0: int, b_len: int) -> range:
    """Indices two intervals have in common."""
    return range(max(a0, b0), min(a0 + a_len, b0 + b_len))


def transfer_paths(a: Rect, b: Rect) -> list[tuple[Coord, Coord]]:
    """The ``transfer_lanes(a, b)`` parallel paths of a transfer from region ``a`` to ``b``.

    Each path is ``(src_core, dst_core)``, routed X then Y (`xy_route`), and no
    two paths of one transfer share a directed link:

    - side by side (a common vertical edge): one path per shared row, along
      that row from ``a``'s centre column to ``b``'s, so each crosses its own
      boundary link;
    - one above the other: one path per shared column, from ``a``'s centre row
      to ``b``'s;
    - apart (or touching at a corner): the ``L`` paths leave from a column of
      ``L`` cores centred on ``a``'s centre and arrive at a row of ``L`` cores
      centred on ``b``'s centre. Path i runs along its own row, then along its
      own column, so no link carries two paths. Rows pair with columns so that
      the paths are equally long (about `center_hops`).

    Example: ``(0,0,2,2) -> (2,0,2,2)`` is ``[((1,0),(3,0)), ((1,1),(3,1))]``.
    """
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    (acx, acy), (bcx, bcy) = region_center(a), region_center(b)
    # The same adjacency tests as shared_boundary_links, so the path count is transfer_lanes.
    if ax + aw == bx or bx + bw == ax:
        rows = _span(ay, ah, by, bh)
        if rows:
            return [((acx, y), (bcx, y)) for y in rows]
    elif ay + ah == by or by + bh == ay:
        cols = _span(ax, aw, bx, bw)
        if cols:
            return [((x, acy), (x, bcy)) for x in cols]
    lanes = transfer_lanes(a, b)
    rows_out = [acy - lanes // 2 + i for i in range(lanes)]
    cols_in = [bcx - lanes // 2 + i for i in range(lanes)]
    if (bcx - acx) * (bcy - acy) < 0:
        cols_in.reverse()  # up-right or down-left: the top row takes the far column
    return [((acx, y), (x, bcy)) for y, x in zip(rows_out, cols_in, strict=True)]


def split_bytes(nbytes: int, lanes: int) -> list[int]:
    """``nbytes`` in whole bytes over ``lanes`` paths: the first ``nbytes % lanes`` get one more.

    Whole bytes keep link loads exact integers, and the lanes add up to ``nbytes``.
    """
    if nbytes < 0 or lanes < 1:
        raise ValueError(f"need nbytes >= 0 and lanes >= 1, got {nbytes} and {lanes}")
    share, extra = divmod(int(nbytes), lanes)
    return [share + 1] * extra + [share] * (lanes - extra)


@dataclass(frozen=True, eq=False)
class MeshLinkLoads:
    """Bytes on every directed link of a ``width × height`` mesh.

    Attributes:
        width: Cores along x.
        height: Cores along y.
        east: ``east[y, x]`` is link ``(x, y) -> (x+1, y)``; shape (height, width-1).
        west: ``west[y, x]`` is link ``(x+1, y) -> (x, y)``; shape (height, width-1).
        south: ``south[y, x]`` is link ``(x, y) -> (x, y+1)``; shape (height-1, width).
        north: ``north[y, x]`` is link ``(x, y+1) -> (x, y)``; shape (height-1, width).
    """

    width: int
    height: int
    east: np.ndarray
    west: np.ndarray
    south: np.ndarray
    north: np.ndarray

    _DIRECTIONS = ("east", "west", "south", "north")

    def _link(self, direction: int, flat: int) -> DirectedLink:
        row_len = self.width - 1 if direction < 2 else self.width
        y, x = divmod(flat, row_len)
        return (
            ((x, y), (x + 1, y)),
            ((x + 1, y), (x, y)),
            ((x, y), (x, y + 1)),
            ((x, y + 1), (x, y)),
        )[direction]

    def load(self, link: DirectedLink) -> int:
        """Bytes on one directed link between neighbouring cores."""
        (x0, y0), (x1, y1) = link
        if (x1 - x0, y1 - y0) == (1, 0):
            return int(self.east[y0, x0])
        if (x1 - x0, y1 - y0) == (-1, 0):
            return int(self.west[y0, x1])
        if (x1 - x0, y1 - y0) == (0, 1):
            return int(self.south[y0, x0])
        if (x1 - x0, y1 - y0) == (0, -1):
            return int(self.north[y1, x0])
        raise ValueError(f"{link} does not join neighbouring cores")

    def max_bytes(self) -> int:
        """The load of the busiest link (0 when nothing moves)."""
        return max((int(getattr(self, d).max(initial=0)) for d in self._DIRECTIONS), default=0)

    def busiest(self, count: int) -> list[tuple[DirectedLink, int]]:
        """Up to ``count`` loaded links, busiest first.

        Ties go east, west, south, north, then row by row, so the order is reproducible.
        """
        flat = np.concatenate([getattr(self, d).ravel() for d in self._DIRECTIONS])
        loaded = np.flatnonzero(flat)
        if count < 1 or loaded.size == 0:
            return []
        if loaded.size > count:  # keep the candidates at or above the count-th load
            threshold = np.partition(flat[loaded], loaded.size - count)[loaded.size - count]
            loaded = loaded[flat[loaded] >= threshold]
        chosen = loaded[np.lexsort((loaded, -flat[loaded]))][:count]
        sizes = np.cumsum([0, *(getattr(self, d).size for d in self._DIRECTIONS)])
        out = []
        for index in chosen.tolist():
            direction = int(np.searchsorted(sizes, index, side="right")) - 1
            out.append((self._link(direction, index - int(sizes[direction])), int(flat[index])))
        return out

    def core_max(self) -> np.ndarray:
        """Per core ``[y, x]``: the largest load of the (up to four) links leaving it."""
        out = np.zeros((self.height, self.width), dtype=self.east.dtype)
        np.maximum(out[:, :-1], self.east, out=out[:, :-1])
        np.maximum(out[:, 1:], self.west, out=out[:, 1:])
        np.maximum(out[:-1, :], self.south, out=out[:-1, :])
        np.maximum(out[1:, :], self.north, out=out[1:, :])
        return out


def _leg(
    shape: tuple[int, int], at_start: tuple, at_end: tuple, nbytes: np.ndarray, axis: int
) -> np.ndarray:
    """Interval adds as a difference array, summed along ``axis``.

    The sum runs in place: one grid-sized array per leg, so memory is 8 bytes
    per core per direction, whatever the flows.
    """
    diff = np.zeros(shape, dtype=np.int64)
    np.add.at(diff, at_start, nbytes)
    np.add.at(diff, at_end, -nbytes)
    return np.cumsum(diff, axis=axis, out=diff)


def _flow_bytes(nbytes: Sequence[int] | np.ndarray) -> np.ndarray:
    """Bytes per flow as int64, refusing sizes whose sum a 64-bit link load cannot hold."""
    try:
        load = np.asarray(nbytes, dtype=np.int64).reshape(-1)
    except OverflowError:
        raise ValueError("a flow carries 2**63 bytes or more; link loads are 64-bit") from None
    if (load < 0).any():
        raise ValueError("flows must carry >= 0 bytes")
    # Every link load is at most the total, so a total below 2**63 cannot overflow int64.
    if sum(load.tolist()) > np.iinfo(np.int64).max:
        raise ValueError("the flows carry 2**63 bytes or more in all; link loads are 64-bit")
    return load


def mesh_link_loads(
    width: int,
    height: int,
    src: Sequence[Coord] | np.ndarray,
    dst: Sequence[Coord] | np.ndarray,
    nbytes: Sequence[int] | np.ndarray,
) -> MeshLinkLoads:
    """Bytes per directed link when flow i moves ``nbytes[i]`` from ``src[i]`` to ``dst[i]`` X-then-Y.

    The same loads as `route_link_loads`, computed for a whole grid at once:
    each leg of a route adds its bytes to an interval of one row or column,
    kept as a difference array and summed, so the cost is one pass over the
    grid plus one step per flow, never one per link.

    Raises:
        ValueError: A core outside the grid, negative bytes, or 2**63 bytes or more in all.
    """
    src_xy = np.asarray(src, dtype=np.int64).reshape(-1, 2)
    dst_xy = np.asarray(dst, dtype=np.int64).reshape(-1, 2)
    load = _flow_bytes(nbytes)
    if not len(src_xy) == len(dst_xy) == len(load):
        raise ValueError(
            f"need one src, dst and size per flow, got {len(src_xy)}, {len(dst_xy)}, {len(load)}"
        )
    for name, xy in (("src", src_xy), ("dst", dst_xy)):
        outside = (xy[:, 0] < 0) | (xy[:, 0] >= width) | (xy[:, 1] < 0) | (xy[:, 1] >= height)
        if outside.any():
            core = tuple(int(v) for v in xy[np.argmax(outside)])
            raise ValueError(f"{name} core {core} is outside the {width}x{height} grid")
    sx, sy, tx, ty = src_xy[:, 0], src_xy[:, 1], dst_xy[:, 0], dst_xy[:, 1]
    grid = (height, width)
    # X leg on row sy from sx to tx, then Y leg on column tx from sy to ty.
    e, w, s, n = tx > sx, tx < sx, ty > sy, ty < sy
    east = _leg(grid, (sy[e], sx[e]), (sy[e], tx[e]), load[e], axis=1)[:, : width - 1]
    west = _leg(grid, (sy[w], tx[w]), (sy[w], sx[w]), load[w], axis=1)[:, : width - 1]
    south = _leg(grid, (sy[s], tx[s]), (ty[s], tx[s]), load[s], axis=0)[: height - 1, :]
    north = _leg(grid, (ty[n], tx[n]), (sy[n], tx[n]), load[n], axis=0)[: height - 1, :]
    return MeshLinkLoads(width, height, east, west, south, north)
