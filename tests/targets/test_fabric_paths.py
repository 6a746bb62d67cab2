"""Transfer paths between regions and whole-grid link loads, worked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from targets.fabric import (
    center_hops,
    manhattan_hops,
    mesh_link_loads,
    route_link_loads,
    split_bytes,
    transfer_lanes,
    transfer_paths,
)
from targets.pipeline import stage_recv_s


def test_side_by_side_paths_cross_every_shared_row() -> None:
    # a = columns 0-1, rows 0-1, centre (1, 1); b = columns 2-3, centre (3, 1)
    assert transfer_paths((0, 0, 2, 2), (2, 0, 2, 2)) == [((1, 0), (3, 0)), ((1, 1), (3, 1))]
    # b on the left, sharing rows 2..3 of a: a centre (6, 2), b centre (2, 3)
    assert transfer_paths((5, 0, 3, 4), (0, 2, 5, 3)) == [((6, 2), (2, 2)), ((6, 3), (2, 3))]


def test_stacked_paths_cross_every_shared_column() -> None:
    # a = (0,0,3,2) centre (1,1); b = (1,2,4,4) below it, centre (3,4); columns 1-2 shared
    assert transfer_paths((0, 0, 3, 2), (1, 2, 4, 4)) == [((1, 1), (1, 4)), ((2, 1), (2, 4))]


def test_paths_apart_leave_a_column_band_and_reach_a_row_band() -> None:
    # a = (0,0,4,4) centre (2,2); b = (9,8,3,5) centre (10,10); lanes = min(4,4,3,5) = 3.
    # rows 1,2,3 of column 2 to columns 9,10,11 of row 10: each 16 hops = center_hops
    paths = transfer_paths((0, 0, 4, 4), (9, 8, 3, 5))
    assert paths == [((2, 1), (9, 10)), ((2, 2), (10, 10)), ((2, 3), (11, 10))]
    assert [manhattan_hops(s, d) for s, d in paths] == [16, 16, 16]
    assert center_hops((0, 0, 4, 4), (9, 8, 3, 5)) == 16


def test_paths_up_and_right_pair_the_top_row_with_the_far_column() -> None:
    # a = (0,8,4,4) centre (2,10); b = (9,0,3,5) centre (10,2): rows 9,10,11 to columns 11,10,9
    paths = transfer_paths((0, 8, 4, 4), (9, 0, 3, 5))
    assert paths == [((2, 9), (11, 2)), ((2, 10), (10, 2)), ((2, 11), (9, 2))]
    assert {manhattan_hops(s, d) for s, d in paths} == {16}


rects = st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(1, 6), st.integers(1, 6))


@settings(max_examples=200, deadline=None)
@given(a=rects, b=rects)
def test_paths_are_lanes_many_start_in_a_end_in_b_and_share_no_link(a, b) -> None:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
        return  # overlapping regions never exchange tensors
    paths = transfer_paths(a, b)
    assert len(paths) == transfer_lanes(a, b)
    for (sx, sy), (tx, ty) in paths:
        assert ax <= sx < ax + aw and ay <= sy < ay + ah
        assert bx <= tx < bx + bw and by <= ty < by + bh
    loads = route_link_loads((s, d, 1) for s, d in paths)
    assert max(loads.values()) == 1


def test_split_bytes_in_whole_bytes() -> None:
    assert split_bytes(10, 3) == [4, 3, 3]  # 10 = 3·3 + 1: the first lane takes the extra byte
    assert split_bytes(2, 3) == [1, 1, 0]
    assert split_bytes(9, 3) == [3, 3, 3]
    with pytest.raises(ValueError):
        split_bytes(5, 0)


def test_mesh_loads_by_hand() -> None:
    # 3x2 grid. (0,0)->(2,1) with 100 B: east (0,0)->(1,0), (1,0)->(2,0), south (2,0)->(2,1).
    # (2,1)->(0,0) with 7 B: west (2,1)->(1,1), (1,1)->(0,1), north (0,1)->(0,0).
    loads = mesh_link_loads(3, 2, [(0, 0), (2, 1)], [(2, 1), (0, 0)], [100, 7])
    assert loads.east.tolist() == [[100, 100], [0, 0]]
    assert loads.west.tolist() == [[0, 0], [7, 7]]  # west[y, x] is (x+1, y) -> (x, y)
    assert loads.south.tolist() == [[0, 0, 100]]
    assert loads.north.tolist() == [[7, 0, 0]]  # north[y, x] is (x, y+1) -> (x, y)
    assert loads.load(((2, 0), (2, 1))) == 100 and loads.load(((1, 1), (0, 1))) == 7
    assert loads.max_bytes() == 100
    # ties: east before south; then west, north by row
    assert loads.busiest(4) == [
        (((0, 0), (1, 0)), 100),
        (((1, 0), (2, 0)), 100),
        (((2, 0), (2, 1)), 100),
        (((1, 1), (0, 1)), 7),
    ]
    # per core, the largest load leaving it: (0,0) 100 east, (1,0) 100, (2,0) 100 south,
    # (0,1) 7 north, (1,1) 7 west, (2,1) 7 west
    assert loads.core_max().tolist() == [[100, 100, 100], [7, 7, 7]]


def test_mesh_loads_sum_overlapping_flows() -> None:
    # (0,0)->(2,0) and (1,0)->(2,1) share (1,0)->(2,0): 100 + 40
    loads = mesh_link_loads(3, 2, [(0, 0), (1, 0)], [(2, 0), (2, 1)], [100, 40])
    assert loads.east.tolist() == [[100, 140], [0, 0]]
    assert loads.busiest(1) == [(((1, 0), (2, 0)), 140)]
    assert mesh_link_loads(3, 2, [], [], []).max_bytes() == 0
    with pytest.raises(ValueError, match="outside the 3x2 grid"):
        mesh_link_loads(3, 2, [(3, 0)], [(0, 0)], [1])


cores = st.tuples(st.integers(0, 6), st.integers(0, 4))


@settings(max_examples=100, deadline=None)
@given(flows=st.lists(st.tuples(cores, cores, st.integers(0, 1000)), max_size=12))
def test_mesh_loads_equal_route_link_loads(flows) -> None:
    loads = mesh_link_loads(
        7, 5, [f[0] for f in flows], [f[1] for f in flows], [f[2] for f in flows]
    )
    expected = route_link_loads(flows)
    for link, nbytes in expected.items():
        assert loads.load(link) == nbytes
    total = sum(int(getattr(loads, d).sum()) for d in ("east", "west", "south", "north"))
    assert total == sum(expected.values())


def test_mesh_loads_on_the_real_grid_carry_every_byte_every_hop() -> None:
    """50,000 flows on the WSE-3 grid (their speed is measured in bench/planning_speed.py):
    every flow's bytes cross each link of its X-then-Y route once, so the links carry the
    bytes times the hops in all."""
    rng = np.random.default_rng(0)
    src = np.stack([rng.integers(0, 762, 50_000), rng.integers(0, 1176, 50_000)], axis=1)
    dst = np.stack([rng.integers(0, 762, 50_000), rng.integers(0, 1176, 50_000)], axis=1)
    nbytes = rng.integers(1, 1000, 50_000)
    loads = mesh_link_loads(762, 1176, src, dst, nbytes)
    assert loads.east.shape == (1176, 761) and loads.south.shape == (1175, 762)
    hops = np.abs(src - dst).sum(axis=1)
    total = sum(int(getattr(loads, d).sum()) for d in ("east", "west", "south", "north"))
    assert total == int((nbytes * hops).sum())
    assert len(loads.busiest(5)) == 5


def test_stage_recv_s() -> None:
    # stage 0 receives the host input; stage i what stage i-1 sends
    assert stage_recv_s([0.2, 0.5, 0.1], 0.3) == [0.3, 0.2, 0.5]
    assert stage_recv_s([]) == []
