"""Normalised networks (``model.norm``; Yang et al. 2019 for batch norm).

``normalisation_growth_figure``: the growth per layer of the squared gradient norm toward the input at
initialisation (``sweep.measure.predictions.gradient_growth``: a fit over the hidden layers) against the batch
size, one panel per activation: batch norm's measured points against its theory
(``grad_growth_theory``: ``(B - 2)/(B - 3)`` for linear nets, the large-batch limit otherwise), layer
norm's beside them (no batch-size effect; its theory is chi_1 of one example's gradient).

``normalisation_depth_figure``: final training accuracy against depth, one line per ``model.norm``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from plots.common import chance, describe, final_accuracy, hold_first, readable_log_axis, run_config
from sweep.measure.predictions import gradient_growth

# norm -> (label, colour, marker)
NORM_STYLES = {
    "none": ("no normalisation", "0.15", "o"),
    "layer": ("layer norm", "tab:blue", "o"),
    "batch": ("batch norm", "tab:orange", "s"),
}


LAYER_THEORY = "\n".join(
    (
        r"layer norm theory: $\chi_1$ of one example's",
        "gradient (the measured gradient of many",
        "examples adds cross terms: it grows less)",
    )
)


def shows_normalisation_growth(ds: xr.Dataset) -> bool:
    """Normalised variants over several batch sizes, with the theory beside them."""
    return "norm" in ds.dims and "batch_size" in ds.dims and "grad_growth_theory" in ds


def shows_normalisation_depth(ds: xr.Dataset) -> bool:
    """Several ``model.norm`` values and depths, trained."""
    return "norm" in ds.dims and "depth" in ds.dims and ds.sizes.get("step", 0) > 1


def normalisation_growth_figure(ds: xr.Dataset) -> Figure:
    growth = gradient_growth(ds["grad_norm"].isel(step=0))
    theory = ds["grad_growth_theory"]
    activations = [str(a) for a in ds["activation"].values] if "activation" in ds.dims else [None]
    fig, axes = plt.subplots(
        1, len(activations), figsize=(4.6 * len(activations) + 1.6, 4.4), squeeze=False, sharey=True
    )
    batch = ds["batch_size"].values.astype(float)
    fine = np.geomspace(max(batch.min(), 4), batch.max(), 200)
    model = run_config(ds)["model"]
    for ax, activation in zip(axes[0], activations, strict=True):
        where = {} if activation is None else {"activation": activation}
        for norm in [str(n) for n in ds["norm"].values]:
            label, colour, marker = NORM_STYLES.get(norm, (norm, "0.5", "o"))
            measured = hold_first(growth.sel(norm=norm, **where), ("batch_size", "seed"))
            middle = measured.mean("seed") if "seed" in measured.dims else measured
            low = measured.min("seed") if "seed" in measured.dims else measured
            high = measured.max("seed") if "seed" in measured.dims else measured
            ax.errorbar(
                batch, middle, yerr=[middle - low, high - middle], color=colour, marker=marker, ms=6,
                lw=0, elinewidth=1.2, capsize=3, label=f"{label}, measured", zorder=3,
            )  # fmt: skip
            predicted = float(hold_first(theory.sel(norm=norm, **where), ("batch_size",)).values[-1])
            if norm == "batch" and activation == "linear":
                ax.plot(
                    fine,
                    (fine - 2) / (fine - 3),
                    color=colour,
                    ls="--",
                    lw=1.6,
                    label=r"batch norm theory, $(B-2)/(B-3)$",
                )
            elif norm == "batch":
                ax.axhline(predicted, color=colour, ls="--", lw=1.6, label="batch norm, large-batch limit")
            elif np.isfinite(predicted):
                ax.axhline(
                    predicted,
                    color=colour,
                    ls=":",
                    lw=1.8,
                    label=LAYER_THEORY,
                )
        ax.axhline(1.0, color="0.6", lw=1.0, zorder=1)
        ax.set_xscale("log", base=2)
        ax.set_xlim(batch.min() / 1.3, batch.max() * 1.3)  # also where no point is finite
        ax.set_xticks(batch, [f"{b:g}" for b in batch])
        ax.minorticks_off()
        ax.set_xlabel("batch size B (rows per measured minibatch)")
        ax.set_title(f"{activation}" if activation else "")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(
        "growth per layer toward the input\n" + r"of $\|\partial\mathcal{L}/\partial W^l\|^2$"
    )
    shown = np.concatenate([np.ravel(growth.values), np.ravel(theory.values)])
    shown = shown[np.isfinite(shown) & (shown > 0)]  # a net too shallow to fit has none
    lo, hi = (shown.min(), shown.max()) if shown.size else (1.0, 1.0)
    axes[0][0].set_ylim(min(0.9 * lo, 0.8), max(1.1 * hi, 2.2))
    axes[0][0].set_yscale("log")
    readable_log_axis(axes[0][0])
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="center right", fontsize=9, frameon=True)
    sigma = f"$\\sigma_w^2$ = {model.get('sigma_w2')}, $\\sigma_b^2$ = {model.get('sigma_b2')}"
    fig.suptitle(
        "Batch norm makes gradients explode toward the input at a rate set by the batch size "
        "(its theory has no $\\sigma_w^2$ in it); layer norm has no batch-size effect\n"
        f"{describe(ds)}, depth {model.get('depth')}, {sigma}; "
        "fit over hidden layers, mean and range over seeds",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 0.80, 0.93))
    return fig


ARCH_LINES = {"mlp": ("MLP", "-"), "resnet": ("residual", "--")}


def normalisation_depth_figure(ds: xr.Dataset) -> Figure:
    accuracy = final_accuracy(ds)
    growth = gradient_growth(ds["grad_norm"].isel(step=0))
    fig, ax = plt.subplots(figsize=(10.5, 4.8))
    depth = ds["depth"].values
    archs = [str(a) for a in ds["arch"].values] if "arch" in ds.dims else [None]
    for arch in archs:
        name, line = ARCH_LINES.get(arch, (arch or "", "-"))
        where = {} if arch is None else {"arch": arch}
        for norm in [str(n) for n in ds["norm"].values]:
            label, colour, marker = NORM_STYLES.get(norm, (norm, "0.5", "o"))
            label = f"{name}, {label}" if arch is not None else label
            rate = hold_first(growth.sel(norm=norm, **where), ("depth", "seed")).isel(depth=-1)
            finite = rate.values[np.isfinite(rate.values)]  # none at a depth too shallow to measure growth
            rate = float(np.mean(finite)) ** 0.5 if finite.size else math.nan
            if np.isfinite(rate):
                label += f": gradient x{rate:.3g} per layer at init"
            values = hold_first(accuracy.sel(norm=norm, **where), ("depth", "seed"))
            middle = values.mean("seed") if "seed" in values.dims else values
            ax.plot(depth, middle, color=colour, marker=marker, ls=line, lw=2, ms=7, label=label)
            if "seed" in values.dims and values.sizes["seed"] > 1:
                low, high = values.min("seed"), values.max("seed")
                ax.fill_between(depth, low, high, color=colour, alpha=0.12, lw=0)
    ax.axhline(chance(ds)[1], color="0.5", ls=":", lw=1.2, label="chance")
    ax.set_xlabel("depth L (hidden layers or residual blocks)")
    ax.set_ylabel("final training accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    model, train = run_config(ds)["model"], run_config(ds)["train"]
    what = describe(ds)
    seeds = ds.sizes.get("seed", 1)
    fig.suptitle(
        "Which networks train deep: final training accuracy against depth\n"
        f"{what}, batch {train.get('batch_size')}, $\\sigma_w^2$ = {model.get('sigma_w2')}, "
        f"$\\sigma_b^2$ = {model.get('sigma_b2')}, {seeds} seeds (mean and range)\n"
        "legend: the gradient norm's factor per layer toward the input at initialisation "
        "(geometric mean, deepest net)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    return fig
