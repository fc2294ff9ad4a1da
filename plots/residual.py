"""Residual networks against plain ones (Yang & Schoenholz 2017; Hayou et al. 2021).

``residual_gradients_figure``: the gradient norm of the first layer (MLP: layer 1; residual net: block 1)
over that of the last (layer L; block L) at initialisation, against depth, one panel per activation
(rows) and sigma_w2 (columns: the plain net's ordered side, its critical point, its chaotic side),
measured (markers, geometric mean over seeds) and predicted (dashed): the fully connected mean field for
the plain MLP (``sweep.theory.mixed_scales.mixed_profile`` of the unmixed net: the q-map from the inputs
and chi^l per layer, about chi_1^((L-1)/2)), the residual mean field (``grad_ratio_theory``) for the
residual ones. Drawn for every family the results hold: plain (``arch = "mlp"``), residual
(``"resnet"``, ``branch_scaling = "none"``), scaled (``"inv_sqrt_depth"``).

``residual_trainability_figure``: final training accuracy over (sigma_w2, depth), one heat map per
family side by side on one colour scale, with the plain net's critical sigma_w2 and its depth = 6 xi_c
curve on the plain panel (Schoenholz et al. 2017): the residual panel has no such curve.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from plots.common import (
    final_accuracy,
    held_phrase,
    readable_log_axis,
    run_config,
)
from plots.phase_diagram import _label_cells, colour_limits, overlay_mean_field

# family -> (label, colour, marker)
FAMILY_STYLES = {
    "plain": ("plain MLP", "0.15", "o"),
    "residual": (r"residual $x + \alpha F(x)$", "tab:orange", "s"),
    "scaled": (r"residual $x + (\alpha/\sqrt{L})\,F(x)$", "tab:green", "^"),
}
CLAIMS = {
    "plain": "plain: exponential in L off criticality (a straight line here)",
    "residual": r"residual: slower than exponential for tanh, like $e^{c\sqrt{L}}$ (a bending curve)",
    "scaled": r"$1/\sqrt{L}$-scaled branches: bounded",
}


def _values(ds: xr.Dataset, key: str) -> list:
    """A model field's values: the coordinate if swept, else the one configured value."""
    if key in ds.dims:
        return np.asarray(ds[key].values).tolist()
    return [run_config(ds)["model"].get(key, "mlp" if key == "arch" else "none")]


def families(ds: xr.Dataset) -> list[tuple[str, dict]]:
    """(family, selection) of every plain / residual / scaled network family in ``ds``, in that order;
    other architectures are left out."""
    found = []
    for arch in _values(ds, "arch"):
        pick = {"arch": arch} if "arch" in ds.dims else {}
        if arch == "mlp":
            found.append(("plain", pick))
        elif arch == "resnet":
            for scaling in _values(ds, "branch_scaling"):
                more = {"branch_scaling": scaling} if "branch_scaling" in ds.dims else {}
                found.append(("scaled" if scaling == "inv_sqrt_depth" else "residual", pick | more))
    return sorted(found, key=lambda item: list(FAMILY_STYLES).index(item[0]))


def shows_residual_gradients(ds: xr.Dataset) -> bool:
    """Gradient norms at initialisation over several depths, for at least one residual family and one
    other (plain or scaled), without normalisation swept beside them (``plots.normalisation`` draws
    those runs: the residual mean field does not describe normalised branches)."""
    names = {name for name, _ in families(ds)}
    return (
        "grad_norm" in ds
        and "norm" not in ds.dims
        and "depth" in ds.dims
        and ds.sizes["depth"] > 1
        and bool(names & {"residual", "scaled"})
        and len(names) > 1
        and (not names & {"residual", "scaled"} or "grad_ratio_theory" in ds)
    )


def shows_residual_trainability(ds: xr.Dataset) -> bool:
    """Trained networks over (sigma_w2, depth) for a residual family beside another one."""
    names = {name for name, _ in families(ds)}
    trained = ds.sizes.get("step", 0) > 1
    return (
        trained
        and {"sigma_w2", "depth"} <= set(ds.dims)
        and bool(names & {"residual", "scaled"})
        and len(names) > 1
    )


