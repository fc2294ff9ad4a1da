"""Jacobian spectra recorded by the engine ([measure] jacobian = true)."""

from __future__ import annotations

import numpy as np

from sweep.runner import engine


def test_orthogonal_linear_network_is_an_exact_isometry_up_to_scale(tiny):
    tiny["model"].update(activation="linear", init="orthogonal", depth=60, width=16)
    tiny["model"]["sigma_w2"] = [0.8, 1.0, 1.3]
    tiny["train"]["steps"] = 0
    tiny["measure"].update(jacobian=True, jacobian_inputs=2)
    results = engine.run(tiny)
    log_sv = results["jacobian_log10_sv"].isel(step=0)  # (sigma_w2, jacobian_input, sv)
    expected = 59 * np.log10(np.sqrt(results["sigma_w2"].values))  # L - 1 = 59 factors of sigma_w
    np.testing.assert_allclose(
        log_sv.values, np.broadcast_to(expected[:, None, None], log_sv.shape), atol=1e-4
    )
    np.testing.assert_allclose(results["jacobian_eig_variance_rel"].isel(step=0).values, 0.0, atol=1e-6)


def test_spectrum_recorded_at_start_and_end_only_by_default(tiny):
    tiny["measure"].update(jacobian=True, jacobian_mode="matrix_free", jacobian_k=3)
    results = engine.run(tiny)
    measured = np.isfinite(results["jacobian_mean_sq_sv"]).all("sigma_w2")
    assert measured.sel(step=0) and measured.sel(step=12) and not measured.sel(step=4)
    assert results.sizes["sv"] == 6  # top 3 and bottom 3
