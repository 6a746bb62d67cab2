"""Latency against throughput: the curves of a serving rate sweep, one line per target.

Each probe of `partitioner.simulate.serving.max_rate_under_slo` is a point:
output tokens per second on x, p99 TTFT and p99 TPOT on y (two panels), the
SLO as a dashed line. `partition simulate --rate-sweep --png` draws one plan,
`partition compare --png` every target on the same axes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["render_sweep_png"]

_PANELS = (
    ("ttft_p99_s", "TTFT p99 (s)", "ttft_p99_s"),
    ("tpot_p99_s", "TPOT p99 (s)", "tpot_p99_s"),
)


def render_sweep_png(sweeps: Mapping[str, Mapping[str, Any]]) -> bytes:
    """PNG of each sweep's probes (``{target: doc}`` with ``probes`` and ``serving``)."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    try:
        for name, doc in sweeps.items():
            probes = sorted(doc.get("probes") or [], key=lambda p: p["throughput_tokens_per_s"])
            x = [p["throughput_tokens_per_s"] for p in probes]
            for axis, (key, _, _) in zip(axes, _PANELS, strict=True):
                axis.plot(x, [p[key] for p in probes], marker="o", label=name)
        slo = _slo(sweeps)
        for axis, (_, label, slo_key) in zip(axes, _PANELS, strict=True):
            if slo.get(slo_key) is not None:
                axis.axhline(slo[slo_key], linestyle="--", color="grey", label="SLO")
            axis.set_xlabel("output tokens/s")
            axis.set_ylabel(label)
            axis.set_yscale("log")
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize=8)
        figure.suptitle("latency against throughput (each point one simulated arrival rate)")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        return buffer.getvalue()
    finally:
        plt.close(figure)


def _slo(sweeps: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    for doc in sweeps.values():
        serving = doc.get("serving") or {}
        if serving.get("slo"):
            return dict(serving["slo"])
    return {}
