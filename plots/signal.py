"""Signal propagation at initialisation, measured against mean-field theory.

Left: the measured mean squared pre-activation q^l per layer for several sigma_w2, with the length map
iterated from the first layer's q^1 = sigma_w2 * mean(x^2) + sigma_b2. Right: the measured per-layer
factor by which weight-gradient norms g_l = ||dL/dW^l|| change going back one layer, g_l / g_{l+1}
(geometric mean over hidden layers 2..L-1), against two predictions: sqrt(chi_1) at the fixed point q*,
and the same factor layer by layer from the length map. Since dL/dW^l = delta^l x^{l-1}^T,
g_l / g_{l+1} = (|delta^l| / |delta^{l+1}|) (|x^{l-1}| / |x^l|) = sqrt(sigma_w2 E[phi'(h^l)^2]) *
sqrt((q^l - sigma_b2) / (q^{l+1} - sigma_b2)): the second factor is 1 once q^l has reached q*, but not
where q^l has no finite fixed point (relu without bias: it cancels the first, g_l is flat in l).
The sigma_w2 where the measured factor crosses 1 is marked (interpolated in log).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from plots.common import (
    SIGMA_TITLE,
    THEORY_POINTS,
    describe,
    held_phrase,
    hold_first,
    pick_sigmas,
    readable_log_axis,
    run_config,
    sigma_styles,
)
from plots.layout import DPI, arrange
from plots.theory_curves import curve
from sweep.theory.mean_field import chi_1, length_map_iterates


def _d2_moments(activation: str, sigma_w2: float, sigma_b2: float, q: np.ndarray) -> tuple:
    """``sweep.theory.spectral_moments.d2_moments``, imported when first computed (it imports SciPy)."""
    from sweep.theory.spectral_moments import d2_moments

    return d2_moments(activation, sigma_w2, sigma_b2, q)


def length_map_from_input(
    activation: str, sigma_w2: np.ndarray, sigma_b2: float, input_q: float, depth: int
) -> np.ndarray:
    """[len(sigma_w2), depth]: q^1..q^depth from q^1 = sigma_w2 * input_q + sigma_b2 (one theory call)."""
    w2 = np.asarray(sigma_w2, np.float64)
    q1 = w2 * input_q + sigma_b2
    if depth < 2:
        return q1[:, None]
    rest = np.asarray(
        curve(length_map_iterates, activation, w2, np.full_like(w2, sigma_b2), q1, depth - 1), np.float64
    )
    return np.concatenate([q1[:, None], rest.reshape(len(w2), depth - 1)], axis=1)


def layer_resolved_ratio(
    activation: str,
    sigma_w2: np.ndarray,
    sigma_b2: float,
    input_q: float,
    depth: int,
    q: np.ndarray | None = None,
) -> np.ndarray:
    """Mean-field g_l / g_{l+1} for each ``sigma_w2``, geometric mean over l = 2..depth-1, from the length
    map's q^l (``q``, as ``length_map_from_input`` returns it; computed if not given); see the module
    docstring. Needs depth > 3."""
    w2 = np.asarray(sigma_w2, np.float64)[:, None]
    q = length_map_from_input(activation, w2[:, 0], sigma_b2, input_q, depth) if q is None else q
    # E[phi'(h^l)^2], l = 2..depth-1
    mu1, _ = curve(_d2_moments, activation, 1.0, sigma_b2, q[:, 1 : depth - 1])
    log_delta = 0.5 * np.log(w2 * mu1)
    log_forward = 0.5 * (np.log(q[:, 1 : depth - 1] - sigma_b2) - np.log(q[:, 2:depth] - sigma_b2))
    return np.exp(np.mean(log_delta + log_forward, axis=1))


def crossing(x: np.ndarray, y: np.ndarray) -> float | None:
    """First x where y crosses 1 (linear interpolation of log y), or None."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_y = np.log(np.asarray(y, np.float64))
    for i in range(len(x) - 1):
        if np.isfinite(log_y[i : i + 2]).all() and log_y[i] * log_y[i + 1] <= 0 and log_y[i] != log_y[i + 1]:
            return float(x[i] + (x[i + 1] - x[i]) * log_y[i] / (log_y[i] - log_y[i + 1]))
    return None