# ---------------------------------------------------------------------------------- gradient ratios
def _first_last(family: str, depth: int) -> tuple[int, int]:
    """The layer indices compared: MLP layers 1 and L; residual blocks 1 and L (layers 2 and L+1)."""
    return (1, depth) if family == "plain" else (2, depth + 1)


def measured_ratio(grad: xr.DataArray, family: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ratio, overflowed, underflowed) over ``grad``'s depth: the geometric mean over seeds of first over
    last; a depth where some seed's ratio is not finite counts as overflowed (NaN ratio), one where it is
    0 as underflowed. ``grad`` has dims depth, layer (and seed)."""
    ratios, over, under = [], [], []
    for depth in grad["depth"].values:
        first, last = _first_last(family, int(depth))
        g = grad.sel(depth=depth)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.atleast_1d((g.sel(layer=first) / g.sel(layer=last)).values)
        bad_high, bad_low = ~np.isfinite(r), np.isfinite(r) & (r <= 0)
        over.append(bool(bad_high.any()))
        under.append(bool(bad_low.any() and not bad_high.any()))
        ratios.append(np.exp(np.mean(np.log(r))) if not (bad_high.any() or bad_low.any()) else np.nan)
    return np.array(ratios), np.array(over), np.array(under)


def plain_prediction(ds: xr.Dataset, activation: str, sigma_w2: float, sigma_b2: float) -> np.ndarray:
    """The fully connected mean field's first-over-last gradient norm of the MLP at every depth."""
    from sweep.theory.mixed_scales import mixed_profile

    config = run_config(ds)
    q_input = float(ds.attrs.get("input_mean_square", 1.0))
    input_dim = int(ds.attrs.get("input_dim", config["data"]["input_dim"]))
    width = int(config["model"]["width"]) if not isinstance(config["model"]["width"], list) else None
    out = []
    for depth in ds["depth"].values:
        n = width if width is not None else int(ds["width"].values[0])
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # past float32: NaN
            p = mixed_profile(
                activation, sigma_w2, sigma_b2, q_input, depth=int(depth), width=n, input_dim=input_dim
            )
            out.append(np.sqrt(p.grad_sq[0] / p.grad_sq[int(depth) - 1]))
    return np.array(out)


def pick_columns(activation: str, sigmas: list[float], sigma_b2: float) -> list[tuple[float, float]]:
    """Up to three (sigma_w2, chi_1 of the plain net): the lowest, the closest to criticality, the
    highest."""
    from sweep.theory.mean_field import chi_1

    chis = np.atleast_1d(np.asarray(chi_1(activation, np.array(sigmas), np.full(len(sigmas), sigma_b2))))
    critical = int(np.argmin(np.abs(np.log(chis))))
    picked = sorted({0, critical, len(sigmas) - 1})
    return [(sigmas[i], float(chis[i])) for i in picked]


def _phase(chi: float) -> str:
    return "critical" if abs(np.log(chi)) < 0.05 else ("ordered" if chi < 1 else "chaotic")


def _hold(da: xr.DataArray, keep: tuple[str, ...]) -> xr.DataArray:
    return da.isel({d: 0 for d in da.dims if d not in keep})


def _measured_range(ax: plt.Axes) -> tuple[float, float]:
    """The smallest and largest measured ratio drawn on ``ax`` (1 included)."""
    values = [np.asarray(line.get_ydata(), float) for line in ax.get_lines() if line.get_gid() == "measured"]
    finite = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in values] + [np.array([1.0])])
    return float(finite.min()), float(finite.max())


def what_was_run(ds: xr.Dataset, gradients: bool = True) -> str:
    """Width, init, sigma_b2, data, (the gradients' batch) and seeds, for a title (the families are
    named in the legend or the panels)."""
    config = run_config(ds)
    m, d = config["model"], config["data"]
    seeds = ds.sizes.get("seed", 1)
    batch = f"gradient of {config['measure']['n_eval']} examples, " if gradients else ""
    return (
        f"width {m['width']}, {m['init']} init, $\\sigma_b^2$ = {m['sigma_b2']}, {d['name']}, "
        f"{batch}{seeds} seed{'s' if seeds > 1 else ''}"
    )


