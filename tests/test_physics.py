"""Vanishing and exploding gradients at initialisation, measured by the engine (tanh, depth 30).

Backpropagation multiplies the error signal by D_l W_l per layer, whose mean squared singular value is
chi_1 = sigma_w2 E[tanh'(h)^2]. For sigma_b2 = 0.05: chi_1 ~ 0.45 at sigma_w2 = 0.5 (vanishing),
chi_1 = 1 at sigma_w2 ~ 1.76 (critical) and chi_1 ~ 1.5 at sigma_w2 = 4 (exploding). Over the 28
hidden-to-hidden layers 2..30 the gradient norm should change by about chi_1^(28/2): 1e-5, 1 and 3e2.
"""

from __future__ import annotations

import numpy as np
import pytest

from sweep.runner import engine


@pytest.fixture(scope="module")
def at_init():
    experiment = {
        "model": {"width": 256, "depth": 30, "sigma_w2": [0.5, 1.76, 4.0], "sigma_b2": 0.05},
        "data": {"name": "gaussian_mixture", "n_train": 256, "n_test": 64, "input_dim": 32},
        "train": {"steps": 0, "seed": [0, 1]},
        "measure": {"n_eval": 128},
    }
    return engine.run(experiment)


def _decay(results, sigma_w2):
    """Gradient norm at layer 2 over layer 30 (first and last hidden-to-hidden weights), seed-averaged."""
    g = results["grad_norm"].sel(sigma_w2=sigma_w2, step=0)
    return float(np.exp(np.log(g.sel(layer=2) / g.sel(layer=30)).mean()))


def test_ordered_phase_gradients_vanish_toward_the_input(at_init):
    assert _decay(at_init, 0.5) < 1e-3


def test_chaotic_phase_gradients_explode_toward_the_input(at_init):
    assert _decay(at_init, 4.0) > 10


def test_critical_gradients_stay_within_an_order_of_magnitude(at_init):
    g = at_init["grad_norm"].sel(sigma_w2=1.76, step=0, layer=slice(2, 30))
    assert float(g.max() / g.min()) < 10


def test_forward_signal_reaches_a_fixed_point(at_init):
    q = at_init["q_layer"].sel(sigma_w2=4.0).mean("seed")
    # deep layers sit at the length map's fixed point q*: flat to a few percent (finite width, 2 seeds)
    assert float(q.sel(layer=slice(10, 30)).std() / q.sel(layer=slice(10, 30)).mean()) < 0.05
