"""Spectra of the input-output Jacobian against free probability (Pennington, Schoenholz, Ganguli 2017).

``spectra_figure``: histograms of the measured singular values sigma of J = dx^L/dx^1 (``jacobian_log10_sv``,
pooled over seeds and Jacobian inputs) against the N -> infinity density from
``sweep.theory.free_probability.singular_value_density`` with ``n_factors = depth - 1``. One panel per
(depth, init): rows = depth, columns = init (Gaussian | orthogonal) when swept; one histogram per activation
(or per sigma_w2 when the activation is fixed), at most three per panel.

Both are drawn as densities per unit of log10(sigma), ``ln(10) sigma rho_sigma(sigma)``, normalised to ALL
singular values, so the area under a curve over a range of sigma is the fraction of singular values there.
Singular values more than ``FLOOR_DECADES`` decades below a panel's largest are not resolved by the float32
measurement (round-off floor; see ``sweep.spectrum``), and exact zeros are ``-inf``: neither enters the
histograms. Instead the legend gives the fraction of singular values below that floor, measured and
predicted (the predicted one is the atom at sigma = 0 — relu's and hard-tanh's dead directions, mass 1 - p —
plus the continuous mass below the floor). Atoms at sigma > 0 (orthogonal weights with relu/hard-tanh at
small depth) are drawn as vertical lines, their mass in the legend.

``spectral_spread_figure``: the relative variance var(lambda)/mean(lambda)^2 of the eigenvalues lambda =
sigma^2 of J J^T against depth (``jacobian_eig_variance_rel``, seeds and inputs averaged) and the prediction of
``jacobian_moments`` at the fixed point q* (n (mu2/mu1^2 - 1 + s_W), s_W = 1 Gaussian, 0 orthogonal; n/p and
n(1/p - 1) for relu/hard-tanh at criticality). Right panel: the mean squared singular value, measured
against chi^n.

Which variants: the activation (if swept) and sigma_w2 define the curves; where sigma_w2 and sigma_b2 are
swept together with the activation (their critical values differ: tanh 1.42 at sigma_b2 = 0.01, hard-tanh
1.05, relu 2 at sigma_b2 = 0), each activation is shown at its swept (sigma_w2, sigma_b2) closest to
criticality (|log chi_1| smallest; ties go to the smaller sigma_b2). Any other swept dim (width, learning
rate, ...) is held at its first value, as the title says.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from plots.common import describe, run_config, spread
from sweep.theory.free_probability import jacobian_moments, singular_value_density
from sweep.theory.mean_field import chi_1

FLOOR_DECADES = 5.0  # float32 exact route: sigma below ~1e-6 sigma_max is round-off; keep a decade margin
MAX_CURVES = 3
MAX_ROWS = 4
_LN10 = math.log(10.0)
_POOLED = ("seed", "jacobian_input", "sv")
_INIT_NAMES = {"gaussian": "Gaussian W", "orthogonal": "orthogonal W"}
_COLOURS = ("tab:blue", "tab:red", "tab:green")


@dataclass(frozen=True)
class Curve:
    """One histogram/line of a panel: a label, its selection in the grid and its model parameters."""

    label: str
    select: dict[str, Any]
    activation: str
    sigma_w2: float
    sigma_b2: float


def _value(ds: xr.Dataset, config: dict, key: str, select: dict[str, Any]) -> Any:
    """A model field's value for one selection (from the selection if swept, else the config)."""
    return select[key] if key in ds.dims else config["model"][key]


