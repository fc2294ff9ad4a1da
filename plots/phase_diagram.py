"""Trainability phase diagram: final training accuracy over (sigma_w2, depth)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import xarray as xr
from matplotlib.figure import Figure

from plots.common import describe, final_accuracy, reduce_to


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
    ax.set_xlabel(r"weight variance $\sigma_w^2$")
    ax.set_ylabel("depth L (hidden layers)")
    ax.set_title(
        f"Trainability: {describe(ds)}" + (f"\n({note}; diverged = chance)" if note else ""), fontsize=9
    )
    return fig
