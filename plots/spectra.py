"""Spectra of the input-output Jacobian against free probability (Pennington, Schoenholz, Ganguli 2017).

``spectra_figure``: histograms of the measured singular values sigma of J = dx^L/dx^1 (``jacobian_log10_sv``
at one step, pooled over seeds and Jacobian inputs) against the N -> infinity law of
``sweep.theory.free_probability.singular_value_density`` with ``n_factors = depth - 1``, evaluated at the
mean-field fixed point q*. One panel per (depth, init): rows = depth, columns = init (Gaussian | orthogonal)
where swept; one histogram per activation (or per sigma_w2 when the activation is fixed), at most three.

Units: both histogram and theory are densities per unit of log10(sigma), ``ln(10) sigma rho_sigma(sigma)``,
normalised to ALL of a variant's singular values, so the area over a range of log10(sigma) is the fraction
of singular values there. Singular values more than ``FLOOR_DECADES`` decades below the largest in a panel
are not resolved by the float32 measurement (round-off floor, see ``sweep.measure.spectrum``), and exact zeros
are ``-inf``: neither is histogrammed. Instead each panel lists the fraction of singular values below that
floor, measured and predicted — the prediction being the atom at sigma = 0 (relu's and hard-tanh's dead
directions, mass 1 - p) plus the continuous mass below the floor. Atoms at sigma > 0 (orthogonal weights with
relu / hard-tanh at small depth) are drawn as dashed vertical lines, their mass written beside them; the y
axis is then clipped to the continuous part. Where the theory raises ``ValueError`` (orthogonal linear
network, q* = 0: J J^T is a multiple of the identity) the panel says so and draws no curve.

``spectral_spread_figure``: against depth, the relative variance var(lambda)/mean(lambda)^2 of the
eigenvalues lambda = sigma^2 of J J^T (``jacobian_eig_variance_rel``, per input, averaged over the inputs
by the engine; markers = seed mean, bars = seed range) and the mean squared singular value
(``jacobian_mean_sq_sv``). Lines: ``jacobian_moments`` at q*, i.e. n (mu2/mu1^2 - 1 + s_W) with s_W = 1
(Gaussian) or 0 (orthogonal) — n/p and n(1/p - 1) for relu / hard-tanh at criticality — and chi_1^n.
Crosses: the same free-probability moments with each layer's D law taken at the MEASURED q^l
(``q_layer``, layers 2..L) instead of q*: relative variances add over the factors of J and means
multiply, so this is exact at N = infinity for any q^l. It accounts for the first layers, whose inputs
(q^1 = sigma_w2 E[x^2] + sigma_b2) sit above q* for a few xi_q, which the q* theory leaves out.

Which variants: if the activation is swept, one curve per activation, each at the swept (sigma_w2, sigma_b2)
closest to criticality (|log chi_1| smallest; ties to the smaller sigma_b2) — the critical values differ
between activations, so an experiment sweeps the union of them. Otherwise one curve per sigma_w2 (three
spread over the swept values), each at its most critical sigma_b2. Any other swept dim (width, learning
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
from matplotlib.ticker import NullFormatter

from plots.common import readable_log_axis, run_config, spread
from sweep.theory.fixed_points import chi_1

# sweep.theory.free_probability and .spectral_moments (which import SciPy: 0.2 s) are imported where used,
# so that drawing a run without spectra does not import them

FLOOR_DECADES = 5.0  # float32 exact route: sigma below ~1e-6 sigma_max is round-off; one decade of margin
MAX_CURVES = 3
MAX_ROWS = 4
N_BINS = 28
_POOLED = ("seed", "jacobian_input", "sv")
_DRAWN = ("activation", "sigma_w2", "sigma_b2", "depth", "init")
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


# ------------------------------------------------------------------------------------------ selection
def _value(ds: xr.Dataset, config: dict, key: str, select: dict[str, Any]) -> Any:
    """A model field's value for one selection (from the selection if swept, else the config)."""
    return select[key] if key in ds.dims else config["model"][key]