def _chi(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    return float(np.asarray(chi_1(activation, np.float64(sigma_w2), np.float64(sigma_b2))))


def _most_critical(ds: xr.Dataset, config: dict, fixed: dict[str, Any]) -> dict[str, Any]:
    """The selection of the swept sigma_w2/sigma_b2 (those not already in ``fixed``) with chi_1 closest to 1."""
    free = [key for key in ("sigma_w2", "sigma_b2") if key in ds.dims and key not in fixed]
    if not free:
        return dict(fixed)
    options = [dict(fixed)]
    for key in free:
        options = [{**o, key: float(v)} for o in options for v in ds[key].values]
    activation = _value(ds, config, "activation", fixed)

    def distance(option: dict[str, Any]) -> tuple[float, float]:
        chi = _chi(activation, _value(ds, config, "sigma_w2", option), _value(ds, config, "sigma_b2", option))
        sigma_b2 = _value(ds, config, "sigma_b2", option)
        return (round(abs(math.log(chi)), 6) if chi > 0 else math.inf, sigma_b2)

    return min(options, key=distance)


def curves(ds: xr.Dataset) -> list[Curve]:
    """The (at most ``MAX_CURVES``) variants drawn in every panel; see the module docstring."""
    config = run_config(ds)
    if "activation" in ds.dims:
        firsts = [{"activation": str(a)} for a in spread(list(ds["activation"].values), MAX_CURVES)]
    elif "sigma_w2" in ds.dims:
        firsts = [{"sigma_w2": float(s)} for s in spread(list(ds["sigma_w2"].values), MAX_CURVES)]
    else:
        firsts = [{}]
    out = []
    for first in firsts:
        select = _most_critical(ds, config, first)
        activation = str(_value(ds, config, "activation", select))
        sigma_w2 = float(_value(ds, config, "sigma_w2", select))
        sigma_b2 = float(_value(ds, config, "sigma_b2", select))
        label = rf"{activation} $\sigma_w^2$={sigma_w2:.3g} $\sigma_b^2$={sigma_b2:.3g}"
        out.append(Curve(label, select, activation, sigma_w2, sigma_b2))
    return out


def _held(ds: xr.Dataset, keep: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """First value of every grid dim not drawn (not in ``keep``, not pooled); a phrase for the title."""
    held = {
        dim: ds[dim].values[0]
        for dim in ds["completed"].dims
        if dim not in keep and dim not in _POOLED and dim not in ("activation", "sigma_w2", "sigma_b2")
    }
    phrase = ", ".join(f"{dim}={value}" for dim, value in held.items())
    return held, (f"held at {phrase}" if phrase else "")


def _panels(ds: xr.Dataset, config: dict) -> tuple[list[Any], list[Any]]:
    depths = [int(d) for d in ds["depth"].values] if "depth" in ds.dims else [int(config["model"]["depth"])]
    inits = [str(i) for i in ds["init"].values] if "init" in ds.dims else [str(config["model"]["init"])]
    return spread(depths, MAX_ROWS), inits


def _select(ds: xr.Dataset, **where: Any) -> dict[str, Any]:
    return {dim: value for dim, value in where.items() if dim in ds.dims}


def _measured_step(ds: xr.Dataset, step: int) -> xr.DataArray:
    if "jacobian_log10_sv" not in ds:
        raise ValueError("no Jacobian spectrum in these results: run with [measure] jacobian = true")
    if step not in ds["step"].values:
        raise ValueError(f"step {step} not recorded; recorded steps: {list(ds['step'].values)}")
    sv = ds["jacobian_log10_sv"].sel(step=step)
    if not np.isfinite(sv.values).any() and not np.isneginf(sv.values).any():
        raise ValueError(f"the Jacobian spectrum was not measured at step {step}")
    return sv


def _theory_log10(curve: Curve, depth: int, init: str, x: np.ndarray) -> tuple[np.ndarray, tuple, str]:
    """Predicted density per unit log10(sigma) at ``x = log10 sigma`` and the atoms; or NaNs and a note."""
    if depth < 2:
        return np.full_like(x, np.nan), ((1.0, 1.0),), ""  # J = I: a single atom at sigma = 1
    try:
        sigmas = 10.0**x
        law = singular_value_density(
            curve.activation, curve.sigma_w2, curve.sigma_b2, depth - 1, init, sigmas, log_step=4e-3
        )
    except (ValueError, RuntimeError) as err:
        return np.full_like(x, np.nan), (), f"no theory: {str(err).split(':')[0]}"
    return _LN10 * sigmas * law.density, law.atoms, ""


def spectra_figure(ds: xr.Dataset, step: int = 0) -> Figure:
    """Measured singular-value histograms of J at ``step`` against free probability; see module docstring."""
    config = run_config(ds)
    sv = _measured_step(ds, step)
    depths, inits = _panels(ds, config)
    lines = curves(ds)
    held, held_note = _held(ds, ("depth", "init"))
    fig, axes = plt.subplots(
        len(depths),
        len(inits),
        figsize=(5.2 * len(inits), 2.9 * len(depths) + 0.6),
        squeeze=False,
        sharex="row",
        constrained_layout=True,
    )
    for row, depth in enumerate(depths):
        for col, init in enumerate(inits):
            ax = axes[row, col]
            values = {
                curve.label: sv.sel(
                    **_select(ds, depth=depth, init=init), **curve.select, **held
                ).values.ravel()
                for curve in lines
            }
            finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
            if finite.size == 0:
                ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
                continue
            top = float(finite.max())
            floor = top - FLOOR_DECADES
            bins = np.linspace(max(floor, float(finite.min()) - 0.05), top + 0.05, 41)
            x = np.linspace(bins[0], bins[-1], 400)
            notes = []
            for curve, colour in zip(lines, _COLOURS, strict=False):
                _draw_curve(ax, curve, values[curve.label], depth, init, bins, x, floor, colour, notes)
            ax.set_title(
                f"depth {depth} ({depth - 1} factors D·W), {_INIT_NAMES.get(init, init)}", fontsize=9
            )
            ax.set_xlabel(r"$\log_{10}\sigma$  (singular value of J)")
            ax.set_ylabel(r"density per unit $\log_{10}\sigma$")
            ax.axvline(0.0, color="grey", lw=0.6, ls=":")
            ax.legend(fontsize=6.5, loc="upper left", framealpha=0.7)
            if notes:
                ax.text(
                    0.99, 0.97, "\n".join(notes), ha="right", va="top", fontsize=6.5, transform=ax.transAxes
                )
    n_seeds = ds.sizes.get("seed", 1)
    n_inputs = ds.sizes.get("jacobian_input", 1)
    title = (
        f"Jacobian singular values at step {step} (bars: measured, {n_seeds} seeds x {n_inputs} inputs pooled; "
        f"lines: free probability at q*, N = inf)\n{describe(ds)}"
    )
    if held_note:
        title += f"; {held_note}"
    title += (
        f"\nfloor = {FLOOR_DECADES:g} decades below the panel's largest sigma (float32 round-off): the legend "
        "gives the fraction of sigma below it (measured / predicted, incl. the atom at 0)"
    )
    fig.suptitle(title, fontsize=8)
    return fig


def _draw_curve(
    ax: plt.Axes,
    curve: Curve,
    values: np.ndarray,
    depth: int,
    init: str,
    bins: np.ndarray,
    x: np.ndarray,
    floor: float,
    colour: str,
    notes: list[str],
) -> None:
    """One variant's histogram (density per log10 sigma, over all its singular values) and theory line."""
    values = values[~np.isnan(values)]  # -inf (exact zeros) stay: they count in the total, below the floor
    if values.size == 0:
        return
    counts, _ = np.histogram(values[np.isfinite(values)], bins=bins)
    density = counts / (values.size * np.diff(bins))
    measured_below = float(np.mean(values < floor))
    ax.stairs(density, bins, color=colour, fill=True, alpha=0.25)
    ax.stairs(density, bins, color=colour, lw=0.8)
    predicted, atoms, note = _theory_log10(curve, depth, init, x)
    label = curve.label
    if note:
        notes.append(f"{curve.activation}: {note}")
    elif np.isfinite(predicted).any():
        ax.plot(x, predicted, color=colour, lw=1.6)
        fine = np.linspace(x[0], x[-1], 4000)
        fine_pred, _, _ = _theory_log10(curve, depth, init, fine)
        above = float(np.trapezoid(fine_pred, fine)) + sum(m for loc, m in atoms if loc > 10.0**floor)
        label += f"\n  below floor: {measured_below:.2f} meas / {max(1.0 - above, 0.0):.2f} pred"
    zero_atom = sum(m for loc, m in atoms if loc == 0.0)
    if zero_atom > 0:
        label += f"; atom at 0: {zero_atom:.2f}"
    for loc, mass in atoms:
        if loc > 0.0:
            ax.axvline(math.log10(loc), color=colour, lw=1.4, ls="--")
            label += f"\n  atom {mass:.2f} at sigma={loc:.3g}"
    ax.plot([], [], color=colour, lw=1.6, label=label)


def _measured_spread(ds: xr.Dataset, name: str, select: dict[str, Any], step: int) -> xr.DataArray:
    da = ds[name].sel(step=step).sel(**select)
    return da


def spectral_spread_figure(ds: xr.Dataset, step: int = 0) -> Figure:
    """Relative eigenvalue variance of J J^T (left) and mean squared singular value (right) against depth,
    measured (markers: seed mean, bars: seed range) and predicted (lines), per init and activation."""
    if "depth" not in ds.dims:
        raise ValueError("the spread figure needs depth swept")
    config = run_config(ds)
    _measured_step(ds, step)
    depths = [int(d) for d in ds["depth"].values]
    inits = [str(i) for i in ds["init"].values] if "init" in ds.dims else [str(config["model"]["init"])]
    lines = curves(ds)
    held, held_note = _held(ds, ("depth", "init"))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), constrained_layout=True)
    fine = np.unique(np.geomspace(max(min(depths), 2), max(depths), 60).round().astype(int))
    styles = {"gaussian": ("o", "-"), "orthogonal": ("s", "--")}
    for curve, colour in zip(lines, _COLOURS, strict=False):
        for init in inits:
            marker, ls = styles.get(init, ("^", ":"))
            select = {**_select(ds, init=init), **curve.select, **held}
            rel = ds["jacobian_eig_variance_rel"].sel(step=step).sel(**select)
            msq = ds["jacobian_mean_sq_sv"].sel(step=step).sel(**select)
            name = f"{curve.activation}, {_INIT_NAMES.get(init, init)}"
            _errorbars(left, rel, colour, marker, name)
            _errorbars(right, msq, colour, marker, None, log10=True)
            moments = [_moments(curve, n - 1, init) for n in fine]
            pred_rel = np.array([v / m**2 if m > 0 else np.nan for m, v in moments])
            pred_mean = np.array([m for m, _ in moments])
            left.plot(fine, np.where(pred_rel > 0, pred_rel, np.nan), ls=ls, color=colour, lw=1.2)
            right.plot(fine, pred_mean, ls=ls, color=colour, lw=1.2)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("depth L (hidden layers; J has L - 1 factors)")
        ax.set_xticks(depths, [str(d) for d in depths])
    left.set_ylabel(r"var($\lambda$) / mean($\lambda$)$^2$,  $\lambda$ = eigenvalue of $JJ^T$")
    left.set_title("eigenvalue spread of J J^T (isometry: 0)", fontsize=9)
    left.legend(fontsize=7, title="markers: measured; lines: free probability", title_fontsize=7)
    right.set_ylabel(r"mean squared singular value $m_1$")
    right.set_title(r"mean squared singular value ($\chi_1^{L-1}$ predicted)", fontsize=9)
    right.axhline(1.0, color="grey", lw=0.6, ls=":")
    title = f"Jacobian spectral spread vs depth at step {step}: {describe(ds)}"
    if held_note:
        title += f"; {held_note}"
    title += "\n(seed mean of per-input values, bars: min-max over seeds and inputs; solid: Gaussian, dashed: orthogonal)"
    fig.suptitle(title, fontsize=8)
    return fig


