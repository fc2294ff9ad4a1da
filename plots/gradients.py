"""Vanishing and exploding gradients: per-layer gradient norm against layer index."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from plots.common import describe, geometric_mean_over_seeds, hold_first, spread


def gradient_norms_figure(ds: xr.Dataset, depth: int | None = None, n_curves: int = 6) -> Figure:
    """||dL/dW^l|| against layer l (log scale) for several sigma_w2, at step 0 and at the last step.

    Uses the deepest net (or ``depth``); geometric mean over seeds; the first value of other swept dims.
    """
    da = ds["grad_norm"]
    if "depth" in da.dims:
        depth = int(depth if depth is not None else da["depth"].max())
        da = da.sel(depth=depth)
    da = geometric_mean_over_seeds(da)
    da = hold_first(da, ("sigma_w2", "step", "layer"))
    sigmas = spread(da["sigma_w2"].values, n_curves) if "sigma_w2" in da.dims else [None]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True, constrained_layout=True)
    colours = plt.cm.coolwarm(np.linspace(0, 1, len(sigmas)))
    for ax, step_index, label in ((axes[0], 0, "initialisation"), (axes[1], -1, "end of training")):
        step = int(da["step"][step_index])
        for sigma, colour in zip(sigmas, colours, strict=True):
            curve = da.isel(step=step_index)
            curve = curve.sel(sigma_w2=sigma) if sigma is not None else curve
            curve = curve.dropna("layer")
            name = rf"$\sigma_w^2$={sigma:.2f}" if sigma is not None else None
            ax.semilogy(curve["layer"], curve.values, "o-", ms=3, color=colour, label=name)
        ax.set_xlabel("layer l (L+1 = readout)")
        ax.set_title(f"{label} (step {step})")
    axes[0].set_ylabel(r"gradient norm $\|\partial \mathcal{L} / \partial W^l\|_F$")
    if sigmas[0] is not None:
        axes[1].legend(fontsize=8)
    fig.suptitle(f"Per-layer gradient norms, depth {depth}: {describe(ds)}", fontsize=9)
    return fig
