"""Vanishing and exploding gradients, and whether the network learns, for one activation.

Left and middle: the gradient norm of every layer's weights at initialisation and at the end of
training, one curve per sigma_w2 labelled with its chi_1. Right: final training accuracy against chi_1.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from plots.common import describe, final_accuracy, geometric_mean_over_seeds, hold_first, run_config


def vanishing_figure(ds: xr.Dataset) -> Figure:
    """Needs a sigma_w2 sweep at one depth (other swept dims: their first value)."""
    grad = geometric_mean_over_seeds(ds["grad_norm"])
    accuracy = final_accuracy(ds)
    accuracy = accuracy.mean("seed") if "seed" in accuracy.dims else accuracy
    chi = ds["chi_1"]
    grad = hold_first(grad, ("sigma_w2", "step", "layer"))
    accuracy, chi = hold_first(accuracy, ("sigma_w2",)), hold_first(chi, ("sigma_w2",))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    colours = plt.cm.coolwarm(np.linspace(0, 1, ds.sizes["sigma_w2"]))
    for ax, index, label in ((axes[0], 0, "initialisation"), (axes[1], -1, "end of training")):
        for sigma, colour in zip(ds["sigma_w2"].values, colours, strict=True):
            curve = grad.isel(step=index).sel(sigma_w2=sigma).dropna("layer")
            name = rf"$\sigma_w^2$={sigma:g}, $\chi_1$={float(chi.sel(sigma_w2=sigma)):.2f}"
            ax.semilogy(curve["layer"], curve.values, "o-", ms=2.5, color=colour, label=name)
        ax.set_xlabel("layer l (input side left; L+1 = readout)")
        ax.set_title(f"{label} (step {int(grad['step'][index])})", fontsize=9)
    axes[0].set_ylabel(r"$\|\partial \mathcal{L}/\partial W^l\|_F$")
    axes[0].legend(fontsize=7)
    axes[2].semilogx(chi.values, accuracy.values, "o-", color="k")
    axes[2].axvline(1.0, color="red", ls="--", lw=1, label=r"$\chi_1 = 1$ (critical)")
    axes[2].set_xlabel(r"$\chi_1$ (mean field)")
    axes[2].set_ylabel("final training accuracy")
    axes[2].legend(fontsize=8)
    depth = run_config(ds)["model"]["depth"]
    fig.suptitle(f"Vanishing and exploding gradients, depth {depth}: {describe(ds)}", fontsize=9)
    return fig