def _moments(curve: Curve, n_factors: int, init: str) -> tuple[float, float]:
    try:
        m = jacobian_moments(curve.activation, curve.sigma_w2, curve.sigma_b2, n_factors, init)
    except (ValueError, RuntimeError):
        return math.nan, math.nan
    return m.mean, m.variance


def _errorbars(
    ax: plt.Axes, da: xr.DataArray, colour: str, marker: str, label: str | None, log10: bool = False
):
    pooled = [d for d in da.dims if d != "depth"]
    values = 10.0**da if log10 else da
    mid = values.mean(pooled) if pooled else values
    lo = values.min(pooled) if pooled else values
    hi = values.max(pooled) if pooled else values
    ax.errorbar(
        da["depth"].values,
        mid.values,
        yerr=[np.maximum(mid - lo, 0).values, np.maximum(hi - mid, 0).values],
        fmt=marker,
        color=colour,
        ms=5,
        capsize=2,
        label=label,
        mfc="none" if marker == "s" else colour,
    )


SPECTRA_FIGURES: dict[str, tuple[Callable[[xr.Dataset], Figure], tuple[str, ...]]] = {
    "jacobian_spectra": (spectra_figure, ("sv",)),
    "jacobian_spread": (spectral_spread_figure, ("sv", "depth")),
}

__all__ = ["SPECTRA_FIGURES", "Curve", "curves", "spectra_figure", "spectral_spread_figure"]
