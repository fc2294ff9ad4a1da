"""Signal propagation at initialisation, measured against mean-field theory.

Left: the measured mean squared pre-activation q^l per layer for several sigma_w2, with the length map
iterated from the first layer's q^1 = sigma_w2 * mean(x^2) + sigma_b2. Right: the measured per-layer
factor by which gradient norms change going back one layer, g_l / g_{l+1} (geometric mean over hidden
layers), against the prediction sqrt(chi_1).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from plots.common import describe, hold_first, run_config, spread
from sweep.theory.mean_field import chi_1, length_map_iterates


def signal_propagation_figure(ds: xr.Dataset, n_curves: int = 5) -> Figure:
    """Two panels (see module docstring); uses the deepest net, seeds averaged (geometric for ratios)."""
    config = run_config(ds)
    activation, sigma_b2 = config["model"]["activation"], config["model"]["sigma_b2"]
    q, grad = ds["q_layer"], ds["grad_norm"].isel(step=0)
    depth = int(ds["depth"].max()) if "depth" in ds.dims else int(config["model"]["depth"])
    if "depth" in ds.dims:
        q, grad = q.sel(depth=depth), grad.sel(depth=depth)
    q = q.mean("seed") if "seed" in q.dims else q
    log_ratio = np.log(grad / grad.shift(layer=-1)).sel(layer=slice(2, depth - 1))
    log_ratio = log_ratio.mean("layer")
    ratio = np.exp(log_ratio.mean("seed")) if "seed" in log_ratio.dims else np.exp(log_ratio)
    q, ratio = hold_first(q, ("sigma_w2", "layer")), hold_first(ratio, ("sigma_w2",))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    sigmas = spread(ds["sigma_w2"].values, n_curves)
    colours = plt.cm.coolwarm(np.linspace(0, 1, len(sigmas)))
    input_q = float(ds.attrs.get("input_mean_square", 1.0))
    fixed_b2 = not isinstance(sigma_b2, list)
    for sigma, colour in zip(sigmas, colours, strict=True):
        measured = q.sel(sigma_w2=sigma).dropna("layer").sel(layer=slice(1, depth))
        left.semilogy(
            measured["layer"], measured, "o", ms=3, color=colour, label=rf"$\sigma_w^2$={sigma:.2f}"
        )
        if fixed_b2 and depth > 1:
            q1 = sigma * input_q + sigma_b2
            rest = np.asarray(length_map_iterates(activation, sigma, sigma_b2, q1, depth - 1))
            left.semilogy(np.arange(1, depth + 1), np.concatenate([[q1], rest]), "-", color=colour)
    left.set_xlabel("layer l")
    left.set_ylabel(r"$q^l$ = mean squared pre-activation")
    left.set_title("forward signal at initialisation (dots: measured, lines: length map)", fontsize=9)
    left.legend(fontsize=7)
    right.semilogy(ratio["sigma_w2"], ratio, "o", color="k", label="measured (geometric mean over layers)")
    if fixed_b2:
        fine = np.linspace(float(ds["sigma_w2"].min()), float(ds["sigma_w2"].max()), 200)
        predicted = np.sqrt(np.asarray(chi_1(activation, fine, np.full_like(fine, sigma_b2))))
        right.semilogy(fine, predicted, "-", color="tab:red", label=r"$\sqrt{\chi_1}$ (mean field)")
    right.axhline(1.0, color="grey", lw=0.8)
    right.set_xlabel(r"$\sigma_w^2$")
    right.set_ylabel(r"gradient norm ratio $g_l / g_{l+1}$")
    right.set_title("backward signal: growth per layer toward the input", fontsize=9)
    right.legend(fontsize=8)
    fig.suptitle(f"Signal propagation, depth {depth}: {describe(ds)}", fontsize=9)
    return fig
