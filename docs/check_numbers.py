"""Check that the numbers the docs quote are those of the committed quick-scale runs.

    just check-docs                  # reruns the quick figures (reusing finished runs), then this script
    python docs/check_numbers.py [--runs runs/figures/quick]

Each check recomputes one quoted phrase from a run's ``results.nc`` (as ``sweep figures --scale quick``
leaves it under ``runs/figures/quick/<experiment>``) and looks for it, word for word, in every file
that quotes it. A phrase that is missing is printed as it should read, and the script exits 1.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

import sweep
from sweep.measure.predictions import final_accuracy, gradient_growth

ROOT = Path(__file__).resolve().parent.parent
README, TUTORIAL, DEMO = "README.md", "docs/vanishing_exploding_gradients.md", "sweep/cli/demo.toml"


def _seed_mean(da: xr.DataArray) -> xr.DataArray:
    return da.mean("seed") if "seed" in da.dims else da


def phase_diagram_band(ds: xr.Dataset) -> str:
    """The deepest row: accuracy of the cells within 0.4 of the critical sigma_w2, and at 1 and 4."""
    accuracy = _seed_mean(final_accuracy(ds))
    deepest = int(ds["depth"].max())
    row = accuracy.sel(depth=deepest)
    critical = float(ds.attrs["critical_sigma_w2"])
    near = row.where(abs(row["sigma_w2"] - critical) <= 0.4, drop=True)
    s = near["sigma_w2"].values
    return (
        f"at depth {deepest} the nets within 0.4 of the critical sigma_w2 ({s.min():g} to {s.max():g}) "
        f"reach {float(near.min()):.2f}-{float(near.max()):.2f} final training accuracy while "
        f"sigma_w2 = 1 and 4 stay near chance ({float(row.sel(sigma_w2=1.0)):.2f} and "
        f"{float(row.sel(sigma_w2=4.0)):.2f})"
    )


def phase_diagram_agreement(ds: xr.Dataset) -> str:
    return f"agrees with the mean-field rule depth <= 6 xi_c in {ds.attrs['trainability_agreement']:.0%}"


def _first_over_last(ds: xr.Dataset) -> xr.DataArray:
    """g_1 / g_L at initialisation (L = depth: the last hidden layer), geometric mean over seeds."""
    depth = _fixed_depth(ds)
    grad = ds["grad_norm"].isel(step=0)
    ratio = np.log(grad.sel(layer=1) / grad.sel(layer=depth))
    return np.exp(_seed_mean(ratio))


def _fixed_depth(ds: xr.Dataset) -> int:
    return int(tomllib.loads(ds.attrs["config"])["model"]["depth"])


def vanishing_table(ds: xr.Dataset) -> str:
    """The tutorial's table: one row per sigma_w2 of the tanh run."""
    depth = _fixed_depth(ds)
    ratio, accuracy = _first_over_last(ds), _seed_mean(final_accuracy(ds))
    rows = []
    for sigma in ds["sigma_w2"].values:
        chi = float(ds["chi_1"].sel(sigma_w2=sigma).max())
        rows.append(
            f"| {sigma:g} | {chi:.2f} | {float(ratio.sel(sigma_w2=sigma)):.2g} | "
            f"{chi ** ((depth - 1) / 2):.2g} | {float(accuracy.sel(sigma_w2=sigma)):.2f} |"
        )
    return "\n".join(rows)


def vanishing_caption(ds: xr.Dataset) -> str:
    """The README's caption: the two ends of the tanh sweep."""
    depth = _fixed_depth(ds)
    ratio = _first_over_last(ds)
    parts = []
    for sigma in (ds["sigma_w2"].values[0], ds["sigma_w2"].values[-1]):
        chi = float(ds["chi_1"].sel(sigma_w2=sigma).max())
        parts.append(
            f"{float(ratio.sel(sigma_w2=sigma)):.2g}x at sigma_w2 = {sigma:g} (chi_1 = {chi:.2f}; "
            f"theory chi_1^({depth - 1}/2) = {chi ** ((depth - 1) / 2):.2g})"
        )
    return " and ".join(parts)


