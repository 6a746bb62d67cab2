"""The wafer simulator on hand-built plans, every figure worked by hand.

Tiny target: a link moves 4 B/cycle at 1 GHz = 4e9 B/s, so it is busy
bytes / 4e9 s; a hop takes 1 ns; 768 usable bytes of SRAM per core.
"""

from __future__ import annotations

import numpy as np
import pytest

from partitioner.plan import HOST, Bottleneck, Estimate, Transfer
from partitioner.simulate import SimulateError, estimate_fields, simulate_plan, simulate_wafer
from targets.cost import WaferCostModel
from tests.partitioner.wafer_plans import hand_plan, part, tiny_target

A = (0, 0, 4, 4)  # columns 0-3, rows 0-3, centre (2, 2)
B = (4, 0, 4, 4)  # right of A, centre (6, 2)


def side_by_side(nbytes: int):
    target = tiny_target()
    parts = [part(0, A, 2e-6, memory=6144), part(1, B, 1e-6, memory=1536)]
    # 4 centre hops; 4 shared rows: 4 ns + (nbytes / 4e9) / 4
    time_s = WaferCostModel(target).fabric_transfer_s(nbytes, 4, 4)
    return target, parts, [Transfer("t", nbytes, 0, 1, time_s, hops=4)]


def test_two_regions_side_by_side_one_transfer() -> None:
    target, parts, transfers = side_by_side(4000)
    report = simulate_wafer(parts, transfers, target)
    # 4 lanes of 1000 B along rows 0-3 from column 2 to column 6: east links x = 2..5
    east = np.zeros((16, 15), dtype=np.int64)
    east[0:4, 2:6] = 1000
    loads = report.mesh_loads[0]
    assert np.array_equal(loads.east, east)
    assert not loads.west.any() and not loads.south.any() and not loads.north.any()
    # period: compute 2 µs of region 0 beats the links' 1000 / 4e9 = 0.25 µs
    assert report.period_s == pytest.approx(2e-6)
    assert report.throughput_per_s == pytest.approx(5e5)
    assert report.bottleneck == Bottleneck("compute", "region 0 on wafer 0")
    link = report.busiest_link
    assert (link.kind, link.wafer, link.src, link.dst, link.bytes) == (
        "fabric",
        0,
        (2, 0),
        (3, 0),
        1000,
    )
    assert link.busy_s == pytest.approx(0.25e-6)
    assert link.utilisation == pytest.approx(0.125)  # 0.25 / 2
    assert link.where == "link (2,0)->(3,0) on wafer 0"
    # utilisation 2/2 and 1/2; SRAM 6144 / 16 = 384 B per core = 0.5 of 768
    r0, r1 = report.regions
    assert (r0.utilisation, r1.utilisation) == (pytest.approx(1.0), pytest.approx(0.5))
    assert (r0.sram_bytes_per_core, r0.sram_fraction) == (384.0, 0.5)
    assert report.max_sram_bytes_per_core == 384.0
    # Σ bytes × hops = 4000 × 4
    assert report.byte_hops == 16_000
    # latency: 2 µs + (4 ns + 1 µs / 4) + 1 µs = 3.254 µs
    assert report.latency_s == pytest.approx(3.254e-6)
    assert transfers[0].time_s == pytest.approx(0.254e-6)
    assert report.critical_path == (0, 1)


def test_a_busy_link_becomes_the_bottleneck() -> None:
    target, parts, transfers = side_by_side(40_000)
    report = simulate_wafer(parts, transfers, target)
    # 10_000 B per lane: busy 2.5 µs > 2 µs of compute
    assert report.period_s == pytest.approx(2.5e-6)
    assert report.bottleneck == Bottleneck("link", "link (2,0)->(3,0) on wafer 0")
    assert report.busiest_link.utilisation == pytest.approx(1.0)
    assert report.regions[0].utilisation == pytest.approx(0.8)  # 2 / 2.5