def signal_propagation_figure(ds: xr.Dataset, n_curves: int = 5) -> Figure:
    """Two panels (see module docstring); uses the deepest net, seeds averaged (geometric for ratios)."""
    config = run_config(ds)
    activation, sigma_b2 = config["model"]["activation"], config["model"]["sigma_b2"]
    q, grad = ds["q_layer"], ds["grad_norm"].isel(step=0)
    depth = int(ds["depth"].max()) if "depth" in ds.dims else int(config["model"]["depth"])
    if "depth" in ds.dims:
        q, grad = q.sel(depth=depth), grad.sel(depth=depth)
    q = q.mean("seed") if "seed" in q.dims else q
    with np.errstate(divide="ignore", invalid="ignore"):  # underflowed gradients (0) give no ratio
        log_ratio = np.log(grad / grad.shift(layer=-1)).sel(layer=slice(2, depth - 1))
    log_ratio = log_ratio.mean("layer")
    ratio = np.exp(log_ratio.mean("seed")) if "seed" in log_ratio.dims else np.exp(log_ratio)
    held = held_phrase(q, ("sigma_w2", "layer"))
    q, ratio = hold_first(q, ("sigma_w2", "layer")), hold_first(ratio, ("sigma_w2",))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=DPI)
    sigmas = pick_sigmas(ds, n_curves)
    input_q = float(ds.attrs.get("input_mean_square", 1.0))
    fixed_b2 = not isinstance(sigma_b2, list)
    x = ratio["sigma_w2"].values
    if fixed_b2:  # the length map of every swept sigma_w2, in one theory call
        iterates = dict(zip(x, length_map_from_input(activation, x, sigma_b2, input_q, depth), strict=True))
    for sigma, style in zip(sigmas, sigma_styles(ds, sigmas), strict=True):
        measured = q.sel(sigma_w2=sigma).dropna("layer").sel(layer=slice(1, depth))
        colour, label = style["color"], style["label"]
        left.semilogy(
            measured["layer"], measured, "o", ms=3, color=colour, label=label, zorder=style["zorder"]
        )
        if fixed_b2 and depth > 1:
            left.semilogy(np.arange(1, depth + 1), iterates[sigma], "-", color=colour, lw=style["lw"] * 0.8)
    left.set_xlabel("layer l")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_ylabel(r"$q^l$ = mean squared pre-activation")
    left.set_title("forward signal at initialisation (dots: measured, lines: length map)", fontsize=9)
    left.grid(alpha=0.25)
    readable_log_axis(left)
    legend = fig.legend(*left.get_legend_handles_labels(), fontsize=7, title=SIGMA_TITLE, title_fontsize=8)

    right.semilogy(x, ratio, "o", color="k", ms=6, zorder=4, label="measured (geometric mean over layers)")
    for sigma, value in zip(x, ratio.values, strict=True):
        right.annotate(
            f"{sigma:.3g}", (sigma, value), xytext=(4, -9), textcoords="offset points", fontsize=6.5
        )
    measured_cross = crossing(x, ratio.values)
    if fixed_b2:
        fine = np.linspace(float(x.min()), float(x.max()), THEORY_POINTS)
        predicted = np.sqrt(curve(chi_1, activation, fine, np.full_like(fine, sigma_b2)))
        right.semilogy(fine, predicted, "-", color="tab:red", label=r"$\sqrt{\chi_1}$ at $q^*$ (mean field)")
        if depth > 3:
            resolved = layer_resolved_ratio(
                activation, x, sigma_b2, input_q, depth, np.stack(list(iterates.values()))
            )
            right.semilogy(
                x,
                resolved,
                "x",
                color="tab:blue",
                ms=8,
                mew=1.8,
                zorder=3,
                label=r"mean field layer by layer: $\sqrt{\chi_1(q^l)}\;|x^{l-1}|\,/\,|x^l|$, "
                r"$q^l$ from the length map",
            )
    critical = ds.attrs.get("critical_sigma_w2")
    if critical is not None and x.min() <= critical <= x.max():
        right.axvline(
            critical, color="tab:red", ls="--", lw=1, label=rf"critical $\sigma_w^2$ = {critical:.3g}"
        )
    if measured_cross is not None:
        right.axvline(
            measured_cross, color="k", ls=":", lw=1.2, label=f"measured crosses 1 at {measured_cross:.3g}"
        )
    right.axhline(1.0, color="grey", lw=0.8)
    lo, hi = right.get_ylim()
    right.set_ylim(lo, hi * (hi / lo) ** 0.45)  # headroom for the legend above the data
    readable_log_axis(right)
    right.set_xlabel(r"$\sigma_w^2$ (points labelled with their value)")
    right.set_ylabel(r"gradient norm ratio $g_l / g_{l+1}$")
    right.set_title("backward signal: growth per layer toward the input", fontsize=9)
    right.grid(alpha=0.25)
    right.legend(fontsize=7, loc="upper left")
    title = f"Signal propagation at initialisation, depth {depth}: {describe(ds, at_initialisation=True)}"
    title = fig.suptitle(title + (f" (held at {held})" if held else ""), fontsize=9)
    arrange(fig, [left, right], legend, "left", title)
    return fig
