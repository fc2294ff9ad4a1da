"""Jacobian spectrum figures (plots/spectra.py) on experiments/jacobian_spectra.toml, and the measured
singular-value law of a relu network against free probability."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.patches import StepPatch

import sweep
from plots.spectra import (
    SPECTRA_FIGURES,
    Curve,
    _theory,
    curves,
    spectra_figure,
    spectral_spread_figure,
)
from sweep.config import load_experiment
from sweep.storage import store
from sweep.theory.free_probability import jacobian_moments, predicted_below
from sweep.theory.spectral_moments import layer_resolved_moments

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "jacobian_spectra.toml"

# the experiment file at a tiny scale: 4 compiled groups (2 depths x 2 inits), 6 (sigma_w2, sigma_b2) pairs
# vmapped in each; hard_tanh keeps the theory on the fast polynomial route and has atoms above 0 at depth 2
TINY = (
    "model.activation=hard_tanh",
    "model.width=16",
    "data.input_dim=16",
    "model.depth=[2, 4]",
    "train.seed=[0]",
    "measure.jacobian_inputs=2",
    "data.n_train=64",
    "data.n_test=32",
    "measure.n_eval=32",
)


@pytest.fixture(scope="module")
def tiny_results() -> xr.Dataset:
    return sweep.run(EXPERIMENT, overrides=TINY)


@pytest.mark.slow
def test_experiment_file_runs_and_both_figures_draw(tiny_results):
    ds = tiny_results
    assert {"sv", "depth", "init", "sigma_w2", "sigma_b2"} <= set(ds.dims)
    assert ds.sizes["sv"] == 16 and np.isfinite(ds["jacobian_mean_sq_sv"].sel(step=0)).all()
    assert set(SPECTRA_FIGURES) == {"jacobian_spectra", "jacobian_spread"}
    for _make, needs in SPECTRA_FIGURES.values():
        assert all(dim in ds.dims for dim in needs)

    fig = spectra_figure(ds)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(axes) == 4  # rows = depth [2, 4], columns = init [gaussian, orthogonal]
    assert "Gaussian" in axes[0].get_title() and "orthogonal" in axes[1].get_title()
    for ax in axes:
        histograms = [p for p in ax.patches if isinstance(p, StepPatch)]
        theory = [line for line in ax.get_lines() if len(line.get_xdata()) > 10]
        assert len(histograms) == 2 * 3  # filled + outline, one per sigma_w2 curve
        assert len(theory) == 3
        assert all(np.isfinite(line.get_ydata()).all() for line in theory)
    texts = " ".join(t.get_text() for ax in axes for t in ax.texts)
    assert "atom at 0" in texts and "below floor" in texts and "atom 0." in texts  # atoms at 0 and above
    plt.close(fig)

    fig = spectral_spread_figure(ds)
    left, right = fig.axes[:2]
    assert left.get_yscale() == "log" and right.get_yscale() == "log"
    assert len(left.containers) == 3 * 2  # measured: one errorbar set per (curve, init)
    assert len([line for line in left.get_lines() if len(line.get_xdata()) > 2]) >= 3 * 2  # theory lines
    plt.close(fig)


def test_most_critical_pair_is_chosen_per_activation():
    """With the file's grid (union of the critical points), each activation is shown at its own."""
    experiment = load_experiment(EXPERIMENT)
    grid = {axis.name: list(axis.values) for axis in experiment.axes}
    ds = xr.Dataset(
        {"completed": (tuple(grid), np.ones([len(v) for v in grid.values()], bool))},
        coords=grid,
        attrs={"config": store.config_text(experiment)},
    )
    chosen = {c.activation: (c.sigma_w2, c.sigma_b2) for c in curves(ds)}
    assert chosen == {"tanh": (1.4242, 0.01), "hard_tanh": (1.0521, 0.01), "relu": (2.0, 0.0)}


def test_theory_is_skipped_with_a_note_where_it_has_no_density():
    x = np.linspace(-2.0, 1.0, 50)
    theory = _theory(Curve("linear", {}, "linear", 1.0, 0.0), 4, "orthogonal", x)
    assert theory.note.startswith("no theory curve") and np.isnan(theory.density).all()


@pytest.mark.slow
def test_layer_resolved_moments_reduce_to_the_fixed_point_theory():
    """With every layer at q*, the layer-resolved moments are jacobian_moments'."""
    for activation, w2, b2 in (("tanh", 1.4242, 0.01), ("hard_tanh", 1.0521, 0.01)):
        q_star = float(sweep.theory.mean_field.q_star(activation, w2, b2))
        for init in ("gaussian", "orthogonal"):
            mean, rel = layer_resolved_moments(activation, w2, b2, init, np.full(7, q_star))
            m = jacobian_moments(activation, w2, b2, 7, init)
            assert mean == pytest.approx(m.mean, rel=1e-3)
            assert rel == pytest.approx(m.variance / m.mean**2, rel=1e-3)


def test_relu_gaussian_histogram_matches_free_probability():
    """relu at criticality, Gaussian weights, width 256, depth 5 (4 factors), 4 seeds x 2 inputs: 2048
    singular values. The mass in log10-sigma bins and below 1e-3 (atom 1/2 at 0 plus the continuous part)
    must match the N = inf law within 0.03 per bin. Justification: for independent draws the binomial
    standard error of a bin mass p is sqrt(p(1-p)/2048) <= 0.011; eigenvalues within one matrix repel
    (less variance, not more), and the finite-N corrections are O(1/N) ~ 0.004 per bin (docs/theory.md:
    N = 400, 8 factors matched within 0.003). relu's D law (Bernoulli 1/2) does not depend on q, so the input
    transient of the first layer does not enter."""
    ds = sweep.run(
        EXPERIMENT,
        overrides=(
            "model.activation=relu",
            "model.sigma_w2=2.0",
            "model.sigma_b2=0.0",
            "model.init=gaussian",
            "model.depth=5",
            "model.width=256",
            "train.seed=[0, 1, 2, 3]",
            "measure.jacobian_inputs=2",
        ),
    )
    values = ds["jacobian_log10_sv"].sel(step=0).values.ravel()
    assert values.size == 4 * 2 * 256 and not np.isnan(values).any()
    edges = np.array([-3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0])
    x = np.concatenate([np.linspace(-6.0, -3.0, 300, endpoint=False), np.linspace(-3.0, 1.5, 4000)])
    theory = _theory(Curve("relu", {}, "relu", 2.0, 0.0), 5, "gaussian", x)
    assert theory.atoms == ((0.0, 0.5),)
    predicted = [
        float(np.trapezoid(theory.density[(x >= lo) & (x <= hi)], x[(x >= lo) & (x <= hi)]))
        for lo, hi in itertools.pairwise(edges)
    ]
    measured = np.histogram(values[np.isfinite(values)], bins=edges)[0] / values.size
    np.testing.assert_allclose(measured, predicted, atol=0.015)
    assert np.mean(values < -3.0) == pytest.approx(predicted_below(theory, -3.0), abs=0.015)
    assert np.mean(values > 1.0) < 0.01  # nothing beyond the predicted edge (sigma ~ 7)
