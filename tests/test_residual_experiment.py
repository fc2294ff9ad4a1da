"""The residual-network experiment (experiments/residual.toml) and its figures (plots/residual.py)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from plots.figures import FIGURES
from plots.residual import (
    families,
    measured_ratio,
    residual_gradients_figure,
    residual_trainability_figure,
    shows_residual_gradients,
    shows_residual_trainability,
)
from sweep.runner import engine
from sweep.theory.residual import residual_profile

EXPERIMENT = Path(__file__).parent.parent / "experiments" / "residual.toml"

CONFIG = """
[model]
arch = {arch}
activation = "tanh"
width = 16
depth = [2, 4]
init = "gaussian"
sigma_w2 = [1.0, 1.76, 3.0]
sigma_b2 = 0.05
branch_scaling = "none"

[data]
name = "gaussian_mixture"
input_dim = 8

[train]
optimizer = "sgd"
learning_rate = 0.01
steps = {steps}

[measure]
n_eval = 16
xi_multiple = 6.0
trained_accuracy = 0.5
"""


def synthetic(steps: int = 0, arch: tuple[str, ...] = ("mlp", "resnet")) -> xr.Dataset:
    """A results Dataset as the engine writes it, with made-up numbers: plain gradients that shrink by
    half per layer toward the input, residual ones that grow by 2 per block; block 2 of the deepest
    residual net overflowed in one seed."""
    depth, sigma, seed = [2, 4], [1.0, 1.76, 3.0], [0, 1]
    n_steps = 3 if steps else 1
    layer = np.arange(1, 7)
    grad = np.full((len(arch), 2, 3, 2, n_steps, 6), np.nan)
    for a, name in enumerate(arch):
        for d, n in enumerate(depth):
            n_layers = n + (2 if name == "resnet" else 1)
            factor = 2.0 if name == "resnet" else 0.5
            grad[a, d, ..., :n_layers] = factor ** np.arange(n_layers)[::-1].astype(float)
    if "resnet" in arch:
        grad[arch.index("resnet"), 1, :, 0, 0, 1] = np.nan
    accuracy = np.linspace(0.1, 0.9, len(arch) * 2 * 3 * n_steps).reshape(len(arch), 2, 3, n_steps)
    grid = ("arch", "depth", "sigma_w2")
    coords = {"arch": list(arch), "depth": depth, "sigma_w2": sigma, "seed": seed, "layer": layer}
    coords["step"] = np.arange(n_steps) * 10
    is_resnet = np.broadcast_to((np.array(arch) == "resnet")[:, None, None], (len(arch), 2, 3))
    arch_toml = ("[" + ", ".join(f'"{a}"' for a in arch) + "]") if len(arch) > 1 else f'"{arch[0]}"'
    ds = xr.Dataset(
        {
            "grad_norm": ((*grid, "seed", "step", "layer"), grad),
            "train_accuracy": ((*grid, "step"), accuracy),
            "grad_ratio_theory": (grid, np.where(is_resnet, 3.0, np.nan)),
            "completed": (grid, np.ones((len(arch), 2, 3), bool)),
            "diverged": (grid, np.zeros((len(arch), 2, 3), bool)),
        },
        coords=coords,
        attrs={
            "config": CONFIG.format(arch=arch_toml, steps=steps),
            "n_classes": 10,
            "input_mean_square": 1.0,
        },
    )
    return ds if len(arch) > 1 else ds.isel(arch=0, drop=True)  # a fixed field is no dim


def test_families_name_plain_residual_and_scaled_networks():
    assert [f for f, _ in families(synthetic())] == ["plain", "residual"]
    scaled = synthetic(arch=("resnet",)).expand_dims(branch_scaling=["none", "inv_sqrt_depth"])
    assert [f for f, _ in families(scaled)] == ["residual", "scaled"]


def test_measured_ratio_flags_overflow_and_underflow():
    ds = synthetic()
    grad = ds["grad_norm"].isel(step=0).sel(sigma_w2=1.0)
    ratio, over, under = measured_ratio(grad.sel(arch="mlp"), "plain")
    np.testing.assert_allclose(ratio, [0.5, 0.125])  # layer 1 over layer L: 0.5 per layer
    assert not over.any() and not under.any()
    ratio, over, under = measured_ratio(grad.sel(arch="resnet"), "residual")
    assert ratio[0] == pytest.approx(2.0) and np.isnan(ratio[1]) and over.tolist() == [False, True]
    grad = grad.where(grad.layer != 1, 0.0)
    assert measured_ratio(grad.sel(arch="mlp"), "plain")[2].all()


def test_the_figures_apply_only_to_results_with_a_residual_family_beside_another():
    mixed, trained = synthetic(), synthetic(steps=20)
    assert shows_residual_gradients(mixed) and not shows_residual_trainability(mixed)
    assert shows_residual_trainability(trained)
    plain = synthetic(arch=("mlp",))
    assert not shows_residual_gradients(plain) and not shows_residual_trainability(synthetic(20, ("mlp",)))
    # the MLP phase diagram would take the best over architectures under the MLP's xi_c curve
    assert not FIGURES["phase_diagram"][1](trained) and FIGURES["phase_diagram"][1](synthetic(20, ("mlp",)))


@pytest.mark.slow  # the theory curves compile (chi_1, the MLP mean field, xi_c): ~4 s
def test_the_figures_draw_measured_and_predicted_curves():
    fig = residual_gradients_figure(synthetic())
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 3  # one activation, three sigma_w2
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:2] == ["plain MLP", r"residual $x + \alpha F(x)$"]
    assert "not finite: float32 overflowed" in labels
    plt.close(fig)
    fig = residual_trainability_figure(synthetic(steps=20))
    titles = [ax.get_title() for ax in fig.axes]
    assert "plain MLP" in titles and r"residual $x + \alpha F(x)$" in titles
    assert len(fig.legends) == 1  # the plain panel's critical line and 6 xi_c curve
    plt.close(fig)


def test_the_residual_theory_says_nan_where_the_stream_leaves_float32():
    """relu full branches grow the stream by 1 + sigma_w2^2 / 2 per block: past float32 the ratio is
    unknown (NaN), not 0."""
    deep = residual_profile("relu", 3.0, 0.0, 1.0, 256).grad_ratio
    assert np.isnan(deep)
    assert float(residual_profile("relu", 3.0, 0.0, 1.0, 16).grad_ratio) == pytest.approx(1.0, rel=1e-3)


@pytest.mark.slow
def test_residual_gradients_grow_slower_than_plain_and_stay_bounded_when_scaled(tmp_path):
    """Measured at width 64, depth 64, tanh at sigma_w2 = 3 (chaotic): the plain MLP's first/last ratio
    is exponential (mean field ~ 1.21^31.5 ~ 400), the residual net's follows its mean field, and the
    1/sqrt(L)-scaled one stays below 3."""
    common = ["model.activation=tanh", "model.depth=64", "model.sigma_w2=3.0", "train.seed=[0, 1]"]
    plain = engine.run(EXPERIMENT, None, [*common, "model.arch=mlp"], scale="quick", run="gradients")
    resnet = engine.run(EXPERIMENT, None, common, scale="quick", run="scaled")
    g = plain["grad_norm"].isel(step=0)
    plain_ratio = float(np.exp(np.log(g.sel(layer=1) / g.sel(layer=64)).mean()))
    assert 50 < plain_ratio < 5000
    g = resnet["grad_norm"].isel(step=0)
    ratio = np.exp(np.log(g.sel(layer=2) / g.sel(layer=65)).mean("seed"))
    predicted = resnet["grad_ratio_theory"]
    predicted = predicted.isel(seed=0) if "seed" in predicted.dims else predicted
    measured = float(ratio.sel(branch_scaling="none"))
    assert measured == pytest.approx(float(predicted.sel(branch_scaling="none")), rel=0.5)
    assert float(ratio.sel(branch_scaling="inv_sqrt_depth")) < 3.0


# The experiment file's tiny runs and the figures they must draw (residual_gradients; residual_trainability
# and not the MLP phase diagram): tests/test_experiments.py (test_experiment_runs_at_tiny_scale, DRAWS).
