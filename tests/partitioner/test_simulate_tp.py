"""Tensor-parallel collectives in the GPU simulator's link loads, worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from partitioner.plan import HOST, Collective, Partition, Transfer
from partitioner.simulate import SimulateError, simulate_gpu
from partitioner.simulate.gpu import PipelineReport
from partitioner.simulate.plot import link_utilisation_grid
from partitioner.simulate.schedule import gantt_schedule
from tests.partitioner.gpu_targets import toy_target

# toy_target: 2 GPUs a node (0,1 in node 0; 2,3 in node 1); intra-node "link", network "net"
TARGET = toy_target([1_000] * 4)


def stage(pid: int, devices: tuple[int, ...], compute_s: float) -> Partition:
    return Partition(pid, pid, devices, (pid,), 0, 0, 0, 0, 1, 0, compute_s)


def two_stage_report() -> PipelineReport:
    """Stage 0 on GPUs (0, 1), stage 1 on GPUs (2, 3), blocking transfers.

    Stage 0: compute 100 µs, one all-reduce of 1,000 B (10 µs), sends 500 B to stage 1 (5 µs).
    Stage 1: compute 50 µs, one all-gather of 4,000 B (20 µs), 20 B to the host (2 µs).
    """
    parts = [stage(0, (0, 1), 1e-4), stage(1, (2, 3), 5e-5)]
    transfers = [Transfer("h", 500, 0, 1, 5e-6), Transfer("y", 20, 1, HOST, 2e-6)]
    collectives = [
        Collective("all_reduce", "o_proj", 0, 1_000, 1e-5),
        Collective("all_gather", "logits", 1, 4_000, 2e-5),
    ]
    return simulate_gpu(parts, transfers, TARGET, overlap_transfers=False, collectives=collectives)


# periods: stage 0 = 0 recv + 100 + 10 collective + 5 send = 115 µs;
# stage 1 = 5 recv + 50 + 20 collective + 2 host = 77 µs; the pipeline's period is 115 µs
PERIOD_S = 1.15e-4


def test_stage_seconds_include_the_collectives() -> None:
    report = two_stage_report()
    assert [s.collective_s for s in report.stages] == [1e-5, 2e-5]
    assert [s.period_s for s in report.stages] == pytest.approx([1.15e-4, 7.7e-5])
    assert report.period_s == pytest.approx(PERIOD_S)
    assert [s.devices for s in report.stages] == [(0, 1), (2, 3)]


def test_each_gpu_of_a_group_sends_its_ring_share_by_hand() -> None:
    gpus = {(g.device, g.link_class): g for g in two_stage_report().gpu_links}
    assert list(gpus) == [
        (0, "intra-node"),
        (0, "inter-node"),
        (1, "intra-node"),
        (2, "intra-node"),
        (2, "host"),
        (3, "intra-node"),
    ]
    # all-reduce over 2: 2·(2−1)/2 × 1,000 B = 1,000 B from each of GPUs 0 and 1, busy 10 µs;
    # 10 µs / 115 µs = 0.0869565
    for device in (0, 1):
        g = gpus[device, "intra-node"]
        assert (g.link_name, g.bytes, g.collective_bytes) == ("link", 1_000, 1_000)
        assert (g.collectives, g.transfers) == (1, 0)
        assert g.busy_s == g.collective_busy_s == 1e-5
        assert g.utilisation == pytest.approx(1e-5 / PERIOD_S)
        assert g.utilisation == pytest.approx(0.0869565, rel=1e-5)
    # all-gather over 2: (2−1)/2 × 4,000 B = 2,000 B from each of GPUs 2 and 3, busy 20 µs;
    # 20 / 115 = 0.173913
    for device in (2, 3):
        g = gpus[device, "intra-node"]
        assert (g.bytes, g.busy_s, g.collectives) == (2_000, 2e-5, 1)
        assert g.utilisation == pytest.approx(0.173913, rel=1e-5)
    # the 500 B transfer leaves GPU 0 (stage 0's first) for GPU 2 in the other node: 5 µs
    sent = gpus[0, "inter-node"]
    assert (sent.link_name, sent.bytes, sent.transfers, sent.collectives) == ("net", 500, 1, 0)
    assert sent.busy_s == 5e-6 and sent.collective_bytes == 0
    # the output to the host counts on GPU 2's own host link: 20 B, 2 µs
    host = gpus[2, "host"]
    assert (host.link_name, host.bytes, host.busy_s, host.transfers) == ("pcie", 20, 2e-6, 1)


def test_link_class_totals_by_hand() -> None:
    classes = {c.link_class: c for c in two_stage_report().link_classes}
    assert list(classes) == ["intra-node", "inter-node", "host"]
    intra = classes["intra-node"]
    # bytes 1,000 + 1,000 + 2,000 + 2,000 = 6,000; busy 2 × 10 + 2 × 20 = 60 µs over 4 GPUs;
    # two calls; the busiest GPU (2 or 3) is busy 20 / 115 = 0.173913 of the period
    assert (intra.bytes, intra.transfers, intra.collectives) == (6_000, 0, 2)
    assert intra.busy_s == pytest.approx(6e-5)
    assert intra.utilisation == pytest.approx(2e-5 / PERIOD_S)
    inter = classes["inter-node"]
    # the one transfer: 500 B in 5 µs, 5 / 115 = 0.0434783
    assert (inter.link_name, inter.bytes, inter.transfers, inter.collectives) == ("net", 500, 1, 0)
    assert inter.utilisation == pytest.approx(0.0434783, rel=1e-5)
    assert (classes["host"].bytes, classes["host"].busy_s) == (20, 2e-6)


def test_point_to_point_links_are_left_as_they_were() -> None:
    report = two_stage_report()
    # transfers only, between the first devices of the two partitions
    assert [(link.src_device, link.dst_device, link.bytes) for link in report.links] == [
        (0, 2, 500),
        (2, HOST, 20),
    ]


def test_a_group_spanning_two_nodes_loads_the_network() -> None:
    # GPUs 1 and 2 sit in nodes 0 and 1: the ring runs at the network's pace.
    # reduce-scatter over 2: (2−1)/2 × 3,000 B = 1,500 B each, busy 30 µs;
    # the period is 100 + 30 = 130 µs, so 30 / 130 = 0.230769 of it
    report = simulate_gpu(
        [stage(0, (1, 2), 1e-4)],
        [],
        TARGET,
        overlap_transfers=False,
        collectives=[Collective("reduce_scatter", "h", 0, 3_000, 3e-5)],
    )
    assert report.period_s == pytest.approx(1.3e-4)
    assert {(g.device, g.link_class, g.link_name, g.bytes) for g in report.gpu_links} == {
        (1, "inter-node", "net", 1_500),
        (2, "inter-node", "net", 1_500),
    }
    (net,) = report.link_classes
    assert (net.link_class, net.bytes, net.collectives) == ("inter-node", 3_000, 1)
    assert net.utilisation == pytest.approx(3e-5 / 1.3e-4)
    assert net.utilisation == pytest.approx(0.230769, rel=1e-5)


def test_a_one_device_group_sends_nothing() -> None:
    report = simulate_gpu(
        [stage(0, (0,), 1e-4)],
        [],
        TARGET,
        overlap_transfers=False,
        collectives=[Collective("all_reduce", "h", 0, 1_000, 0.0)],
    )
    assert report.gpu_links == () and report.link_classes == ()


def test_a_group_with_a_missing_device_is_a_simulate_error() -> None:
    with pytest.raises(SimulateError, match="collective on 'h': device 9 is not in 0..3"):
        simulate_gpu(
            [stage(0, (0, 9), 1e-4)],
            [],
            TARGET,
            overlap_transfers=False,
            collectives=[Collective("all_reduce", "h", 0, 1_000, 1e-5)],
        )


def test_json_lists_the_gpu_links_and_the_class_collectives() -> None:
    d = two_stage_report().to_dict()
    assert [(g["device"], g["link_class"], g["bytes"]) for g in d["gpu_links"]][:3] == [
        (0, "intra-node", 1_000),
        (0, "inter-node", 500),
        (1, "intra-node", 1_000),
    ]
    assert [(c["link_class"], c["collectives"]) for c in d["link_classes"]] == [
        ("intra-node", 2),
        ("inter-node", 0),
        ("host", 0),
    ]
    assert d["stages"][0]["devices"] == (0, 1)


def test_the_heatmap_grid_by_hand() -> None:
    gpus, classes, grid = link_utilisation_grid(two_stage_report())
    assert gpus == [0, 1, 2, 3] and classes == ["intra-node", "inter-node", "host"]
    # rows: GPU 0 = 10/115, 5/115, 0; GPU 1 = 10/115; GPUs 2 and 3 = 20/115 (and 2/115 host on 2)
    expected = [[10, 5, 0], [10, 0, 0], [20, 0, 2], [20, 0, 0]]
    assert grid == pytest.approx(np.array(expected) / 115)


def test_the_gantt_puts_collectives_after_compute() -> None:
    rows = gantt_schedule(two_stage_report().stages, PERIOD_S, 1)
    # stage 0: compute [0, 100), collective [100, 110), send [110, 115) µs;
    # stage 1 starts 0 + 100 + 10 = 110 µs in: recv [110, 115), compute [115, 165),
    # collective [165, 185), host [185, 187)
    assert [(i, phase) for i, _, phase, _, _ in rows] == [
        (0, "compute"),
        (0, "collective"),
        (0, "send"),
        (1, "recv"),
        (1, "compute"),
        (1, "collective"),
        (1, "host"),
    ]
    starts_us = [start * 1e6 for *_, start, _ in rows]
    assert starts_us == pytest.approx([0, 100, 110, 110, 115, 165, 185])
