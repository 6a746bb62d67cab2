"""PNG pictures of a simulated plan (matplotlib, Agg backend, no display needed).

- Wafer plans: per wafer a row of three panels: the floorplan (regions
  coloured by partition and labelled with their id), utilisation (each region
  coloured by compute / period) and link load (per core, the largest load of
  the links leaving it, on a log scale). The link map is max-pooled to at most
  `MAX_PIXELS` a side, so a hot link never disappears when the grid is shrunk.
- GPU plans: a stacked bar per stage (receive, compute, tensor-parallel
  collectives, send, host I/O) against the period, a Gantt chart of a few
  items flowing through the stages, and a heatmap of each GPU's link busy time
  over the period per link class (NVLink, network, host), collectives included,
  so a saturated NVLink stands out.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colors  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from partitioner.simulate.gpu import PipelineReport, StageLoad  # noqa: E402
from partitioner.simulate.gpu_links import LINK_CLASSES  # noqa: E402
from partitioner.simulate.report import SimulationReport  # noqa: E402
from partitioner.simulate.schedule import PHASES, gantt_schedule  # noqa: E402
from partitioner.simulate.wafer import FabricReport  # noqa: E402

__all__ = [
    "MAX_PIXELS",
    "link_utilisation_grid",
    "max_pool",
    "render_png",
]

MAX_PIXELS = 400
# A figure grows a row per stage or wafer; past these it would take minutes to draw and
# tens of thousands of pixels. Plans that big get their first rows, and the title says so.
MAX_STAGES_DRAWN = 64
MAX_WAFERS_DRAWN = 8
MAX_GPUS_DRAWN = 64
# Heatmap cells carry their percentage while they stay big enough to read.
MAX_LABELLED_GPUS = 32
# Order within a stage's turn: collectives sit between its ops, so after compute, before sending.
_PHASE_COLOURS = {
    "recv": "#9ecae1",
    "compute": "#3182bd",
    "collective": "#e6550d",
    "send": "#fdae6b",
    "host": "#a1d99b",
}
_PHASE_LABELS = {"collective": "collectives", "host": "host I/O"}


def max_pool(grid: np.ndarray, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, int]:
    """``grid`` shrunk by an integer factor so no side exceeds ``max_pixels``, keeping block maxima.

    Returns:
        The pooled array and the factor (1 when nothing was shrunk).
    """
    factor = max(1, math.ceil(max(grid.shape) / max_pixels))
    if factor == 1:
        return grid, 1
    rows = -(-grid.shape[0] // factor) * factor
    cols = -(-grid.shape[1] // factor) * factor
    padded = np.zeros((rows, cols), dtype=grid.dtype)
    padded[: grid.shape[0], : grid.shape[1]] = grid
    pooled = padded.reshape(rows // factor, factor, cols // factor, factor).max(axis=(1, 3))
    return pooled, factor


def _draw_regions(report: FabricReport, wafer: int, axes: Sequence[plt.Axes]) -> None:
    """Each region on the three panels: coloured by partition, by utilisation, and outlined."""
    regions = [r for r in report.regions if r.wafer == wafer]
    palette = plt.get_cmap("tab20")
    util_map = plt.get_cmap("viridis")
    label_size = max(4.0, min(9.0, 200 / max(1, len(regions))))
    for r in regions:
        colour = palette(r.partition % 20)
        axes[0].add_patch(
            Rectangle((r.x, r.y), r.w, r.h, facecolor=colour, edgecolor="black", lw=0.3)
        )
        axes[0].text(
            r.x + r.w / 2,
            r.y + r.h / 2,
            str(r.partition),
            ha="center",
            va="center",
            fontsize=label_size,
        )
        busy_colour = util_map(min(r.utilisation, 1.0))
        axes[1].add_patch(
            Rectangle((r.x, r.y), r.w, r.h, facecolor=busy_colour, edgecolor="black", lw=0.3)
        )
        axes[2].add_patch(Rectangle((r.x, r.y), r.w, r.h, fill=False, edgecolor="white", lw=0.3))
    mappable = plt.cm.ScalarMappable(norm=colors.Normalize(0, 1), cmap=util_map)
    axes[1].figure.colorbar(mappable, ax=axes[1], label="compute / period", shrink=0.8)


def _draw_link_load(report: FabricReport, wafer: int, ax: plt.Axes) -> None:
    """Per core, the bytes on its busiest outgoing link (log scale; nothing for a quiet wafer)."""
    loads = report.mesh_loads.get(wafer)
    if loads is None or loads.max_bytes() == 0:
        return
    width, height = report.grid
    pooled, factor = max_pool(loads.core_max())
    shown = np.ma.masked_equal(pooled, 0)
    norm = colors.LogNorm(vmin=max(1, shown.min()), vmax=max(2, shown.max()))
    image = ax.imshow(
        shown, extent=(0, width, height, 0), norm=norm, cmap="inferno", interpolation="nearest"
    )
    note = f" (max of {factor}x{factor} cores)" if factor > 1 else ""
    ax.figure.colorbar(image, ax=ax, label=f"bytes per item on the busiest link{note}", shrink=0.8)


def _region_panels(report: FabricReport, wafer: int, axes: Sequence[plt.Axes]) -> None:
    _draw_regions(report, wafer, axes)
    _draw_link_load(report, wafer, axes[2])
    width, height = report.grid
    for ax, title in zip(axes, ("floorplan", "utilisation", "link load"), strict=True):
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_aspect("equal")
        ax.set_facecolor("#202020" if title == "link load" else "white")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x (cores)", fontsize=7)
        ax.set_ylabel("y (cores)", fontsize=7)
        ax.tick_params(labelsize=6)


def _suptitle(figure: plt.Figure, title: str, shown: int, total: int, what: str) -> None:
    if shown < total:
        title += f" (the first {shown} of {total} {what})"
    # The title holds the plan's model path and target name: text, never TeX math.
    figure.suptitle(title, fontsize=10, parse_math=False)


def _wafer_figure(report: FabricReport, title: str) -> plt.Figure:
    used = sorted({r.wafer for r in report.regions})
    wafers = used[:MAX_WAFERS_DRAWN]
    width, height = report.grid
    panel_h = 4.2 * min(2.0, max(0.6, height / width))
    figure = plt.figure(figsize=(15, panel_h * len(wafers) + 0.6), layout="constrained")
    _suptitle(figure, title, len(wafers), len(used), "wafers")
    rows = figure.subfigures(len(wafers), 1, squeeze=False)[:, 0]
    for wafer, row in zip(wafers, rows, strict=True):
        row.suptitle(f"wafer {wafer}", fontsize=9)
        _region_panels(report, wafer, row.subplots(1, 3))
    return figure


def _stage_bars(report: PipelineReport, stages: Sequence[StageLoad], ax: plt.Axes) -> None:
    """A stacked bar per stage: its seconds per item by phase, against the period."""
    names = [f"stage {i}" for i in range(len(stages))]
    left = np.zeros(len(stages))
    for phase in PHASES:
        values = np.array([getattr(s, f"{phase}_s") for s in stages]) * 1e3
        label = _PHASE_LABELS.get(phase, phase)
        ax.barh(names, values, left=left, color=_PHASE_COLOURS[phase], label=label)
        left += values
    ax.axvline(report.period_s * 1e3, color="red", lw=1, ls="--", label="period")
    ax.set_xlabel("ms per item")
    ax.invert_yaxis()
    ax.legend(fontsize=7, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.set_title("time per item by stage", fontsize=9)


def _gantt(report: PipelineReport, stages: Sequence[StageLoad], ax: plt.Axes, items: int) -> None:
    for index, item, phase, start, duration in gantt_schedule(stages, report.period_s, items):
        ax.broken_barh(
            [(start * 1e3, duration * 1e3)], (index - 0.4, 0.8), color=_PHASE_COLOURS[phase]
        )
        if phase == "compute":
            ax.text(
                (start + duration / 2) * 1e3, index, str(item), ha="center", va="center", fontsize=7
            )
    ax.set_yticks(range(len(stages)), [f"stage {i}" for i in range(len(stages))])
    ax.invert_yaxis()
    ax.set_xlabel("ms")
    ax.set_title(f"{items} items through the pipeline (number = item)", fontsize=9)


def link_utilisation_grid(report: PipelineReport) -> tuple[list[int], list[str], np.ndarray]:
    """Busy / period of each GPU's links: GPUs × the link classes that carry traffic.

    Every GPU of the drawn stages is a row (an idle one shows as 0, which is
    the point: a tensor-parallel peer with no traffic is worth seeing), up to
    `MAX_GPUS_DRAWN`; the columns follow `LINK_CLASSES`.

    Returns:
        The GPUs, the link classes, and the grid of utilisations.
    """
    stages = report.stages[:MAX_STAGES_DRAWN]
    used = {d for s in stages for d in (s.devices or (s.device,))}
    gpus = sorted(used | {g.device for g in report.gpu_links})[:MAX_GPUS_DRAWN]
    classes = [c for c in LINK_CLASSES if any(k.link_class == c for k in report.link_classes)]
    row = {device: i for i, device in enumerate(gpus)}
    grid = np.zeros((len(gpus), len(classes)))
    for g in report.gpu_links:
        if g.device in row:
            grid[row[g.device], classes.index(g.link_class)] = g.utilisation
    return gpus, classes, grid


def _link_heatmap(report: PipelineReport, ax: plt.Axes) -> None:
    """Each GPU's links by class, coloured by the share of the period they are busy."""
    gpus, classes, grid = link_utilisation_grid(report)
    ax.set_title("link busy / period per GPU", fontsize=9)
    if not classes:
        ax.text(0.5, 0.5, "no link traffic", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    # Utilisation never exceeds 1 in a consistent plan; the scale stops there so 100% is 100%.
    image = ax.imshow(grid, cmap="magma", norm=colors.Normalize(0, 1), aspect="auto")
    ax.set_xticks(range(len(classes)), classes, fontsize=7)
    ax.set_yticks(range(len(gpus)), [f"GPU {d}" for d in gpus], fontsize=7)
    if len(gpus) <= MAX_LABELLED_GPUS:
        for (r, c), value in np.ndenumerate(grid):
            ink = "white" if value < 0.6 else "black"  # magma is dark below 0.6
            ax.text(c, r, f"{100 * value:.0f}%", ha="center", va="center", fontsize=6, color=ink)
    ax.figure.colorbar(image, ax=ax, label="busy / period", shrink=0.8)


def _gpu_figure(report: PipelineReport, title: str, items: int = 4) -> plt.Figure:
    stages = report.stages[:MAX_STAGES_DRAWN]
    rows = max(len(stages), len(link_utilisation_grid(report)[0]))
    figure, (bars, gantt, links) = plt.subplots(
        1,
        3,
        figsize=(17, 2.0 + 0.3 * rows),
        layout="constrained",
        gridspec_kw={"width_ratios": (1.0, 1.3, 0.6)},
    )
    _suptitle(figure, title, len(stages), len(report.stages), "stages")
    _stage_bars(report, stages, bars)
    _gantt(report, stages, gantt, items)
    _link_heatmap(report, links)
    return figure


def _figure(report: SimulationReport, title: str) -> plt.Figure:
    """The picture of the report's kind."""
    if isinstance(report, PipelineReport):
        return _gpu_figure(report, title)
    if isinstance(report, FabricReport):
        return _wafer_figure(report, title)
    raise TypeError(f"no picture for a {report.kind} report")


def render_png(report: SimulationReport, title: str) -> bytes:
    """The report's picture as PNG bytes."""
    figure = _figure(report, title)
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(figure)
    return buffer.getvalue()