def batch_norm_table(ds: xr.Dataset) -> str:
    """The tutorial's batch-norm rows: measured growth per layer at every batch size, per activation."""
    growth = _seed_mean(gradient_growth(ds["grad_norm"].isel(step=0))).sel(norm="batch")
    limits = {"relu": " (limit 1.467)", "tanh": " (limit 1.178)"}
    rows = []
    for activation in ds["activation"].values:
        values = " | ".join(f"{float(g):.2f}" for g in growth.sel(activation=activation).values)
        rows.append(f"| {activation}, measured{limits.get(str(activation), '')} | {values} |")
    return (
        "\n".join(rows[:1])
        + "\n"
        + "| linear, theory (B-2)/(B-3) | 2 | 1.2 | 1.077 | 1.016 | 1.004 |\n"
        + "\n".join(rows[1:])
    )


def normalisation_depth(ds: xr.Dataset) -> str:
    """The README's deep-training sentence: residual nets with normalised branches at the deepest depth."""
    accuracy = _seed_mean(final_accuracy(ds)).sel(arch="resnet").isel(depth=-1)
    layer, batch, none = (float(accuracy.sel(norm=n)) for n in ("layer", "batch", "none"))
    return (
        f"reach {layer:.2f} (layer norm) and {batch:.2f} (batch norm) at depth {int(ds['depth'][-1])}, "
        f"against {none:.2f} for the residual net alone"
    )


def cnn_depth_table(ds: xr.Dataset) -> str:
    """The CNN depth table: final training (test) accuracy per depth and kernel, at the learning rate with
    the best final training accuracy (``plots.cnn.best_learning_rate``)."""
    from plots.cnn import best_learning_rate

    train, test = best_learning_rate(ds)
    depths = [int(d) for d in ds["depth"].values]
    rows = ["| depth | " + " | ".join(map(str, depths)) + " |", "|---|" + "---|" * len(depths)]
    for init, name in (("delta_orthogonal", "delta-orthogonal"), ("gaussian", "Gaussian")):
        pairs = [(float(train.sel(init=init, depth=d)), float(test.sel(init=init, depth=d))) for d in depths]
        cells = [f"{a:.2f} ({b:.2f})" for a, b in pairs]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# (run directory under --runs, phrase, the files that quote it)
CHECKS: list[tuple[str, Callable[[xr.Dataset], str], tuple[str, ...]]] = [
    ("phase_diagram", phase_diagram_band, (README, TUTORIAL, DEMO)),
    ("phase_diagram", phase_diagram_agreement, (README, TUTORIAL)),
    ("vanishing_exploding-tanh", vanishing_table, (TUTORIAL,)),
    ("vanishing_exploding-tanh", vanishing_caption, (README,)),
    ("normalisation-growth", batch_norm_table, (TUTORIAL,)),
    ("normalisation-depth", normalisation_depth, (README, TUTORIAL)),
    ("deep_cnn-depth", cnn_depth_table, (README, TUTORIAL)),
]


def _normalise(text: str) -> str:
    """Line breaks and comment markers do not count: phrases may wrap in the files."""
    lines = (line.lstrip("# ").rstrip() if not line.startswith("|") else line for line in text.splitlines())
    return " ".join(" ".join(lines).split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs/figures/quick")
    args = parser.parse_args(argv)
    failures = 0
    for run, phrase_of, files in CHECKS:
        ds = sweep.load(args.runs / run)
        phrase = phrase_of(ds)
        for name in files:
            text = (ROOT / name).read_text()
            if "\n" in phrase:  # a table: rows verbatim, wherever the file indents them
                found = phrase in "\n".join(line.strip() for line in text.splitlines())
            else:
                found = _normalise(phrase) in _normalise(text)
            print(f"{'ok     ' if found else 'MISSING'} {name}: {phrase_of.__name__}")
            if not found:
                failures += 1
                print("  it should read:\n    " + phrase.replace("\n", "\n    "))
    print(f"{failures} quoted number(s) out of date" if failures else "every checked number is current")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
