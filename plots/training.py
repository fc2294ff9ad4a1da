"""Training curves: training loss (top) and accuracy (bottom) against step for several sigma_w2, one column
per depth, with the chance level of each (ln C and 1/C for C classes) drawn as a dotted line."""

from __future__ import annotations

import matplotlib.pyplot as plt
import xarray as xr
from matplotlib.figure import Figure

from plots.common import (
    SIGMA_TITLE,
    chance,
    describe,
    held_phrase,
    hold_first,
    pick_sigmas,
    sigma_styles,
    spread,
)
from plots.layout import DPI, arrange


def training_curves_figure(ds: xr.Dataset, n_curves: int = 6, n_panels: int = 3) -> Figure:
    """Mean over seeds against step; the first value of other swept dims (said in the title)."""
    keep = ("sigma_w2", "step", "depth")
    loss, accuracy = ds["train_loss"], ds["train_accuracy"]
    if "seed" in loss.dims:
        loss, accuracy = loss.mean("seed"), accuracy.mean("seed")
    depths = spread(loss["depth"].values, n_panels) if "depth" in loss.dims else [None]
    held = held_phrase(loss, keep)
    loss, accuracy = hold_first(loss, keep), hold_first(accuracy, keep)
    sigmas = pick_sigmas(ds, n_curves) if "sigma_w2" in loss.dims else [None]
    styles = sigma_styles(ds, sigmas) if sigmas[0] is not None else [{"color": "k"}]
    chance_loss, chance_accuracy = chance(ds)
    fig, axes = plt.subplots(
        2,
        len(depths),
        figsize=(max(3.6 * len(depths), 5.5) + 2.2, 6.2),
        sharex=True,
        sharey="row",
        squeeze=False,
        dpi=DPI,
    )
    for column, depth in enumerate(depths):
        for row, (da, level) in enumerate(((loss, chance_loss), (accuracy, chance_accuracy))):
            ax = axes[row][column]
            panel = da.sel(depth=depth) if depth is not None else da
            for sigma, style in zip(sigmas, styles, strict=True):
                curve = panel.sel(sigma_w2=sigma) if sigma is not None else panel
                ax.plot(curve["step"], curve.values, **style)
            ax.axhline(level, color="grey", ls=":", lw=1.2)
            ax.grid(alpha=0.25)
        axes[0][column].set_title(f"depth {depth}" if depth is not None else "", fontsize=9)
        axes[1][column].set_xlabel("step")
    axes[0][0].set_ylabel("training loss")
    axes[1][0].set_ylabel("training accuracy")
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="grey", ls=":", lw=1.2))
    labels.append(f"chance: loss ln C = {chance_loss:.3g},\naccuracy 1/C = {chance_accuracy:.3g}")
    legend = fig.legend(
        handles, labels, fontsize=7, title=SIGMA_TITLE if sigmas[0] is not None else None, title_fontsize=8
    )
    title = f"Training curves: {describe(ds)}"
    title = fig.suptitle(title + (f"\n(held at {held})" if held else ""), fontsize=9)
    arrange(fig, axes, legend, "right", title)
    return fig