def residual_gradients_figure(ds: xr.Dataset) -> Figure:
    """First-over-last gradient norm against depth at initialisation, measured and predicted, for every
    family in ``ds`` (see the module docstring). Other swept dims are held at their first value."""
    found = families(ds)
    activations = [str(a) for a in _values(ds, "activation")]
    sigmas = [float(s) for s in _values(ds, "sigma_w2")]
    sigma_b2 = float(_values(ds, "sigma_b2")[0])
    columns = {a: pick_columns(a, sigmas, sigma_b2) for a in activations}
    n_cols = max(len(c) for c in columns.values())
    fig, axes = plt.subplots(
        len(activations),
        n_cols,
        figsize=(4.3 * n_cols + 2.6, 3.5 * len(activations) + 1.0),
        layout="constrained",
        squeeze=False,
        sharex=True,
    )
    grad = ds["grad_norm"].isel(step=0)
    keep = ("depth", "layer", "seed", "arch", "branch_scaling", "activation", "sigma_w2")
    held = held_phrase(grad, keep)
    grad = _hold(grad, keep)
    theory = _hold(ds["grad_ratio_theory"], keep[:1] + keep[3:]) if "grad_ratio_theory" in ds else None
    depth = ds["depth"].values
    flagged = {"over": False, "under": False}
    for row, activation in enumerate(activations):
        for col, (sigma, chi) in enumerate(columns[activation]):
            ax = axes[row, col]
            at = {k: v for k, v in (("activation", activation), ("sigma_w2", sigma)) if k in ds.dims}
            marks = []
            for family, pick in found:
                _, colour, marker = FAMILY_STYLES[family]
                ratio, over, under = measured_ratio(grad.sel(at | pick), family)
                ax.plot(
                    depth, ratio, marker=marker, color=colour, ls="-", lw=1.0, ms=5, zorder=3, gid="measured"
                )
                if family == "plain":
                    predicted = plain_prediction(ds, activation, sigma, sigma_b2)
                else:
                    predicted = (
                        theory.sel(at | pick).values if theory is not None else np.full(len(depth), np.nan)
                    )
                predicted = np.where(np.isfinite(predicted) & (predicted > 0), predicted, np.nan)
                ax.plot(depth, predicted, color=colour, ls="--", lw=1.6, zorder=2)
                marks.append((colour, marker, over, under))
            ax.set_yscale("log")
            ax.set_title(
                rf"{activation}, $\sigma_w^2$ = {sigma:g} (plain: $\chi_1$ = {chi:.2f}, {_phase(chi)})",
                fontsize=9,
            )
            ax.grid(alpha=0.25)
            for colour, _marker, over, under in marks:  # off-scale points, at the panel's edge
                for flags, y, kind in ((over, 0.97, "over"), (under, 0.03, "under")):
                    if flags.any():
                        flagged[kind] = True
                        ax.plot(
                            depth[flags],
                            np.full(flags.sum(), y),
                            ls="none",
                            marker="^" if kind == "over" else "v",
                            mfc="none",
                            mec=colour,
                            ms=8,
                            mew=1.5,
                            transform=ax.get_xaxis_transform(),
                            clip_on=False,
                        )
        for ax in axes[row]:
            ax.axhline(1.0, color="0.6", lw=0.8, zorder=1)
        # the measured range (and 1) sets the scale: a prediction beyond it leaves the panel
        lows, highs = zip(*(_measured_range(ax) for ax in axes[row]), strict=True)
        for ax in axes[row]:
            ax.set_ylim(min(lows) / 20, max(highs) * 20)
            readable_log_axis(ax)
        axes[row, 0].set_ylabel(
            "gradient norm, first / last layer\n"
            + r"$\|\partial \mathcal{L}/\partial W^1\| \,/\, \|\partial \mathcal{L}/\partial W^L\|$"
        )
    for ax in axes[-1]:
        ax.set_xlabel("depth L (hidden layers or residual blocks)")
    for ax in axes.ravel()[len(activations) * n_cols :]:
        ax.set_visible(False)
    handles = [
        Line2D(
            [], [], color=FAMILY_STYLES[f][1], marker=FAMILY_STYLES[f][2], lw=1.0, label=FAMILY_STYLES[f][0]
        )
        for f, _ in found
    ]
    handles += [
        Line2D([], [], color="0.3", marker="o", lw=1.0, label="measured (geometric mean over seeds)"),
        Line2D([], [], color="0.3", ls="--", lw=1.6, label="mean field prediction"),
    ]
    if flagged["over"]:
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="^",
                mfc="none",
                mec="0.3",
                ms=8,
                label="not finite: float32 overflowed",
            )
        )
    if flagged["under"]:
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="v",
                mfc="none",
                mec="0.3",
                ms=8,
                label="first layer's gradient underflowed to 0",
            )
        )
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    claims = "; ".join(CLAIMS[f] for f, _ in found)
    if "relu" in activations and {"residual", "scaled"} & {f for f, _ in found}:
        claims += (
            "\nrelu: every layer's gradient grows alike (the ratio stays near 1), the residual stream by"
            r" $1 + \alpha^2\sigma_w^4/2$ per block: unscaled it overflows float32 (open triangles)"
        )
    title = f"Gradient norm of the first layer over the last, at initialisation: {what_was_run(ds)}"
    if held:
        title += f" (held at {held})"
    fig.suptitle(f"{title}\n{claims}", fontsize=9)
    return fig


