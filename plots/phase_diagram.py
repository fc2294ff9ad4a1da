"""Trainability phase diagram: final training accuracy over (sigma_w2, depth), with the theory drawn over it.

Overlays (Schoenholz et al. 2017): the critical sigma_w2 (chi_1 = 1) and the curve depth = n * xi_c(sigma_w2)
with n = ``measure.xi_multiple`` (default 6), below which mean-field theory expects a network to train.
The colour scale spans the data: chance (1/C) at the bottom, the best cell at the top; each cell is
labelled with its value. The overlays are outlined so that they stay visible over every colour.
"""

from __future__ import annotations

import textwrap

import matplotlib.patheffects as pe
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.ticker import MaxNLocator

from plots.common import THEORY_POINTS, chance, describe, final_accuracy, reduce_to, run_config
from plots.layout import DPI, arrange
from plots.theory_curves import curve
from sweep.theory.mean_field import critical_sigma_w2, xi_c

MAX_LABELLED_CELLS = 200  # beyond this, cells are too small for their values


def colour_limits(accuracy: xr.DataArray, ds: xr.Dataset) -> tuple[float, float]:
    """(chance, best cell): the colour scale of the heatmap."""
    low = chance(ds)[1]
    best = float(np.nanmax(accuracy.values)) if np.isfinite(accuracy.values).any() else low
    return low, max(best, low + 1e-3)


def phase_diagram_figure(ds: xr.Dataset, variable: str = "train_accuracy") -> Figure:
    """Heatmap of the final ``variable`` (default training accuracy) with sigma_w2 across and depth up,
    seeds averaged, any other swept dim maximised over (said in the title). Needs dims sigma_w2, depth."""
    accuracy, note = reduce_to(final_accuracy(ds, variable), ("depth", "sigma_w2"))
    accuracy = accuracy.transpose("depth", "sigma_w2")
    low, best = colour_limits(accuracy, ds)
    fig, (ax, bar_ax) = plt.subplots(1, 2, figsize=(7.5, 5.6), dpi=DPI, width_ratios=[1, 0.045])
    mesh = ax.pcolormesh(
        accuracy["sigma_w2"],
        accuracy["depth"],
        accuracy.values,
        shading="nearest",
        cmap="viridis",
        vmin=low,
        vmax=best,
    )
    bar = fig.colorbar(mesh, cax=bar_ax, label=f"final {variable.replace('_', ' ')}")
    inner = MaxNLocator(nbins=5).tick_values(low, best)
    inner = [t for t in inner if low + 0.06 * (best - low) < t < best - 0.06 * (best - low)]
    bar.set_ticks([low, *inner, best])
    bar.ax.set_yticklabels([f"{low:.2f} (chance)", *(f"{t:.2f}" for t in inner), f"{best:.2f} (best)"])
    if accuracy.size <= MAX_LABELLED_CELLS:
        _label_cells(ax, accuracy, low, best)
    legend = overlay_mean_field(ax, ds)
    ax.set_xlabel(r"weight variance $\sigma_w^2$")
    ax.set_ylabel("depth L (hidden layers)")
    title = textwrap.fill(f"Trainability: {describe(ds)}", 90)  # a long description wraps, never cut
    if note:
        title += f"\n({note}; diverged = chance)"
    if "trainability_agreement" in ds.attrs:
        threshold = run_config(ds)["measure"]["trained_accuracy"]
        score = float(ds.attrs["trainability_agreement"])
        title += f"\nagreement with theory: {score:.0%} of cells (trained = accuracy > {threshold})"
    ax.set_title(title, fontsize=9)
    arrange(fig, [ax, bar_ax], legend, "bottom", gap=8.0)
    return fig


def _label_cells(ax: plt.Axes, accuracy: xr.DataArray, low: float, best: float) -> None:
    """Each cell's value, dark on the bright cells and white on the dark ones."""
    middle = low + 0.6 * (best - low)
    for depth in accuracy["depth"].values:
        for sigma in accuracy["sigma_w2"].values:
            value = float(accuracy.sel(depth=depth, sigma_w2=sigma))
            if np.isfinite(value):
                colour, box = ("k", (1, 1, 1, 0.85)) if value > middle else ("w", (0, 0, 0, 0.7))
                ax.text(
                    sigma,
                    depth,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=colour,
                    zorder=5,  # above the overlays, on a faint box, so a line through the cell hides no digit
                    bbox={"boxstyle": "round,pad=0.15", "fc": box, "ec": "none"},
                )


def _edges(values: np.ndarray) -> tuple[float, float]:
    """The outer edges of the cells centred on ``values`` (as pcolormesh's nearest shading draws them)."""
    values = np.sort(np.asarray(values, np.float64))
    if len(values) < 2:
        return float(values[0]) - 0.5, float(values[0]) + 0.5
    return float(values[0] - (values[1] - values[0]) / 2), float(values[-1] + (values[-1] - values[-2]) / 2)


def overlay_mean_field(
    ax: plt.Axes, ds: xr.Dataset, meaning: str = "mean field: trainable below", mlp_only: bool = False
) -> Legend | None:
    """Critical line and n * xi_c curve of the fully connected mean field (``meaning``: what the curve's
    legend says of it), when activation and sigma_b2 are fixed in the run; both across the whole
    measured region (to the cells' outer edges), outlined, with the legend below the axes. Drawn only
    where the results carry the MLP's theory (``chi_1``), unless ``mlp_only``: the panel shows MLPs.
    Returns the figure legend (None where nothing is drawn)."""
    config = run_config(ds)
    activation, sigma_b2 = config["model"]["activation"], config["model"]["sigma_b2"]
    if isinstance(activation, list) or isinstance(sigma_b2, list) or ("chi_1" not in ds and not mlp_only):
        return None  # no chi_1: an architecture that does not follow the fully connected mean field
    n = config["measure"]["xi_multiple"]
    left, right = _edges(ds["sigma_w2"].values)
    bottom, top = _edges(ds["depth"].values)
    sigma = np.linspace(max(left, 1e-3), right, THEORY_POINTS)
    depth = n * curve(xi_c, activation, sigma, np.full_like(sigma, sigma_b2))
    outline = [pe.Stroke(linewidth=4.5, foreground="black"), pe.Normal()]
    ax.plot(
        sigma,
        np.minimum(depth, 10 * top),
        color="white",
        lw=2.5,
        path_effects=outline,
        label=rf"depth = ${n:g}\,\xi_c$ ({meaning})",
    )
    critical = ds.attrs.get("critical_sigma_w2")
    if critical is None:  # results without the predictions (e.g. a panel of MLPs only)
        critical = float(curve(critical_sigma_w2, activation, sigma_b2))
    if left <= critical <= right:
        ax.axvline(
            critical,
            color="#ff3030",
            ls="--",
            lw=2.2,
            path_effects=[pe.Stroke(linewidth=4.2, foreground="white"), pe.Normal()],
            label=rf"critical $\sigma_w^2$ = {critical:.2f} ($\chi_1 = 1$)",
        )
    ax.set_xlim(left, right)
    ax.set_ylim(max(bottom, 0.0), top)
    return ax.figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8, ncols=2)
