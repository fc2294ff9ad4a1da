"""Helpers shared by the figure functions: reading the resolved config and reducing the grid."""

from __future__ import annotations

import tomllib
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
import xarray as xr

from sweep.predictions import final_accuracy, final_value  # noqa: F401  (re-exported for figures)


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


def describe(ds: xr.Dataset) -> str:
    """One line saying what was run, for figure titles."""
    c = run_config(ds)
    m, d, t = c.get("model", {}), c.get("data", {}), c.get("train", {})
    lr = t.get("learning_rate")
    return (
        f"{m.get('activation')} {m.get('arch', 'mlp')}, width {m.get('width')}, {m.get('init')} init, "
        f"{d.get('name')}, {t.get('optimizer')} lr={lr}, {t.get('steps')} steps"
    )


def geometric_mean_over_seeds(da: xr.DataArray) -> xr.DataArray:
    """exp(mean(log)) over ``seed`` (for quantities that vary over orders of magnitude), if swept."""
    return np.exp(np.log(da).mean("seed")) if "seed" in da.dims else da


def hold_first(da: xr.DataArray, keep: tuple[str, ...]) -> xr.DataArray:
    """Every dim not in ``keep`` held at its first value."""
    return da.isel({d: 0 for d in da.dims if d not in keep})