def _chi(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    return float(np.asarray(chi_1(activation, np.float64(sigma_w2), np.float64(sigma_b2))))


def _most_critical(ds: xr.Dataset, config: dict, fixed: dict[str, Any]) -> dict[str, Any]:
    """``fixed`` plus the swept sigma_w2 / sigma_b2 (those not in ``fixed``) with chi_1 closest to 1."""
    free = [key for key in ("sigma_w2", "sigma_b2") if key in ds.dims and key not in fixed]
    options = [dict(fixed)]
    for key in free:
        options = [{**option, key: float(v)} for option in options for v in ds[key].values]
    if len(options) == 1:
        return options[0]
    activation = str(_value(ds, config, "activation", fixed))

    def distance(option: dict[str, Any]) -> tuple[float, float]:
        w2, b2 = float(_value(ds, config, "sigma_w2", option)), float(_value(ds, config, "sigma_b2", option))
        chi = _chi(activation, w2, b2)
        return (round(abs(math.log(chi)), 6) if chi > 0 else math.inf, b2)

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
        label = rf"{activation}, $\sigma_w^2$={sigma_w2:.4g}, $\sigma_b^2$={sigma_b2:.3g}"
        out.append(Curve(label, select, activation, sigma_w2, sigma_b2))
    return out


def _held(ds: xr.Dataset) -> tuple[dict[str, Any], str]:
    """First value of every swept dim that is neither drawn nor pooled, and a phrase for the title."""
    held = {dim: ds[dim].values[0] for dim in ds["completed"].dims if dim not in _DRAWN + _POOLED}
    phrase = ", ".join(f"{dim}={value}" for dim, value in held.items())
    return held, (f"; held at {phrase}" if phrase else "")


def _where(ds: xr.Dataset, **where: Any) -> dict[str, Any]:
    return {dim: value for dim, value in where.items() if dim in ds.dims}


def _inits(ds: xr.Dataset, config: dict) -> list[str]:
    return [str(i) for i in ds["init"].values] if "init" in ds.dims else [str(config["model"]["init"])]


def _measured_step(ds: xr.Dataset, step: int) -> xr.DataArray:
    if "jacobian_log10_sv" not in ds:
        raise ValueError("no Jacobian spectrum in these results: run with [measure] jacobian = true")
    if step not in ds["step"].values:
        raise ValueError(f"step {step} not recorded; recorded steps: {list(ds['step'].values)}")
    sv = ds["jacobian_log10_sv"].sel(step=step)
    if np.isnan(sv.values).all():
        raise ValueError(
            f"the Jacobian spectrum was not measured at step {step} (see measure.jacobian_every)"
        )
    return sv


def _what(ds: xr.Dataset, step: int) -> str:
    """What was run, for titles."""
    config = run_config(ds)
    model, data, train = config["model"], config["data"], config["train"]
    when = (
        "at initialisation"
        if step == 0
        else f"after {step} steps of {train['optimizer']} (lr {train['learning_rate']})"
    )
    return (
        f"{model.get('arch', 'mlp')} width {model['width']}, {data['name']}, {when}; "
        f"{ds.sizes.get('seed', 1)} seed(s) x {ds.sizes.get('jacobian_input', 1)} input(s) per variant"
    )


# ------------------------------------------------------------------------------------- spectra figure
@dataclass
class _Theory:
    x: np.ndarray  # log10 sigma
    density: np.ndarray  # per unit log10 sigma (continuous part)
    atoms: tuple[tuple[float, float], ...]  # (sigma, mass)
    note: str = ""


def _theory(curve: Curve, depth: int, init: str, x: np.ndarray) -> _Theory:
    """Predicted density per unit log10(sigma) at ``x = log10 sigma`` and the atoms (or a note why not)."""
    from sweep.theory.free_probability import log10_singular_value_density

    if depth < 2:  # J = I
        return _Theory(x, np.zeros_like(x), ((1.0, 1.0),))
    try:
        law = log10_singular_value_density(
            curve.activation, curve.sigma_w2, curve.sigma_b2, depth - 1, init, x, log_step=1e-2
        )
    except (ValueError, RuntimeError) as err:
        reason = str(err).split(" (")[0].split(":")[0]
        return _Theory(x, np.full_like(x, np.nan), (), f"no theory curve ({reason})")
    return _Theory(x, law.density, law.atoms)


def spectra_figure(ds: xr.Dataset, step: int = 0) -> Figure:
    """Measured singular-value histograms of J at ``step`` against free probability at q* (one panel per
    depth and init, one histogram per activation or sigma_w2); see the module docstring."""
    config = run_config(ds)
    sv = _measured_step(ds, step)
    depths = [int(d) for d in ds["depth"].values] if "depth" in ds.dims else [int(config["model"]["depth"])]
    depths, inits = spread(depths, MAX_ROWS), _inits(ds, config)
    lines = curves(ds)
    held, held_note = _held(ds)
    fig, axes = plt.subplots(
        len(depths),
        len(inits),
        figsize=(5.4 * len(inits), 2.8 * len(depths) + 1.2),
        squeeze=False,
        layout="constrained",
    )
    for row, depth in enumerate(depths):
        panels = []
        for init in inits:
            values = [
                sv.sel(**_where(ds, depth=depth, init=init), **curve.select, **held).values.ravel()
                for curve in lines
            ]
            panels.append([v[~np.isnan(v)] for v in values])  # -inf (exact zeros) stays: counted below floor
        span = _row_span(panels)
        for col, init in enumerate(inits):
            _spectra_panel(axes[row, col], lines, panels[col], depth, init, span)
    handles = [plt.Line2D([], [], color=c, lw=6, alpha=0.4) for c in _COLOURS[: len(lines)]]
    fig.legend(
        handles,
        [f"{curve.label} (bars: measured, line: theory)" for curve in lines],
        loc="outside lower center",
        ncols=min(len(lines), 3),
        fontsize=8,
    )
    fig.suptitle(
        r"Singular values of the input-output Jacobian $J = \partial x^L / \partial x^1$ vs free probability"
        " (Pennington et al. 2017)\n"
        f"{_what(ds, step)}{held_note}\n"
        r"theory: $N = \infty$ at the fixed point $q^*$ (the first layers, at $q^l > q^*$, are not in it). "
        rf"floor: {FLOOR_DECADES:g} decades below the largest $\sigma$ (float32 round-off)",
        fontsize=8,
    )
    return fig


def _panel_range(values: list[np.ndarray]) -> tuple[float, float, float] | None:
    """(floor, low, top) in log10 sigma for one panel: the round-off floor, the lowest resolved value worth
    showing and the largest value; None if nothing was measured."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values])
    if finite.size == 0:
        return None
    top = float(finite.max())
    floor = top - FLOOR_DECADES
    return floor, max(floor, float(np.quantile(finite[finite >= floor], 0.002)) - 0.2), top


def _row_span(panels: list[list[np.ndarray]]) -> tuple[float, float] | None:
    """Common x range of a row of panels (Gaussian and orthogonal side by side, on one scale)."""
    ranges = [r for r in (_panel_range(values) for values in panels) if r is not None]
    if not ranges:
        return None
    return min(r[1] for r in ranges), max(r[2] for r in ranges) + 0.05


def _spectra_panel(
    ax: plt.Axes,
    lines: list[Curve],
    values: list[np.ndarray],
    depth: int,
    init: str,
    span: tuple[float, float] | None,
) -> None:
    from sweep.theory.free_probability import predicted_below

    factors = f"{depth - 1} factor{'s' if depth != 2 else ''}"
    ax.set_title(f"depth {depth} (J: {factors} $DW$), {_INIT_NAMES.get(init, init)}", fontsize=9)
    ax.set_xlabel(r"$\log_{10}\sigma$,  $\sigma$ = singular value of J")
    ax.set_ylabel(r"density per unit $\log_{10}\sigma$")
    panel = _panel_range(values)
    if panel is None or span is None:
        ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
        return
    floor, top = panel[0], panel[2]
    bins = np.linspace(max(span[0], floor), span[1], N_BINS + 1)
    x = np.concatenate(
        [np.linspace(floor - 3.0, floor, 150, endpoint=False), np.linspace(floor, top + 1.0, 700)]
    )
    texts, peak = [], 0.0
    for curve, colour, v in zip(lines, _COLOURS, values, strict=False):
        if v.size == 0:
            continue
        counts, _ = np.histogram(v[np.isfinite(v)], bins=bins)
        density = counts / (v.size * np.diff(bins))
        ax.stairs(density, bins, color=colour, fill=True, alpha=0.18)
        ax.stairs(density, bins, color=colour, lw=0.9)
        theory = _theory(curve, depth, init, x)
        below = f"{np.mean(v < floor):.2f} meas"
        atoms_above = [(loc, m) for loc, m in theory.atoms if loc > 0.0]
        near_atom = np.zeros(density.shape, bool)  # bars holding an atom are clipped, not scaled to
        for loc, _ in atoms_above:
            near_atom |= (bins[:-1] <= math.log10(loc) + 0.1) & (bins[1:] >= math.log10(loc) - 0.1)
        peak = max(peak, float(density[~near_atom].max(initial=0.0)))
        if theory.note:
            texts.append((f"{curve.activation}: {theory.note}", colour))
        else:
            inside = (x >= bins[0]) & (x <= bins[-1])
            ax.plot(x[inside], theory.density[inside], color=colour, lw=1.7)
            peak = max(peak, float(np.nanmax(theory.density[inside], initial=0.0)))
            below += f" / {predicted_below(theory, floor):.2f} pred"
        zero_atom = sum(m for loc, m in theory.atoms if loc == 0.0)
        text = f"{curve.activation}: below floor {below}"
        if zero_atom > 0:
            text += f" (atom at 0: {zero_atom:.2f})"
        texts.append((text, colour))
        for loc, mass in atoms_above:
            ax.axvline(math.log10(loc), color=colour, lw=1.3, ls="--")
            texts.append((rf"{curve.activation}: atom {mass:.2f} at $\sigma$ = {loc:.3g} (dashed)", colour))
    ax.axvline(0.0, color="grey", lw=0.6, ls=":")
    ax.set_xlim(*span)
    ax.set_ylim(0.0, 1.25 * peak * (1.0 + 0.12 * len(texts)) if peak > 0 else 1.0)
    for i, (text, colour) in enumerate(texts):
        ax.text(0.02, 0.97 - 0.085 * i, text, color=colour, fontsize=6.5, va="top", transform=ax.transAxes)


# -------------------------------------------------------------------------------------- spread figure
def _moments(curve: Curve, init: str) -> tuple[float, float]:
    """(chi, r) with mean = chi^n and var/mean^2 = n r for n factors, from ``jacobian_moments`` at q* (one
    factor; both laws are exact in n, see sweep.theory.spectral_moments); NaN where it has no answer."""
    from sweep.theory.spectral_moments import jacobian_moments

    try:
        m = jacobian_moments(curve.activation, curve.sigma_w2, curve.sigma_b2, 1, init)
    except (ValueError, RuntimeError):
        return math.nan, math.nan
    return m.mean, (m.variance / m.mean**2 if m.mean > 0 else math.nan)


def spectral_spread_figure(ds: xr.Dataset, step: int = 0) -> Figure:
    """Relative eigenvalue variance of J J^T (left) and mean squared singular value (right) against depth,
    measured and predicted, per init and activation (or sigma_w2); needs depth swept. The layer-resolved
    prediction (crosses) uses the measured q^l at initialisation, so it is drawn only for ``step = 0``."""
    if "depth" not in ds.dims:
        raise ValueError("the spectral spread figure needs depth swept")
    config = run_config(ds)
    _measured_step(ds, step)
    depths = [int(d) for d in ds["depth"].values]
    inits, lines = _inits(ds, config), curves(ds)
    held, held_note = _held(ds)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.6), layout="constrained")
    fine = np.unique(np.geomspace(max(min(depths), 1), max(depths), 80).round().astype(int))
    styles = {"gaussian": ("o", "-"), "orthogonal": ("s", "--")}
    for curve, colour in zip(lines, _COLOURS, strict=False):
        for init in inits:
            marker, ls = styles.get(init, ("^", ":"))
            select = {**_where(ds, init=init), **curve.select, **held}
            rel = ds["jacobian_eig_variance_rel"].sel(step=step).sel(**select)
            msq = 10.0 ** ds["jacobian_mean_sq_sv"].sel(step=step).sel(**select)
            name = f"{curve.activation}, {_INIT_NAMES.get(init, init)}"
            _seed_errorbars(left, rel, colour, marker, f"{name}: measured")
            _seed_errorbars(right, msq, colour, marker, None)
            chi, r = _moments(curve, init)
            if r > 0:
                left.plot(fine, (fine - 1) * r, ls=ls, color=colour, lw=1.2)
            right.plot(fine, chi ** (fine - 1.0), ls=ls, color=colour, lw=1.2)
            if step == 0 and "q_layer" in ds:
                resolved = _layer_resolved(ds, curve, init, select)
                left.plot(depths, resolved[:, 1], "x", color=colour, ms=7, mew=1.5)
                right.plot(depths, resolved[:, 0], "x", color=colour, ms=7, mew=1.5)
    left.plot([], [], "k-", label="free probability at $q^*$ (Gaussian)")
    left.plot([], [], "k--", label="free probability at $q^*$ (orthogonal)")
    if step == 0 and "q_layer" in ds:
        left.plot([], [], "kx", label="free probability with the measured $q^l$ per layer")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"depth L (hidden layers); $J = \partial x^L / \partial x^1$ has L - 1 factors")
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.25, which="both")
    left.set_ylabel(r"var($\lambda$) / mean($\lambda$)$^2$,   $\lambda$ = eigenvalue of $JJ^T = \sigma^2$")
    left.set_title(r"spread of the spectrum of $JJ^T$ (dynamical isometry: 0)", fontsize=9)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=7)
    right.set_ylabel("mean squared singular value $m_1$ of J\n(geometric mean over inputs)")
    right.set_title(r"mean squared singular value (lines: $\chi_1^{L-1}$ = 1 at criticality)", fontsize=9)
    right.axhline(1.0, color="grey", lw=0.6, ls=":")
    for ax in (left, right):
        readable_log_axis(ax)
    fig.suptitle(
        f"Jacobian spectral spread vs depth (Pennington et al. 2017): {_what(ds, step)}{held_note}\n"
        "markers: seed mean of per-input values (filled: Gaussian W, open: orthogonal W; bars: seed range); "
        + ", ".join(curve.label for curve in lines),
        fontsize=8,
    )
    return fig


def _layer_resolved(ds: xr.Dataset, curve: Curve, init: str, select: dict[str, Any]) -> np.ndarray:
    """[depth, 2]: (mean, relative variance) from the measured q^l (seed mean) of hidden layers 2..L."""
    from sweep.theory.spectral_moments import layer_resolved_moments

    out = []
    for depth in (int(d) for d in ds["depth"].values):
        q = ds["q_layer"].sel(**select, **_where(ds, depth=depth))
        q = q.mean("seed") if "seed" in q.dims else q
        q = q.sel(layer=slice(2, depth)).values
        if not np.isfinite(q).all():
            out.append((math.nan, math.nan))
        else:
            out.append(layer_resolved_moments(curve.activation, curve.sigma_w2, curve.sigma_b2, init, q))
    return np.asarray(out, np.float64)


def _seed_errorbars(ax: plt.Axes, da: xr.DataArray, colour: str, marker: str, label: str | None) -> None:
    """Seed mean with a bar over the seed range, at each depth."""
    pooled = [d for d in da.dims if d != "depth"]
    mid = da.mean(pooled) if pooled else da
    lo = da.min(pooled) if pooled else da
    hi = da.max(pooled) if pooled else da
    ax.errorbar(
        da["depth"].values,
        mid.values,
        yerr=[np.maximum(mid - lo, 0.0).values, np.maximum(hi - mid, 0.0).values],
        fmt=marker,
        color=colour,
        mfc="none" if marker == "s" else colour,
        ms=6,
        capsize=2,
        label=label,
    )


# name -> (figure function, dims the Dataset must have), as plots.figures.FIGURES
SPECTRA_FIGURES: dict[str, tuple[Callable[[xr.Dataset], Figure], tuple[str, ...]]] = {
    "jacobian_spectra": (spectra_figure, ("sv",)),
    "jacobian_spread": (spectral_spread_figure, ("sv", "depth")),
}

__all__ = [
    "SPECTRA_FIGURES",
    "Curve",
    "curves",
    "spectra_figure",
    "spectral_spread_figure",
]