def test_transfer_across_wafers_and_host_io() -> None:
    target = tiny_target(num_wafers=2)
    cost = WaferCostModel(target)
    parts = [part(0, A, 2e-6, wafer=0), part(1, A, 1e-6, wafer=1)]
    # inter-wafer: 1 µs + 10_000 / 5e9 = 3 µs to arrive, but it occupies the link only
    # 10_000 / 5e9 = 2 µs; host: 1000 / 1e9 = 1 µs in, 500 / 1e9 = 0.5 µs out
    transfers = [
        Transfer("x", 1000, HOST, 0, cost.host_transfer_s(1000)),
        Transfer("h", 10_000, 0, 1, cost.inter_wafer_transfer_s(10_000)),
        Transfer("y", 500, 1, HOST, cost.host_transfer_s(500)),
    ]
    report = simulate_wafer(parts, transfers, target)
    assert report.mesh_loads == {} and report.byte_hops == 0
    off = {link.where: (link.bytes, link.busy_s) for link in report.off_wafer_links}
    assert off == {
        "host link to wafer 0": (1000, pytest.approx(1e-6)),
        "inter-wafer link from wafer 0": (10_000, pytest.approx(2e-6)),
        "host link from wafer 1": (500, pytest.approx(0.5e-6)),
    }
    # wafer 0's 2 µs of compute ties the inter-wafer link's 2 µs; ties go to compute
    assert report.period_s == pytest.approx(2e-6)
    assert report.bottleneck.where == "region 0 on wafer 0"
    # latency: 1 (host) + 2 (compute) + 3 (inter-wafer) + 1 (compute) + 0.5 (host) = 7.5 µs
    assert report.latency_s == pytest.approx(7.5e-6)
    assert report.busiest_link.where == "inter-wafer link from wafer 0"


def test_overlapping_flows_add_up_on_a_shared_link() -> None:
    target = tiny_target()
    a, b, c = (0, 0, 2, 2), (2, 0, 2, 2), (4, 0, 2, 2)  # three in a row; centres x = 1, 3, 5
    parts = [part(0, a, 1e-6), part(1, b, 1e-6), part(2, c, 1e-6)]
    transfers = [
        Transfer("ac", 800, 0, 2, 1e-7, hops=4),  # apart: 2 lanes of 400 B
        Transfer("bc", 200, 1, 2, 1e-7, hops=2),  # side by side: 2 lanes of 100 B
    ]
    report = simulate_wafer(parts, transfers, target)
    loads = report.mesh_loads[0]
    # a -> c: (1,0) -> (4,1) east on row 0 to column 4, south to row 1;
    #         (1,1) -> (5,1) east on row 1.   b -> c: rows 0 and 1 from column 3 to 5.
    assert loads.load(((1, 0), (2, 0))) == 400
    assert loads.load(((3, 0), (4, 0))) == 400 + 100
    assert loads.load(((4, 0), (5, 0))) == 100
    assert loads.load(((4, 0), (4, 1))) == 400
    assert loads.load(((3, 1), (4, 1))) == 400 + 100
    assert loads.load(((4, 1), (5, 1))) == 400 + 100
    assert [(link.src, link.dst, link.bytes) for link in report.busiest_links] == [
        ((3, 0), (4, 0), 500),
        ((3, 1), (4, 1), 500),
        ((4, 1), (5, 1), 500),
        ((1, 0), (2, 0), 400),
        ((2, 0), (3, 0), 400),
    ]
    assert report.byte_hops == 800 * 4 + 200 * 2
    # latency: the longest of 0 -> 2 (1 + 0.1 + 1) and 1 -> 2 (same): 2.1 µs
    assert report.latency_s == pytest.approx(2.1e-6)


