"""Which depths can each initialisation scheme train? Final training accuracy against depth."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from plots.common import chance, describe, final_accuracy, held_phrase, hold_first

SCHEMES = {1.0: "LeCun / Glorot", 2.0: "He"}  # sigma_w2 of the classic schemes for square layers


def scheme_name(sigma_w2: float, critical: float | None) -> str:
    if critical is not None and abs(sigma_w2 - critical) < 1e-3 * critical:
        return rf"critical ($\sigma_w^2$={sigma_w2:.3g})"
    name = SCHEMES.get(round(sigma_w2, 6))
    return rf"{name} ($\sigma_w^2$={sigma_w2:g})" if name else rf"$\sigma_w^2$={sigma_w2:g}"


def init_schemes_figure(ds: xr.Dataset) -> Figure:
    """One line per (sigma_w2 scheme, init); seeds averaged. Needs dims depth and sigma_w2."""
    accuracy = final_accuracy(ds)
    accuracy = accuracy.mean("seed") if "seed" in accuracy.dims else accuracy
    inits = list(accuracy["init"].values) if "init" in accuracy.dims else [None]
    accuracy = hold_first(accuracy, ("depth", "sigma_w2", "init"))
    critical = ds.attrs.get("critical_sigma_w2")
    fig, ax = plt.subplots(figsize=(8.5, 4.5), layout="constrained")
    colours = plt.cm.tab10(np.arange(ds.sizes["sigma_w2"]))
    for sigma, colour in zip(ds["sigma_w2"].values, colours, strict=True):
        for init, style in zip(inits, ("-o", "--s"), strict=False):
            curve = accuracy.sel(sigma_w2=sigma)
            curve = curve.sel(init=init) if init is not None else curve
            label = scheme_name(float(sigma), critical) + (f", {init}" if init is not None else "")
            ax.plot(curve["depth"], curve.values, style, color=colour, label=label)
    ax.axhline(chance(ds)[1], color="grey", lw=1.2, ls=":", label=f"chance (1/C = {chance(ds)[1]:.2g})")
    ax.set_xscale("log")
    depths = [int(d) for d in ds["depth"].values]
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(0.0, max(float(np.nanmax(accuracy.values)) * 1.1, 2 * chance(ds)[1]))
    ax.grid(alpha=0.25)
    ax.set_xlabel("depth L (hidden layers)")
    ax.set_ylabel("final training accuracy")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right center", fontsize=8)
    held = held_phrase(final_accuracy(ds), ("depth", "sigma_w2", "init", "seed"))
    ax.set_title(
        f"Initialisation schemes across depth\n{describe(ds)}" + (f" (held at {held})" if held else ""),
        fontsize=9,
    )
    return fig
