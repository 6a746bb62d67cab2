"""Mesh geometry: hops, X-then-Y routes, link loads, region distance and boundaries."""

from __future__ import annotations

from targets import manhattan_hops, region_hops, route_link_loads, shared_boundary_links, xy_route


def test_manhattan_hops() -> None:
    assert manhattan_hops((0, 0), (2, 1)) == 3
    assert manhattan_hops((5, 7), (2, 9)) == 5  # |−3| + |2|
    assert manhattan_hops((4, 4), (4, 4)) == 0


def test_xy_route_goes_along_x_then_y() -> None:
    assert xy_route((0, 0), (2, 1)) == [((0, 0), (1, 0)), ((1, 0), (2, 0)), ((2, 0), (2, 1))]
    # backwards: x falls from 2 to 0 on row 1, then y falls to 0
    assert xy_route((2, 1), (0, 0)) == [((2, 1), (1, 1)), ((1, 1), (0, 1)), ((0, 1), (0, 0))]
    assert xy_route((3, 3), (3, 3)) == []
    assert len(xy_route((1, 9), (6, 2))) == manhattan_hops((1, 9), (6, 2))


def test_link_loads_add_up_per_link() -> None:
    # (0,0)->(2,0) and (1,0)->(2,1) share the link (1,0)->(2,0)
    loads = route_link_loads([((0, 0), (2, 0), 100), ((1, 0), (2, 1), 40)])
    assert loads == {
        ((0, 0), (1, 0)): 100,
        ((1, 0), (2, 0)): 140,
        ((2, 0), (2, 1)): 40,
    }
    # opposite directions are different links
    both = route_link_loads([((0, 0), (1, 0), 5), ((1, 0), (0, 0), 7)])
    assert both == {((0, 0), (1, 0)): 5, ((1, 0), (0, 0)): 7}


def test_region_hops() -> None:
    a = (0, 0, 2, 2)  # columns 0-1, rows 0-1
    assert region_hops(a, (2, 0, 3, 2)) == 1  # side by side
    assert region_hops(a, (4, 5, 1, 1)) == 3 + 4  # from core (1, 1) to core (4, 5)
    assert region_hops(a, (1, 1, 2, 2)) == 0  # overlapping
    assert region_hops((4, 5, 1, 1), a) == 7  # symmetric


def test_shared_boundary_links() -> None:
    a = (0, 0, 2, 3)  # columns 0-1, rows 0-2
    assert shared_boundary_links(a, (2, 0, 4, 3)) == 3  # right neighbour, 3 rows in common
    assert shared_boundary_links(a, (2, 1, 4, 5)) == 2  # rows 1-2 in common
    assert shared_boundary_links(a, (0, 3, 5, 1)) == 2  # below, columns 0-1 in common
    assert shared_boundary_links(a, (2, 3, 1, 1)) == 0  # touches a corner only
    assert shared_boundary_links(a, (3, 0, 1, 3)) == 0  # one column apart
    assert shared_boundary_links((2, 0, 4, 3), a) == 3  # symmetric


def test_region_center_and_center_hops() -> None:
    from targets.fabric import center_hops, region_center

    # (0,0,4,2) -> centre (2,1); (10,4,2,6) -> centre (11,7); |11-2| + |7-1| = 15
    assert region_center((0, 0, 4, 2)) == (2, 1)
    assert region_center((10, 4, 2, 6)) == (11, 7)
    assert center_hops((0, 0, 4, 2), (10, 4, 2, 6)) == 15


def test_transfer_lanes() -> None:
    from targets.fabric import transfer_lanes

    # side by side, sharing rows 2..3: 2 links
    assert transfer_lanes((0, 0, 4, 4), (4, 2, 3, 5)) == 2
    # apart: narrowest side among 4x4 and 3x5 is 3
    assert transfer_lanes((0, 0, 4, 4), (9, 9, 3, 5)) == 3
