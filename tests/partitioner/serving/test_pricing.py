"""`StagePricing`: an iteration's stage seconds from one matrix product, worked by hand."""

from __future__ import annotations

import dataclasses

import pytest

from partitioner.simulate.serving_pricing import KernelRow, LinkRow, StagePricing

ZERO = (0.0,) * 6


def _poly(**terms: float) -> tuple[float, ...]:
    """Coefficients over (1, b, p, b², b·p, p²) by name."""
    names = ("one", "b", "p", "bb", "bp", "pp")
    return tuple(terms.get(n, 0.0) for n in names)


def _monomials(rows: float, per_row: float, per_sequence: float) -> tuple[float, ...]:
    common = (1.0, rows, 0.0, rows * rows)
    return (*common, per_row, 0.0, *common, per_sequence, 0.0)


def test_kernels_take_the_roofline_and_links_their_fixed_time_when_they_move_bytes():
    gemm = KernelRow(0, 1.0, _poly(b=100.0), 1e-3, _poly(one=10.0), 1e-2, 5e-3)
    attention = KernelRow(1, 1.0, _poly(bp=1.0), 1e-3, _poly(bp=4.0), 1e-3, 0.0)
    reduce = LinkRow(0, 1.0, _poly(b=2.0), 0.5, 0.25, per_sequence=True)
    idle = LinkRow(1, 1.0, ZERO, 7.0, 1.0, per_sequence=False)  # moves nothing: no time
    fixed = LinkRow(1, 1.0, ZERO, 0.125, 1.0, per_sequence=False, always_fixed=True)
    pricing = StagePricing(2, [gemm, attention], [reduce, idle, fixed], [1.0, 2.0])
    # rows b = 3, row-paired p = 5, sequence-paired p = 8
    seconds = pricing.seconds(_monomials(3.0, 5.0, 8.0))
    # stage 0: 1 + max(300 * 1e-3, 10 * 1e-2) + 5e-3 + (0.5 + 6 * 0.25) = 3.305
    # stage 1: 2 + max(5 * 1e-3, 4 * 8 * 1e-3) + 0 + 0.125 = 2.157 (attention's bytes are
    # read per sequence, its FLOPs per row)
    assert seconds == pytest.approx([3.305, 2.157], rel=1e-12)


def test_identical_rows_are_one_row_with_their_count():
    import dataclasses

    link = LinkRow(0, 1.0, _poly(b=1.0), 1e-5, 1e-9, per_sequence=True)
    kernel = KernelRow(0, 2.0, _poly(b=1.0), 1e-6, ZERO, 0.0, 1e-6)
    many = StagePricing(1, [kernel, kernel], [link] * 161, [0.0])
    single = StagePricing(
        1, [dataclasses.replace(kernel, count=4.0)], [dataclasses.replace(link, count=161.0)],
        [0.0],
    )  # fmt: skip
    assert many._weights.shape[0] == 2 + 1  # one kernel (two rows) and one link row
    m = _monomials(7.0, 0.0, 0.0)
    assert many.seconds(m) == pytest.approx(single.seconds(m), rel=1e-15)
    # 4 kernels of max(7 µs, 0) + 1 µs launch, and 161 links of 10 µs + 7 ns
    assert many.seconds(m)[0] == pytest.approx(4 * 8e-6 + 161 * (1e-5 + 7e-9), rel=1e-12)


def test_a_kernel_on_a_device_that_does_not_overlap_pays_its_flops_and_bytes_in_turn():
    gemm = KernelRow(0, 2.0, _poly(b=100.0), 1e-3, _poly(one=10.0), 1e-2, 5e-3, overlap=False)
    pricing = StagePricing(1, [gemm], [], [1.0])
    assert pricing._k == 0  # no row of its own: both terms are linear
    # 1 + 2 * (300 * 1e-3 + 10 * 1e-2 + 5e-3) = 1.81 (the roofline would give 1.61)
    assert pricing.seconds(_monomials(3.0, 0.0, 0.0)) == pytest.approx([1.81], rel=1e-12)
    overlapped = StagePricing(1, [dataclasses.replace(gemm, overlap=True)], [], [1.0])
    assert overlapped.seconds(_monomials(3.0, 0.0, 0.0)) == pytest.approx([1.61], rel=1e-12)
