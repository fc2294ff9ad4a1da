"""Vanishing and exploding gradients: per-layer gradient norm against layer index."""

from __future__ import annotations

import matplotlib.pyplot as plt
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from plots.common import (
    SIGMA_TITLE,
    describe,
    geometric_mean_over_seeds,
    held_phrase,
    hold_first,
    pick_sigmas,
    readable_log_axis,
    run_config,
    sigma_styles,
)
from plots.layout import DPI, arrange


def gradient_norm_panels(axes: list[plt.Axes], ds: xr.Dataset, grad: xr.DataArray, sigmas: list) -> None:
    """||dL/dW^l|| against l on ``axes`` = (initialisation, end of training), one curve per sigma_w2, coloured
    by phase (``sigma_styles``: critical black on top). ``grad`` has dims (sigma_w2, step, layer)."""
    styles = sigma_styles(ds, sigmas) if sigmas[0] is not None else [{"color": "k"}]
    for ax, step_index, when in ((axes[0], 0, "at initialisation"), (axes[1], -1, "end of training")):
        for sigma, style in zip(sigmas, styles, strict=True):
            curve = grad.isel(step=step_index)
            curve = curve.sel(sigma_w2=sigma) if sigma is not None else curve
            curve = curve.dropna("layer")
            ax.semilogy(curve["layer"], curve.values, "o-", ms=2.5, **style)
        ax.set_xlabel("layer l (input side left; L+1 = readout)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole numbers
        ax.set_title(f"{when} (step {int(grad['step'][step_index])})", fontsize=9)
        ax.grid(alpha=0.25, which="major")
    axes[0].set_ylabel(r"gradient norm $\|\partial \mathcal{L} / \partial W^l\|_F$")
    for ax in axes:
        readable_log_axis(ax)


def gradient_norms_figure(ds: xr.Dataset, depth: int | None = None, n_curves: int = 6) -> Figure:
    """||dL/dW^l|| against layer l (log scale) for several sigma_w2 (always the most critical one), at step 0
    and at the last step; one legend for both panels.

    Uses the deepest net (or ``depth``); geometric mean over seeds; the first value of other swept dims.
    """
    da = ds["grad_norm"]
    if "depth" in da.dims:
        depth = int(depth if depth is not None else da["depth"].max())
        da = da.sel(depth=depth)
    else:
        depth = int(run_config(ds)["model"]["depth"])
    da = geometric_mean_over_seeds(da)
    held = held_phrase(da, ("sigma_w2", "step", "layer"))
    da = hold_first(da, ("sigma_w2", "step", "layer"))
    sigmas = pick_sigmas(ds, n_curves) if "sigma_w2" in da.dims else [None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True, dpi=DPI)
    gradient_norm_panels(list(axes), ds, da, sigmas)
    legend = None
    if sigmas[0] is not None:
        legend = fig.legend(
            *axes[0].get_legend_handles_labels(), fontsize=8, title=SIGMA_TITLE, title_fontsize=9
        )
    title = f"Per-layer gradient norms, depth {depth}: {describe(ds)}"
    title = fig.suptitle(title + (f"\n(held at {held})" if held else ""), fontsize=9)
    arrange(fig, axes, legend, "right", title)
    return fig