# -------------------------------------------------------------------------------------- trainability
def residual_trainability_figure(ds: xr.Dataset, variable: str = "train_accuracy") -> Figure:
    """One heat map of the final ``variable`` over (sigma_w2, depth) per family, seeds averaged, other
    swept dims held at their first value; the plain panel carries the critical line and depth = n xi_c."""
    found = families(ds)
    accuracy = final_accuracy(ds, variable)
    if "seed" in accuracy.dims:
        accuracy = accuracy.mean("seed")
    keep = ("depth", "sigma_w2", "arch", "branch_scaling")
    held = held_phrase(accuracy, keep)
    accuracy = _hold(accuracy, keep)
    low, best = colour_limits(accuracy, ds)
    fig, axes = plt.subplots(
        1, len(found), figsize=(6.0 * len(found) + 1.0, 5.4), layout="constrained", squeeze=False, sharey=True
    )
    mesh = None
    for ax, (family, pick) in zip(axes[0], found, strict=True):
        cells = accuracy.sel(pick).transpose("depth", "sigma_w2")
        mesh = ax.pcolormesh(
            cells["sigma_w2"],
            cells["depth"],
            cells.values,
            shading="nearest",
            cmap="viridis",
            vmin=low,
            vmax=best,
        )
        _label_cells(ax, cells, low, best)
        ax.set_title(FAMILY_STYLES[family][0], fontsize=10)
        ax.set_xlabel(r"weight variance $\sigma_w^2$")
        if family == "plain":
            overlay_mean_field(ax, ds, "mean field: the MLP trains below", mlp_only=True)
    axes[0, 0].set_ylabel("depth L (hidden layers or residual blocks)")
    bar = fig.colorbar(mesh, ax=list(axes[0]), label=f"final {variable.replace('_', ' ')}")
    inner = [t for t in (0.25, 0.5, 0.75) if low + 0.06 * (best - low) < t < best - 0.06 * (best - low)]
    bar.set_ticks([low, *inner, best])
    bar.ax.set_yticklabels([f"{low:.2f} (chance)", *(f"{t:.2f}" for t in inner), f"{best:.2f} (best)"])
    config = run_config(ds)
    train = config["train"]
    title = (
        f"Trainability, final training accuracy: {config['model']['activation']}, {what_was_run(ds, False)},"
        f" {train['optimizer']} lr={train['learning_rate']}, {train['steps']} steps"
    )
    if held:
        title += f" (held at {held})"
    fig.suptitle(
        title
        + "\nthe plain net trains only near criticality, below depth ~ 6 $\\xi_c$; the residual net also at"
        + r" depths and $\sigma_w^2$ where the plain one does not",
        fontsize=9,
    )
    return fig
