"""Order and chaos: measured correlation maps of wide random networks against mean-field theory.

For input pairs (a, b), the correlation of their pre-activations at layer l, c^l, is mapped by one more
random layer to c^{l+1}. Mean-field theory predicts the map c -> (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2)
/ q* (Poole et al. 2016): in the ordered phase (chi_1 < 1) its only stable fixed point is c* = 1,
in the chaotic phase (chi_1 > 1) it crosses the diagonal at c* < 1.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from plots.common import describe, run_config
from plots.order_chaos import order_chaos_figure
from sweep.theory.mean_field import correlation_map


def correlation_maps_figure(ds: xr.Dataset) -> Figure:
    """One panel per sigma_b2: measured (c^l, c^{l+1}) over hidden layers, pairs and seeds (dots) and the
    theory's map at q* (lines), one colour per sigma_w2. Needs dims sigma_w2, sigma_b2 and c_layer."""
    activation = run_config(ds)["model"]["activation"]
    c = ds["c_layer"]
    depth = int(ds["depth"].max()) if "depth" in ds.dims else int(run_config(ds)["model"]["depth"])
    held = {d: 0 for d in c.dims if d not in ("sigma_w2", "sigma_b2", "layer", "pair", "seed")}
    c = c.isel(held)  # other swept dims: their first value
    chi_1, q_star = ds["chi_1"].isel({d: 0 for d in held if d in ds["chi_1"].dims}), ds["q_star"]
    q_star = q_star.isel({d: 0 for d in held if d in q_star.dims})
    sigma_b2s = ds["sigma_b2"].values
    fig, axes = plt.subplots(
        1, len(sigma_b2s), figsize=(4.2 * len(sigma_b2s), 4), squeeze=False, constrained_layout=True
    )
    colours = plt.cm.viridis(np.linspace(0, 0.8, ds.sizes["sigma_w2"]))  # no pale yellow
    grid = np.linspace(-0.2, 1.0, 200)
    for ax, sigma_b2 in zip(axes[0], sigma_b2s, strict=True):
        for sigma_w2, colour in zip(ds["sigma_w2"].values, colours, strict=True):
            point = c.sel(sigma_w2=sigma_w2, sigma_b2=sigma_b2)
            now = point.sel(layer=slice(1, depth - 1)).values.ravel()
            nxt = point.sel(layer=slice(2, depth)).values.ravel()
            chi = float(chi_1.sel(sigma_w2=sigma_w2, sigma_b2=sigma_b2))
            ax.plot(now, nxt, "o", ms=2.5, alpha=0.55, color=colour)
            q = float(q_star.sel(sigma_w2=sigma_w2, sigma_b2=sigma_b2))
            theory = np.asarray(correlation_map(activation, grid, q, sigma_w2, sigma_b2))
            near = abs(np.log(chi)) < 0.01
            label = rf"$\sigma_w^2$={sigma_w2:g} ($\chi_1$={chi:.2f}{', critical' if near else ''})"
            ax.plot(grid, theory, "--" if near else "-", color=colour, lw=2.2 if near else 1.6, label=label)
        ax.plot([-0.2, 1], [-0.2, 1], color="grey", lw=0.8, ls=":")
        ax.set_xlim(-0.2, 1.02)
        ax.set_ylim(-0.2, 1.02)
        ax.set_xlabel(r"$c^l$")
        ax.set_title(rf"$\sigma_b^2$ = {sigma_b2:g}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel(r"$c^{l+1}$")
    fig.suptitle(
        "Correlation maps: dots measured (layers, input pairs, seeds), lines mean field\n"
        f"{describe(ds)}, depth {depth}; dotted: the diagonal $c^{{l+1}} = c^l$",
        fontsize=9,
    )
    return fig


def order_chaos_theory_figure(ds: xr.Dataset) -> Figure:
    """The theory's phase diagram over (sigma_w2, sigma_b2) for the run's activation, covering its grid."""
    activation = run_config(ds)["model"]["activation"]
    top = max(1.0, 1.5 * float(ds["sigma_b2"].max()))
    marked = ([float(w) for w in ds["sigma_w2"].values], [float(b) for b in ds["sigma_b2"].values])
    return order_chaos_figure(
        activation, sigma_b2_max=top, mark=marked, mark_label="measured (correlation maps)"
    )
