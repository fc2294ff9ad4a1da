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
