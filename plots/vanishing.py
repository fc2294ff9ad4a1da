"""Vanishing and exploding gradients, and whether the network learns, for one activation.

Left and middle: the gradient norm of every layer's weights at initialisation and at the end of
training, one curve per sigma_w2 labelled with its chi_1 (critical: black). Right: final training
accuracy against chi_1, points labelled with their sigma_w2 (six of them, evenly spread), with chance (1/C)
marked.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from plots.common import (
    SIGMA_TITLE,
    chance,
    describe,
    final_accuracy,
    geometric_mean_over_seeds,
    held_phrase,
    hold_first,
    readable_log_axis,
    run_config,
    spread,
)
from plots.gradients import gradient_norm_panels
from plots.layout import DPI, arrange

MAX_LABELS = 6  # sigma_w2 values written beside their point, evenly spread (both ends included)


def vanishing_figure(ds: xr.Dataset) -> Figure:
    """Needs a sigma_w2 sweep at one depth (other swept dims: their first value)."""
    grad = geometric_mean_over_seeds(ds["grad_norm"])
    accuracy = final_accuracy(ds)
    accuracy = accuracy.mean("seed") if "seed" in accuracy.dims else accuracy
    held = held_phrase(grad, ("sigma_w2", "step", "layer"))
    grad = hold_first(grad, ("sigma_w2", "step", "layer"))
    accuracy, chi = hold_first(accuracy, ("sigma_w2",)), hold_first(ds["chi_1"], ("sigma_w2",))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), dpi=DPI, gridspec_kw={"width_ratios": [1, 1, 0.8]})
    sigmas = [float(s) for s in ds["sigma_w2"].values]
    gradient_norm_panels(list(axes[:2]), ds, grad, sigmas)
    right = axes[2]
    right.semilogx(chi.values, accuracy.values, "-", color="0.5", lw=1, zorder=1)
    right.scatter(chi.values, accuracy.values, c="k", s=30, zorder=3)
    labelled = set(spread(sigmas, MAX_LABELS))  # all of them overlap where chi_1 is close to 1
    for sigma, x, y in zip(sigmas, chi.values, accuracy.values, strict=True):
        if sigma not in labelled:
            continue
        right.annotate(
            f"{sigma:g}",
            (x, y),
            xytext=(0, 6),
            textcoords="offset points",
            ha="center",
            fontsize=7,
        )
    right.axvline(1.0, color="k", ls="--", lw=1, label=r"$\chi_1 = 1$ (critical)")
    right.axhline(chance(ds)[1], color="grey", ls=":", lw=1, label="chance (1/C)")
    right.set_xlim(min(chi.values.min(), 1.0) / 1.15, max(chi.values.max(), 1.0) * 1.15)
    top = float(np.nanmax(accuracy.values))
    right.set_ylim(0.0, max(top * 1.15, 2 * chance(ds)[1]))
    readable_log_axis(right, "x")
    right.set_xlabel(r"$\chi_1$ (mean field)")
    right.set_ylabel("final training accuracy")
    right.set_title(r"does it learn? (points labelled with their $\sigma_w^2$)", fontsize=9)
    right.grid(alpha=0.25)
    right.legend(fontsize=7, loc="lower center")
    legend = fig.legend(*axes[0].get_legend_handles_labels(), fontsize=7, title=SIGMA_TITLE, title_fontsize=8)
    depth = run_config(ds)["model"]["depth"]
    title = f"Vanishing and exploding gradients, depth {depth}: {describe(ds)}"
    title = fig.suptitle(title + (f" (held at {held})" if held else ""), fontsize=9)
    arrange(fig, axes, legend, "right", title)
    return fig
