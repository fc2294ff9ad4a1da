"""Convolutional networks (``model.arch = "cnn"``; Xiao et al. 2018).

``cnn_depth_figure``: final training and test accuracy against depth, one line per ``model.init``
(delta-orthogonal against Gaussian kernels at the critical point).

``fourier_modes_figure``: at initialisation, the power of each spatial Fourier mode f of the covariance
across positions (``mode_power``, ``sweep.nets.forward.spatial_modes``) divided by ``q_layer^2``: the
modes of the correlation ``Sigma(x, y) / q`` (the length's own transient, q^1 -> q*, divides out),
against the layer, one panel per ``model.init``, beside the mean field's per-layer factor
``(chi_c lambda(f))^2`` (``sweep.theory.cnn``: ``lambda = 1`` for delta-orthogonal kernels) drawn from
the measured power at ``ANCHOR_LAYER``. A grey line marks the finite-channel floor ``(1 + c*^2) / (C P)``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from plots.common import chance, describe, final_accuracy, hold_first, run_config
from sweep.theory.cnn import footprint_eigenvalues
from sweep.theory.mean_field import mean_field

INIT_STYLES = {
    "delta_orthogonal": ("delta-orthogonal", "tab:blue", "o"),
    "orthogonal": ("orthogonal (all taps)", "tab:green", "^"),
    "gaussian": ("Gaussian", "tab:red", "s"),
}
ANCHOR_LAYER = 4  # the theory lines start from the measured power here (past the first layers' transient)


def _is_cnn(ds: xr.Dataset) -> bool:
    return run_config(ds).get("model", {}).get("arch") == "cnn"


def shows_cnn_depth(ds: xr.Dataset) -> bool:
    """A trained CNN run over depth and kernels (``model.init``)."""
    return _is_cnn(ds) and {"depth", "init"} <= set(ds.dims) and ds.sizes.get("step", 0) > 1


def shows_fourier_modes(ds: xr.Dataset) -> bool:
    """A run at initialisation (no training steps) that recorded spatial modes (a CNN whose positions
    are few enough) over at least four layers."""
    return "mode_power" in ds and ds.sizes.get("layer", 0) >= 4 and ds.sizes.get("step", 0) <= 1


def _inits(ds: xr.Dataset) -> list[str | None]:
    return [str(i) for i in ds["init"].values] if "init" in ds.dims else [None]


def best_learning_rate(ds: xr.Dataset) -> tuple[xr.DataArray, xr.DataArray]:
    """Final (training, test) accuracy at the learning rate with the best final training accuracy of
    each variant (the test set is never used to choose), seeds averaged first; other dims as they are."""
    train, test = final_accuracy(ds, "train_accuracy"), final_accuracy(ds, "test_accuracy")
    if "seed" in train.dims:
        train, test = train.mean("seed"), test.mean("seed")
    if "learning_rate" not in train.dims:
        return train, test
    best = train.fillna(-1.0).argmax("learning_rate")
    return train.isel(learning_rate=best), test.isel(learning_rate=best)


def cnn_depth_figure(ds: xr.Dataset) -> Figure:
    model = run_config(ds)["model"]
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.6), sharey=True)
    depth = ds["depth"].values
    accuracies = best_learning_rate(ds)
    for ax, accuracy, label in zip(axes, accuracies, ("training", "test"), strict=True):
        for init in _inits(ds):
            text, colour, marker = INIT_STYLES.get(init or str(model.get("init")), (init, "0.3", "o"))
            values = hold_first(accuracy.sel(init=init) if init else accuracy, ("depth",))
            ax.plot(depth, values, color=colour, marker=marker, lw=2, ms=7, label=text)
        ax.axhline(chance(ds)[1], color="0.5", ls=":", lw=1.2, label="chance")
        ax.set_xscale("log")
        ax.set_xticks(depth, [f"{d:g}" for d in depth])
        ax.minorticks_off()
        ax.set_xlabel("depth L (convolutional layers of the body)")
        ax.set_title(f"final {label} accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[1].legend(loc="upper right", fontsize=9)
    config = run_config(ds)
    train, data = config["train"], config["data"]
    rates = "/".join(f"{r:g}" for r in np.atleast_1d(train.get("learning_rate")))
    fig.suptitle(
        "Delta-orthogonal kernels keep very deep vanilla CNNs trainable; Gaussian kernels do not\n"
        f"{model.get('activation')} cnn, {model.get('channels')} channels, {model.get('kernel_size')}-tap "
        f"{model.get('padding')} kernels, {model.get('downsample')} stride-2 stem layers, "
        f"{data.get('name')}; "
        f"$\\sigma_w^2$ = {model.get('sigma_w2')}, $\\sigma_b^2$ = {model.get('sigma_b2')} (critical)\n"
        f"{train.get('optimizer')}, {train.get('steps')} steps of batch {train.get('batch_size')}, "
        f"each point at the learning rate ({rates}) with the best final training accuracy",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.87))
    return fig


def body_positions(ds: xr.Dataset) -> tuple[int, ...]:
    """The body's positions: the data's, halved (rounding up) ``model.downsample`` times."""
    from sweep.config import DataConfig
    from sweep.data.datasets import input_shape

    config = run_config(ds)
    data = {k: v for k, v in config["data"].items() if k in DataConfig.__dataclass_fields__}
    positions = input_shape(DataConfig(**data))[:-1]
    for _ in range(int(config["model"].get("downsample", 0))):
        positions = tuple(-(-n // 2) for n in positions)
    return positions


def shown_modes(positions: tuple[int, ...]) -> list[tuple[int, ...]]:
    """A few modes from slow to fast: f = 1, 2, n/8, n/4, n/2 along the first axis (0 along others)."""
    n = positions[0]
    picks = sorted({f for f in (1, 2, n // 8, n // 4, n // 2) if 0 < f < n})
    return [(f, *(0,) * (len(positions) - 1)) for f in picks]


def fourier_modes_figure(ds: xr.Dataset) -> Figure:
    model = run_config(ds)["model"]
    positions = body_positions(ds)
    ndim, n_positions = len(positions), math.prod(positions)
    modes = shown_modes(positions)
    lam = footprint_eigenvalues(int(model.get("kernel_size", 3)), positions[0], ndim)
    inits = _inits(ds)
    fig, axes = plt.subplots(1, len(inits), figsize=(5.4 * len(inits) + 2.2, 4.8), squeeze=False, sharey=True)
    power = ds["mode_power"] / ds["q_layer"] ** 2  # the modes of the correlation Sigma(x, y) / q
    layers = ds["layer"].values
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, len(modes)))
    sigma_w2 = float(np.atleast_1d(model["sigma_w2"])[0])  # the first value where swept (held first)
    sigma_b2 = float(np.atleast_1d(model["sigma_b2"])[0])
    mf = mean_field(str(model["activation"]), sigma_w2, sigma_b2)
    chi_c, c = float(mf.chi_c), float(mf.c_star)
    floor = (1 + c**2) / (int(model["channels"]) * n_positions)
    for ax, init in zip(axes[0], inits, strict=True):
        selected = power.sel(init=init) if init else power
        held = hold_first(selected, ("layer", "mode", "seed"))
        measured = held.mean("seed") if "seed" in held.dims else held
        delta = (init or str(model.get("init"))) == "delta_orthogonal"
        for f, colour in zip(modes, colours, strict=True):
            index = int(np.ravel_multi_index(f, positions))
            y = measured.isel(mode=index).values
            keep = np.isfinite(y) & (y > 0)
            factor = chi_c * (1.0 if delta else float(lam[f]))
            label = f"f = {f[0]}: $\\lambda$ = {lam[f]:.3g}"
            ax.plot(layers[keep], y[keep], color=colour, lw=1.8, label=label)
            anchor = min(int(np.searchsorted(layers, ANCHOR_LAYER)), len(layers) - 3)
            if keep[anchor]:
                start = y[anchor]
                theory = start * np.abs(factor) ** (2.0 * (layers - layers[anchor]))
                shown = (layers >= layers[anchor]) & (theory > floor / 30)
                ax.plot(layers[shown], theory[shown], color=colour, ls="--", lw=1.2)
        ax.axhline(floor, color="0.5", lw=1.0, ls=":")
        ax.set_yscale("log")
        text = INIT_STYLES.get(init or str(model.get("init")), (init,))[0]
        ax.set_title(f"{text} kernels" + (": every mode survives" if delta else ": only f = 0 survives"))
        ax.set_xlabel("layer l (1: the stem's output)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("power of Fourier mode f of the correlation\nacross positions (off its diagonal)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles += [
        plt.Line2D([], [], color="0.2", ls="--", lw=1.2),
        plt.Line2D([], [], color="0.5", ls=":", lw=1.0),
    ]
    labels += [r"theory: $\times (\chi_c \lambda(f))^2$ per layer", "finite-channel noise (about)"]
    fig.legend(handles, labels, loc="center right", fontsize=9, frameon=True)
    fig.suptitle(
        "Gaussian kernels average over their footprint: every spatial mode but the uniform one dies "
        "with depth, mode f by $\\lambda(f)$ per layer\n"
        f"{describe(ds, at_initialisation=True)}, {model.get('kernel_size')}-tap circular kernels, "
        f"{positions} positions, $\\sigma_w^2$ = {sigma_w2:g}, $\\sigma_b^2$ = {sigma_b2:g} "
        f"($\\chi_c$ = {chi_c:.3g}); at initialisation",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 0.80, 0.90))
    return fig