def test_estimate_fields_round_trip_through_simulate_plan() -> None:
    target, parts, transfers = side_by_side(4000)
    fields = estimate_fields(simulate_wafer(parts, transfers, target))
    assert fields["bottleneck"] == {"kind": "compute", "where": "region 0 on wafer 0"}
    assert fields["extra"]["byte_hops"] == 16_000
    assert fields["extra"]["busiest_link"]["where"] == "link (2,0)->(3,0) on wafer 0"
    assert fields["extra"]["max_sram_bytes_per_core"] == 384.0
    estimate = Estimate(
        latency_s=fields["latency_s"],
        throughput_per_s=fields["throughput_per_s"],
        bottleneck=Bottleneck(**fields["bottleneck"]),
        extra=fields["extra"],
    )
    plan = hand_plan(target, parts, transfers, estimate)
    from partitioner.plan import Plan

    again = simulate_plan(Plan.from_json(plan.to_json()))
    assert estimate_fields(again) == fields
    assert again.latency_s == plan.estimate.latency_s


def test_decode_figures_for_wafer_plans_with_prices() -> None:
    target = tiny_target(usd_per_hour=36.0)
    parts = [part(0, A, 2e-6), part(1, B, 1e-6)]
    estimate = Estimate(1.0, 1.0, Bottleneck("compute", "x"), {"llm_decode_step": True, "batch": 8})
    report = simulate_plan(hand_plan(target, parts, [], estimate))
    # period 2 µs: 8 × 5e5 = 4e6 tokens/s; $36/h = 0.01 $/s -> 2.5e-9 $/token; latency 2 µs
    assert report.decode["tokens_per_s"] == pytest.approx(4e6)
    assert report.decode["usd_per_token"] == pytest.approx(2.5e-9)
    assert report.decode["s_per_token"] == pytest.approx(2e-6)
    # a planner records them through estimate_fields, and simulating the plan gives them back
    fields = estimate_fields(report)
    assert fields["extra"]["tokens_per_s"] == report.decode["tokens_per_s"]
    recorded = Estimate(
        fields["latency_s"],
        fields["throughput_per_s"],
        Bottleneck(**fields["bottleneck"]),
        fields["extra"],
    )
    again = simulate_plan(hand_plan(target, parts, [], recorded))
    assert estimate_fields(again) == fields


def test_inconsistent_plans_are_one_line_errors() -> None:
    target = tiny_target()
    with pytest.raises(SimulateError, match="names partition 7"):
        simulate_wafer([part(0, A, 1e-6)], [Transfer("t", 1, 0, 7, 0.0)], target)
    with pytest.raises(SimulateError, match="leaves the 16x16 grid"):
        simulate_wafer([part(0, (10, 0, 8, 2), 1e-6)], [], target)
    with pytest.raises(SimulateError, match="not later in the plan"):
        simulate_wafer([part(0, A, 1e-6), part(1, B, 1e-6)], [Transfer("t", 1, 1, 0, 0.0)], target)
    with pytest.raises(SimulateError, match="on wafer 1; target tiny has 1"):
        simulate_wafer([part(0, A, 1e-6, wafer=1)], [], target)


def test_real_grid_with_hundreds_of_transfers_is_fast() -> None:
    import time

    from targets import load_target

    target = load_target("wse3")  # 762 x 1176 cores
    # 16 x 24 = 384 regions of 40 x 40 cores in a chain, each sending to the next and two later
    regions = [(40 * (i % 16), 40 * (i // 16), 40, 40) for i in range(384)]
    parts = [part(i, r, 1e-5) for i, r in enumerate(regions)]
    transfers = [
        Transfer(f"t{i}-{j}", 1 << 20, i, j, 1e-6, hops=None)
        for i in range(384)
        for j in (i + 1, i + 3)
        if j < 384
    ]
    started = time.perf_counter()
    report = simulate_wafer(parts, transfers, target)
    assert time.perf_counter() - started < 1.0
    assert len(transfers) > 700 and report.byte_hops > 0
