"""`partition calibrate`: the target it writes loads, says how each figure was measured,
and carries exactly the figures given to it."""

from __future__ import annotations

import pytest

from partitioner.calibrate.host import Measured
from partitioner.calibrate.target import Calibration, target_yaml
from targets.gpu import GpuTarget
from targets.loader import load_target
from tests.cli import run_cli


def _calibration(ranks: int, links: bool) -> Calibration:
    return Calibration(
        "CPU test (1 thread)",
        Measured(8_000_000_000, "memory"),
        {"float32": Measured(5e10, "gemm fp32"), "float16": Measured(2.5e10, "gemm fp16")},
        Measured(2e10, "stream"),
        Measured(5e-7, "chain"),
        ranks,
        {
            "latency_s": Measured(1e-4, "ping"),
            "bandwidth_bytes_per_s": Measured(3e9, "pong"),
            "collective_latency_s": Measured(3e-4, "reduce small"),
            "collective_bandwidth_bytes_per_s": Measured(1e9, "reduce large"),
        }
        if links
        else {},
        "by hand",
        Measured(1e-4, "step"),
        Measured(False, "in turn, timed"),
        Measured(1.2e10, "stream, ranks at once") if links else None,
    )


@pytest.mark.parametrize(("ranks", "links"), [(1, False), (2, True)])
def test_the_yaml_loads_as_the_figures_given(tmp_path, ranks, links):
    calibration = _calibration(ranks, links)
    path = tmp_path / "cpu.yaml"
    path.write_text(target_yaml(calibration))
    target = load_target(path)
    assert isinstance(target, GpuTarget) and len(target.devices) == ranks
    device = target.devices[-1]
    assert device.peak_flops_per_s == {"float32": 5e10, "float16": 2.5e10}
    assert (device.hbm_bytes, device.hbm_bandwidth_bytes_per_s) == (8_000_000_000, 2e10)
    assert (device.eta_compute, device.eta_memory, device.launch_overhead_s) == (1.0, 1.0, 5e-7)
    assert device.step_overhead_s == 1e-4
    assert device.compute_memory_overlap is False
    link = target.intra_node_link
    if links:
        assert (link.latency_s, link.bandwidth_bytes_per_s) == (1e-4, 3e9)
        assert (link.collective_latency_s, link.collective_bandwidth_bytes_per_s) == (3e-4, 1e9)
        assert device.contended_bandwidth_bytes_per_s == 1.2e10
        assert "# stream, ranks at once" in path.read_text()
    else:  # one rank: the only link is a memory copy, and no one shares its memory
        assert (link.latency_s, link.bandwidth_bytes_per_s) == (5e-7, 2e10)
        assert device.contended_bandwidth_bytes_per_s is None
        assert target.contended() is None
    text = path.read_text()
    assert "# gemm fp32" in text and "# stream" in text and "# chain" in text
    assert "compute_memory_overlap: false  # in turn, timed" in text


def test_calibrate_measures_this_cpu_and_writes_a_loadable_target(tmp_path):
    out = tmp_path / "cpu.yaml"
    result = run_cli("calibrate", "--ranks", "2", "-o", str(out))
    assert result.code == 0, result.err
    target = load_target(out)
    assert len(target.devices) == 2
    device = target.devices[0]
    assert device.peak_flops_per_s["float32"] > 1e8  # any CPU does 0.1 GFLOP/s
    assert device.hbm_bandwidth_bytes_per_s > 1e8 and 0 < device.launch_overhead_s < 1e-3
    assert 0 < target.intra_node_link.latency_s < 0.1
    assert "onnxruntime CPU MatMul chains float32" in out.read_text()
    # measured among 2 ranks passing messages; a one-op run is not free, nor a millisecond
    assert 1e-7 < device.step_overhead_s < 1e-2
    assert "passing steps along a torch.distributed gloo pipeline" in out.read_text()
    # both ranks streaming at once: something each, and no more than the memory has alone
    # (a 2x margin: the two are timed seconds apart on a machine that may be busy)
    assert 1e8 < device.contended_bandwidth_bytes_per_s < 2 * device.hbm_bandwidth_bytes_per_s
    assert "on each of 2 local ranks at once" in out.read_text()
    assert "memory bandwidth, ranks at once" in result.out
    assert "GEMM float32" in result.out and f"target written to {out}" in result.out


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--ranks", "0"], "--ranks 0: give a whole number"),
     (["--threads", "0"], "--threads 0: give a whole number")],
)  # fmt: skip
def test_calibrate_refuses_bad_numbers(tmp_path, flags, message):
    result = run_cli("calibrate", *flags, "-o", str(tmp_path / "t.yaml"))
    assert result.code == 2 and message in result.err
    assert not (tmp_path / "t.yaml").exists()


def test_calibrate_will_not_write_over_a_folder(tmp_path):
    result = run_cli("calibrate", "--ranks", "1", "-o", str(tmp_path))
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1


def test_the_gemm_chain_streams_twice_the_cache_of_weights(monkeypatch):
    import numpy as np

    from partitioner.calibrate import host

    # a [8, 16] weight is 512 B of float32; twice a 4 KiB cache is 8 KiB: 8 pairs of weights
    monkeypatch.setattr(host, "cache_bytes", lambda: 4096)
    graph, flops = host._gemm_chain(4, 8, 16, np.dtype(np.float32))
    assert [n.op_type for n in graph.node] == ["MatMul"] * 16
    assert sum(np.prod(w.dims) * 4 for w in graph.initializer) == 8192
    assert len({w.name for w in graph.initializer}) == 16  # distinct weights, none reused
    # and distinct in value: onnxruntime runs identical weights as if they were cached
    values = [np.frombuffer(w.raw_data, np.float32) for w in graph.initializer]
    assert len({v.tobytes() for v in values}) == 16
    assert all(np.abs(v).max() <= np.sqrt(3 / 8) and np.unique(v).size > 1 for v in values[:1])
    assert flops == 16 * 2 * 4 * 8 * 16  # 16 MatMuls of 2·M·K·N
    # a weight bigger than twice the cache still makes one pair
    graph, flops = host._gemm_chain(1, 64, 64, np.dtype(np.float32))
    assert len(graph.node) == 2 and flops == 2 * 2 * 64 * 64


def test_calibrate_chooses_overlap_by_the_model_nearer_a_timed_gemm():
    from partitioner.calibrate.host import overlaps

    # compute 0.8 ms, memory 0.6 ms: the roofline says 0.8, in turn 1.4
    assert overlaps(0.85e-3, 0.8e-3, 0.6e-3)
    assert not overlaps(1.3e-3, 0.8e-3, 0.6e-3)
    assert overlaps(0.625, 0.5, 0.25)  # halfway (exact in binary): a tie goes to the roofline


def test_ranks_at_once_no_slower_than_one_alone_is_flagged():
    from dataclasses import replace

    from partitioner.commands.calibrate import contention_warning

    slower = _calibration(2, True)  # 12 GB/s each at once against 20 alone
    assert contention_warning(slower) is None
    assert contention_warning(_calibration(1, False)) is None  # nothing measured at once
    odd = replace(slower, contended_bandwidth=Measured(2.1e10, "at once"))
    said = contention_warning(odd)
    assert said is not None and "calibrate again" in said and "2 ranks" in said
