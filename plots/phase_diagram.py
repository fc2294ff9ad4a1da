"""Trainability phase diagram: final training accuracy over (sigma_w2, depth), with the theory drawn over it.

Overlays (Schoenholz et al. 2017): the critical sigma_w2 (chi_1 = 1) and the curve depth = n * xi_c(sigma_w2)
with n = ``measure.xi_multiple`` (default 6), below which mean-field theory expects a network to train.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from plots.common import describe, final_accuracy, reduce_to, run_config
from sweep.theory.mean_field import xi_c


def phase_diagram_figure(ds: xr.Dataset, variable: str = "train_accuracy") -> Figure:
    """Heatmap of the final ``variable`` (default training accuracy) with sigma_w2 across and depth up,
    seeds averaged, any other swept dim maximised over (said in the title). Needs dims sigma_w2, depth."""
    accuracy, note = reduce_to(final_accuracy(ds, variable), ("depth", "sigma_w2"))
    accuracy = accuracy.transpose("depth", "sigma_w2")
    fig, ax = plt.subplots(figsize=(7, 5), constrained_layout=True)
    mesh = ax.pcolormesh(
        accuracy["sigma_w2"],
        accuracy["depth"],
        accuracy.values,
        shading="nearest",
        cmap="viridis",
        vmin=float(1.0 / ds.attrs.get("n_classes", 10)),
        vmax=1.0,
    )
    fig.colorbar(mesh, ax=ax, label=f"final {variable.replace('_', ' ')}")
    _overlay_theory(ax, ds)
    ax.set_xlabel(r"weight variance $\sigma_w^2$")
    ax.set_ylabel("depth L (hidden layers)")
    title = f"Trainability: {describe(ds)}"
    if note:
        title += f"\n({note}; diverged = chance)"
    if "trainability_agreement" in ds.attrs:
        threshold = run_config(ds)["measure"]["trained_accuracy"]
        score = float(ds.attrs["trainability_agreement"])
        title += f"\nagreement with theory: {score:.0%} of cells (trained = accuracy > {threshold})"
    ax.set_title(title, fontsize=9)
    return fig


def _overlay_theory(ax: plt.Axes, ds: xr.Dataset) -> None:
    """Critical line and n * xi_c curve, when activation and sigma_b2 are fixed in the run."""
    config = run_config(ds)
    activation, sigma_b2 = config["model"]["activation"], config["model"]["sigma_b2"]
    if isinstance(activation, list) or isinstance(sigma_b2, list):
        return
    n = config["measure"]["xi_multiple"]
    lo, hi = float(ds["sigma_w2"].min()), float(ds["sigma_w2"].max())
    sigma = np.linspace(lo, hi, 400)
    depth = n * np.asarray(xi_c(activation, sigma, np.full_like(sigma, sigma_b2)))
    top = float(ds["depth"].max()) * 1.05
    ax.plot(sigma, np.minimum(depth, 10 * top), color="white", lw=2, label=rf"${n:g}\,\xi_c$ (mean field)")
    critical = ds.attrs.get("critical_sigma_w2")
    if critical is not None and lo <= critical <= hi:
        ax.axvline(critical, color="red", ls="--", lw=1.5, label=rf"critical $\sigma_w^2$ = {critical:.2f}")
    ax.set_ylim(float(ds["depth"].min()) * 0.5, top)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.6)
