"""Helpers shared by the figure functions: reading the resolved config and reducing the grid."""

from __future__ import annotations

import tomllib
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from sweep.measure.predictions import final_accuracy, final_value  # noqa: F401  (re-exported for figures)


def run_config(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """The resolved experiment saved with the results (swept fields as lists)."""
    return tomllib.loads(ds.attrs.get("config", ""))


def fixed_value(ds: xr.Dataset, field: str) -> Any:
    """A config field's value, or its swept values as a list."""
    section, key = field.split(".")
    return run_config(ds).get(section, {}).get(key)


def reduce_to(da: xr.DataArray, keep: tuple[str, ...]) -> tuple[xr.DataArray, str]:
    """Average over ``seed``; take the best (max) over any other dim not in ``keep``. Returns the
    reduced array and a phrase saying what was done (for titles)."""
    notes = []
    if "seed" in da.dims and "seed" not in keep:
        if da.sizes["seed"] > 1:
            notes.append(f"mean over {da.sizes['seed']} seeds")
        da = da.mean("seed")
    for dim in [d for d in da.dims if d not in keep]:
        notes.append(f"best over {dim}")
        da = da.max(dim)
    return da, ", ".join(notes)


def spread(values: np.ndarray, k: int) -> list:
    """Up to k values spread evenly over a sorted list (always including both ends)."""
    values = list(values)
    if len(values) <= k:
        return values
    return [values[i] for i in np.unique(np.linspace(0, len(values) - 1, k).round().astype(int))]


def _words(value: Any) -> str:
    """A config value for a title: swept values joined by '/' (not a Python list)."""
    values = value if isinstance(value, list) else [value]
    return "/".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def describe(ds: xr.Dataset, at_initialisation: bool = False) -> str:
    """One line saying what was run, for figure titles; a run of 0 steps says "at initialisation" and
    names no optimizer, nor does a figure of a trained run's initialisation (``at_initialisation``:
    its title says so itself)."""
    c = run_config(ds)
    m, d, t = c.get("model", {}), c.get("data", {}), c.get("train", {})
    size = f"{_words(m['channels'])} channels" if "channels" in m else f"width {_words(m.get('width'))}"
    what = (
        f"{_words(m.get('activation'))} {_words(m.get('arch', 'mlp'))}, {size}, "
        f"{_words(m.get('init'))} init, {d.get('name')}"
    )
    if at_initialisation:
        return what
    if not t.get("steps"):
        return f"{what}, at initialisation"
    lr = _words(t.get("learning_rate"))
    return f"{what}, {t.get('optimizer')} lr={lr}, {_words(t.get('steps'))} steps"


def chance(ds: xr.Dataset) -> tuple[float, float]:
    """(loss, accuracy) of a guess that ignores the input: ln C and 1/C for C classes."""
    n_classes = float(ds.attrs.get("n_classes", 10))
    return float(np.log(n_classes)), 1.0 / n_classes


def held_phrase(da: xr.DataArray, keep: tuple[str, ...]) -> str:
    """'init = gaussian, ...' for every swept dim that ``hold_first`` would hold (seed excluded)."""
    held = [d for d in da.dims if d not in keep and d != "seed" and da.sizes[d] > 1]
    return ", ".join(f"{d} = {_words(da[d].values[0].item())}" for d in held)


# Points of a theory curve over sigma_w2, the same in every figure, so that ``plots.figures.prepare``
# compiles the programs the figures will call (one per curve kind and size); 200 points draw the curves
# as smoothly as 400 did, and their program (padded to 256) compiles in half the time
THEORY_POINTS = 200


# ----------------------------------------------------------------- one sigma_w2 per curve, coloured by phase
CRITICAL_TOLERANCE = 0.01  # |ln chi_1| below this: labelled "critical"
NEAR_CRITICAL = 0.1  # the sigma_w2 closest to criticality is drawn black if |ln chi_1| is below this


def chi_by_sigma(ds: xr.Dataset) -> dict[float, float]:
    """chi_1 (mean field) of each swept sigma_w2, other swept dims at their first value; {} for an
    architecture without the fully connected mean field (no ``chi_1`` in the results)."""
    if "chi_1" not in ds:
        return {}
    chi = hold_first(ds["chi_1"], ("sigma_w2",))
    return {
        float(s): float(c) for s, c in zip(chi["sigma_w2"].values, np.atleast_1d(chi.values), strict=True)
    }


def pick_sigmas(ds: xr.Dataset, k: int) -> list[float]:
    """Up to k swept sigma_w2: the one closest to criticality, and the others shared between the ordered
    and the chaotic side in proportion to the range of log chi_1 each side spans (each side's far end
    included)."""
    chis = chi_by_sigma(ds)
    if not chis:  # no mean field to centre on: evenly spread values
        return spread(sorted(float(s) for s in np.atleast_1d(ds["sigma_w2"].values)), k)
    values = sorted(chis)
    if len(values) <= k:
        return values
    log_chi = {s: np.log(chis[s]) if chis[s] > 0 else -np.inf for s in values}
    critical = min(values, key=lambda s: abs(log_chi[s]))
    left = [s for s in values if s < critical]
    right = [s for s in values if s > critical]
    span_left = min(abs(log_chi[left[0]]), 50.0) if left else 0.0
    span_right = min(abs(log_chi[right[-1]]), 50.0) if right else 0.0
    n_left = round((k - 1) * span_left / (span_left + span_right)) if left or right else 0
    n_left = min(max(n_left, 1 if left else 0), len(left), k - 1 - (1 if right else 0))
    n_right = min(k - 1 - n_left, len(right))
    return [*spread(left, n_left), critical, *spread(right[::-1], n_right)[::-1]]


def _shades(n: int) -> np.ndarray:
    """n colour-map positions from a readable mid tone (0.55) to a dark one (0.95); one: 0.8."""
    return np.linspace(0.55, 0.95, n) if n > 1 else np.full(n, 0.8)


def sigma_styles(ds: xr.Dataset, sigmas: list[float]) -> list[dict[str, Any]]:
    """Line styles (color, lw, zorder, label) for curves of ``sigmas``: the one closest to criticality
    (if chi_1 is within 10% of 1) black and thick, on top; the ordered side in blues and the chaotic side
    in reds, darker further from criticality, never paler than a mid tone. Labels are the value and its
    chi_1 in plain text, for a legend titled ``SIGMA_TITLE`` (mathematical text, drawn once)."""
    chis = chi_by_sigma(ds)
    if not chis:  # no mean field: a plain sequential palette, no critical curve
        shades = plt.cm.viridis(np.linspace(0.1, 0.85, len(sigmas)))
        return [
            {"color": c, "lw": 1.6, "zorder": 3, "label": f"{s:.3g}"}
            for s, c in zip(sigmas, shades, strict=True)
        ]
    distance = {s: abs(np.log(chis[s])) if chis[s] > 0 else np.inf for s in sigmas}
    nearest = min(sigmas, key=distance.get)
    critical = nearest if distance[nearest] < NEAR_CRITICAL else None
    ordered = [s for s in sigmas if s != critical and chis[s] < 1]
    chaotic = [s for s in sigmas if s != critical and chis[s] >= 1]
    blues = dict(zip(ordered, plt.cm.Blues(_shades(len(ordered))[::-1]), strict=True))
    reds = dict(zip(chaotic, plt.cm.Reds(_shades(len(chaotic))), strict=True))
    styles = []
    for s in sigmas:
        label = f"{s:.3g} (χ₁={chis[s]:.2f})"
        if s == critical:
            word = "critical" if distance[s] < CRITICAL_TOLERANCE else "closest to critical"
            styles.append({"color": "black", "lw": 2.6, "zorder": 4, "label": f"{label}, {word}"})
        else:
            styles.append({"color": blues.get(s, reds.get(s)), "lw": 1.4, "zorder": 2, "label": label})
    return styles


SIGMA_TITLE = r"$\sigma_w^2$"  # the title of a legend of ``sigma_styles`` labels
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def power_of_ten(value: float, _: object = None) -> str:
    """10ⁿ in plain text (Unicode superscripts; a fractional power in mathematical text)."""
    power = float(np.log10(value))
    if abs(power - round(power)) < 1e-9:
        return "10" + str(round(power)).translate(_SUPERSCRIPT)
    return f"$10^{{{power:.3g}}}$"


def _tick_label(value: float, _: object = None) -> str:
    if 1e-3 <= abs(value) < 1e3:
        return f"{value:.3g}"
    return f"{value:.0f}" if 1e3 <= abs(value) < 1e4 else power_of_ten(value)


def readable_log_axis(ax: plt.Axes, axis: str = "y") -> None:
    """Enough labelled ticks on a log axis to read values off it: nice linear values within 1.2 decades,
    1-2-3-5 steps within 2.2, 1-3 within 4.5, powers of ten beyond (10⁻⁶: plain text, not mathematical
    text, which takes milliseconds a label to lay out). Call after the limits are final."""
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if not (0 < lo < hi):
        return
    decades = np.log10(hi / lo)
    target = ax.yaxis if axis == "y" else ax.xaxis
    if decades > 4.5:
        target.set_major_locator(LogLocator(base=10, numticks=12))
        target.set_major_formatter(FuncFormatter(power_of_ten))
        return
    if decades <= 1.2:
        ticks = [
            t for t in MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= t <= hi
        ]
    else:
        subs = (1.0, 2.0, 3.0, 5.0) if decades < 2.2 else (1.0, 3.0)
        ticks = [t for t in LogLocator(base=10, subs=subs).tick_values(lo, hi) if lo <= t <= hi]
    target.set_major_locator(FixedLocator(ticks))
    target.set_major_formatter(FuncFormatter(_tick_label))
    target.set_minor_formatter(NullFormatter())


def geometric_mean_over_seeds(da: xr.DataArray) -> xr.DataArray:
    """exp(mean(log)) over ``seed`` (for quantities that vary over orders of magnitude), if swept; a
    value that underflowed to 0 makes the mean 0 (nothing to draw on a log axis), without a warning."""
    if "seed" not in da.dims:
        return da
    with np.errstate(divide="ignore"):
        return np.exp(np.log(da).mean("seed"))


def hold_first(da: xr.DataArray, keep: tuple[str, ...]) -> xr.DataArray:
    """Every dim not in ``keep`` held at its first value."""
    return da.isel({d: 0 for d in da.dims if d not in keep})
