"""Which depths can each initialisation scheme train? Final training accuracy against depth."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from plots.common import describe, final_accuracy, hold_first

SCHEMES = {1.0: "LeCun / Glorot", 2.0: "He"}  # sigma_w2 of the classic schemes for square layers


def scheme_name(sigma_w2: float, critical: float | None) -> str:
    if critical is not None and abs(sigma_w2 - critical) < 1e-3 * critical:
        return f"critical ({sigma_w2:.3g})"
    return SCHEMES.get(round(sigma_w2, 6), rf"$\sigma_w^2$={sigma_w2:g}")


def init_schemes_figure(ds: xr.Dataset) -> Figure:
    """One line per (sigma_w2 scheme, init); seeds averaged. Needs dims depth and sigma_w2."""
    accuracy = final_accuracy(ds)
    accuracy = accuracy.mean("seed") if "seed" in accuracy.dims else accuracy
    inits = list(accuracy["init"].values) if "init" in accuracy.dims else [None]
    accuracy = hold_first(accuracy, ("depth", "sigma_w2", "init"))
    critical = ds.attrs.get("critical_sigma_w2")
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    colours = plt.cm.tab10(np.arange(ds.sizes["sigma_w2"]))
    for sigma, colour in zip(ds["sigma_w2"].values, colours, strict=True):
        for init, style in zip(inits, ("-o", "--s"), strict=False):
            curve = accuracy.sel(sigma_w2=sigma)
            curve = curve.sel(init=init) if init is not None else curve
            label = scheme_name(float(sigma), critical) + (f", {init}" if init is not None else "")
            ax.plot(curve["depth"], curve.values, style, color=colour, label=label)
    ax.axhline(1.0 / float(ds.attrs.get("n_classes", 10)), color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("depth L")
    ax.set_ylabel("final training accuracy")
    ax.legend(fontsize=8)
    ax.set_title(f"Initialisation schemes across depth\n{describe(ds)}", fontsize=9)
    return fig
