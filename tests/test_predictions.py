"""The theory beside the results: compiled in the background while the variants train."""

from __future__ import annotations

import jax
import numpy as np
import xarray as xr

from sweep.measure.predictions import add_predictions, compile_in_background
from sweep.runner import engine
from sweep.storage import store
from sweep.theory.mean_field import mean_field


def _grid(tiny: dict, sigma_w2: list[float]) -> tuple[engine.Experiment, xr.Dataset]:
    """An experiment over (sigma_w2, sigma_b2) and a results-like Dataset of its grid (no training)."""
    tiny["model"] |= {"activation": "erf", "sigma_w2": sigma_w2, "sigma_b2": [0.03, 0.07]}
    experiment = engine.as_experiment(tiny)
    coords = {"sigma_w2": sigma_w2, "sigma_b2": [0.03, 0.07]}
    return experiment, xr.Dataset(coords=coords, attrs={"config": store.config_text(experiment)})


def _compiles_during(fn) -> tuple[list[float], object]:
    seconds: list[float] = []

    def listen(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            seconds.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        result = fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return seconds, result


def test_background_compile_leaves_nothing_for_add_predictions(tiny):
    jax.clear_caches()  # whatever earlier tests compiled
    experiment, ds = _grid(dict(tiny), [1.1, 1.4, 1.7, 2.0, 2.3])
    compile_in_background(experiment).join()
    compiles, out = _compiles_during(lambda: add_predictions(ds))
    assert compiles == []
    direct = mean_field("erf", np.asarray([1.1, 1.4, 1.7, 2.0, 2.3])[:, None], np.asarray([[0.03, 0.07]]))
    np.testing.assert_allclose(out["xi_c"].transpose("sigma_w2", "sigma_b2"), direct.xi_c, rtol=1e-6)

    _, cold = _grid(dict(tiny), list(np.linspace(1.0, 3.0, 9)))  # the control: nothing compiled ahead
    compiles, _ = _compiles_during(lambda: add_predictions(cold))
    assert compiles


def test_trainability_agreement_counts_only_the_variants_the_theory_describes(tiny):
    """model.arch swept over mlp and resnet: the MLP mean field's rule is judged on the MLP cells alone
    (residual nets train where it predicts MLPs do not; they must not count against it, nor for it)."""
    tiny["model"] |= {
        "arch": ["mlp", "resnet"],
        "activation": "tanh",
        "sigma_w2": [1.0, 1.76],
        "depth": [4, 200],
    }
    tiny["measure"] |= {"trained_accuracy": 0.5}
    experiment = engine.as_experiment(tiny)
    dims = ("arch", "depth", "sigma_w2", "step")
    # MLP: trains where depth <= 6 xi_c (shallow everywhere, deep only at the critical 1.76); resnet: always
    accuracy = np.zeros((2, 2, 2, 2))
    accuracy[0, 0, :, -1] = 0.9
    accuracy[0, 1, 1, -1] = 0.9
    accuracy[1, :, :, -1] = 0.9
    coords = {"arch": ["mlp", "resnet"], "depth": [4, 200], "sigma_w2": [1.0, 1.76], "step": [0, 10]}
    coords["layer"] = np.arange(1, 203)  # embed, 200 blocks, readout
    ds = xr.Dataset(
        {
            "train_accuracy": (dims, accuracy),
            "diverged": (dims[:3], np.zeros((2, 2, 2), bool)),
            "completed": (dims[:3], np.ones((2, 2, 2), bool)),
        },
        coords=coords,
        attrs={"config": store.config_text(experiment), "n_classes": 10},
    )
    ds = add_predictions(ds)
    assert bool(ds["xi_c"].sel(arch="resnet").isnull().all())
    assert ds.attrs["trainability_agreement"] == 1.0  # the MLP cells follow the rule exactly
