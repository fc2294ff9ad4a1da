"""Training curves: training loss against step for several sigma_w2, one panel per depth."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from plots.common import describe, hold_first, spread


def training_curves_figure(ds: xr.Dataset, n_curves: int = 6, n_panels: int = 3) -> Figure:
    """Mean training loss over seeds against step; the first value of other swept dims."""
    da = ds["train_loss"]
    if "seed" in da.dims:
        da = da.mean("seed")
    depths = spread(da["depth"].values, n_panels) if "depth" in da.dims else [None]
    da = hold_first(da, ("sigma_w2", "step", "depth"))
    sigmas = spread(da["sigma_w2"].values, n_curves) if "sigma_w2" in da.dims else [None]
    colours = plt.cm.coolwarm(np.linspace(0, 1, len(sigmas)))
    fig, axes = plt.subplots(
        1, len(depths), figsize=(4 * len(depths), 3.6), sharey=True, constrained_layout=True, squeeze=False
    )
    for ax, depth in zip(axes[0], depths, strict=True):
        panel = da.sel(depth=depth) if depth is not None else da
        for sigma, colour in zip(sigmas, colours, strict=True):
            curve = panel.sel(sigma_w2=sigma) if sigma is not None else panel
            name = rf"$\sigma_w^2$={sigma:.2f}" if sigma is not None else None
            ax.plot(curve["step"], curve.values, color=colour, label=name)
        ax.set_xlabel("step")
        ax.set_title(f"depth {depth}" if depth is not None else "")
    axes[0][0].set_ylabel("training loss")
    if sigmas[0] is not None:
        axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Training curves: {describe(ds)}", fontsize=9)
    return fig
