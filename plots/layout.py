"""Figure layout without a layout engine: measure the grid's decorations once, then fix the positions.

Constrained layout measures every artist of every panel, twice, each time a figure is drawn, and a
figure with a layout engine is drawn twice when saved (once without rendering, to lay it out): together
about 40% of the standard figures' drawing time. Those figures are regular grids of panels with a
suptitle and at most one legend outside the grid, so ``arrange`` measures what varies (the tick labels,
axis labels and titles around the panels, the legend, the suptitle) once, at the resolution the figure
is saved at, and places the grid with ``subplots_adjust``; saving then draws the figure once, reusing
the text measured here. Margins and gaps are as tight as constrained layout's (``PAD`` around each
element).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text

DPI = 120  # figures are created at the resolution they are saved at: text is measured once
PAD = 4.0  # points between a figure's edge, its suptitle, its legend and the panels' decorations
SLACK = 3.0  # points more around the panels: tick labels may change a little once the panels resize

Side = Literal["left", "right", "bottom"]


def arrange(
    fig: Figure,
    axes: np.ndarray | list,
    legend: Legend | None = None,
    side: Side = "right",
    title: Text | None = None,
    gap: float = 0.0,
) -> None:
    """Place the grid of panels ``axes`` (rows x columns, as ``plt.subplots(squeeze=False)`` returns
    them, or one row; every panel of the figure's one grid) so that their decorations, ``title`` (the
    figure's suptitle, put at the top) and ``legend`` (a figure legend, on ``side``: centred beside the
    panels or below them) fit inside the figure with ``PAD`` around each. Call it once the figure is
    complete: the last step before saving. ``gap``: points more between the columns (e.g. before a
    colour bar)."""
    grid = np.asarray(axes, dtype=object).reshape(np.shape(axes) if np.ndim(axes) == 2 else (1, -1))
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    points = fig.dpi / 72.0
    pad, slack = PAD * points, SLACK * points

    def overhang(ax: Axes) -> tuple[float, float, float, float]:
        """(left, right, bottom, top) pixels that the panel's decorations reach beyond its frame."""
        frame = ax.get_window_extent(renderer)
        outer = ax.get_tightbbox(renderer, for_layout_only=True, bbox_extra_artists=[])
        return (
            max(frame.x0 - outer.x0, 0.0),
            max(outer.x1 - frame.x1, 0.0),
            max(frame.y0 - outer.y0, 0.0),
            max(outer.y1 - frame.y1, 0.0),
        )

    rows, cols = grid.shape
    reach = np.array([[overhang(ax) for ax in row] for row in grid])  # [rows, cols, 4]
    left = reach[:, 0, 0].max() + pad + slack
    right = reach[:, -1, 1].max() + pad + slack
    bottom = reach[-1, :, 2].max() + pad + slack
    top = reach[0, :, 3].max() + pad + slack
    wgap = max((reach[:, :-1, 1] + reach[:, 1:, 0]).max(initial=0.0) + pad + slack, pad) + gap * points
    hgap = max((reach[:-1, :, 2] + reach[1:, :, 3]).max(initial=0.0) + pad + slack, pad)

    if title is not None and title.get_text():
        box = title.get_window_extent(renderer)
        title.set(y=1.0 - pad / height, va="top")
        top += box.height + pad
    if legend is not None:
        box = legend.get_window_extent(renderer)
        if side == "bottom":
            bottom += box.height + pad
        elif side == "left":
            left += box.width + pad
        else:
            right += box.width + pad

    inner_w = width - left - right - (cols - 1) * wgap
    inner_h = height - top - bottom - (rows - 1) * hgap
    fig.subplots_adjust(
        left=left / width,
        right=1.0 - right / width,
        bottom=bottom / height,
        top=1.0 - top / height,
        wspace=wgap * cols / inner_w if cols > 1 else 0.0,
        hspace=hgap * rows / inner_h if rows > 1 else 0.0,
    )
    if legend is not None:  # beside the panels, centred on them; or below them, centred on the figure
        middle = (bottom + (height - top)) / 2 / height
        anchor, loc = {
            "right": (((width - pad) / width, middle), "center right"),
            "left": ((pad / width, middle), "center left"),
            "bottom": ((0.5, pad / height), "lower center"),
        }[side]
        legend.set_bbox_to_anchor(anchor, transform=fig.transFigure)
        legend.set_loc(loc)
