"""The results Dataset follows xarray/CF conventions: labelled variables, swept values as written."""

from __future__ import annotations

import pytest

import sweep
from sweep.config import experiment_from_dict


@pytest.mark.slow
def test_every_variable_and_coordinate_has_a_long_name(tiny):
    tiny["model"]["depth"] = [2, 3]
    tiny["measure"]["jacobian"] = True
    tiny["train"]["steps"] = 0  # the same variables and coordinates as a trained run, quicker to compile
    ds = sweep.run(tiny)
    names = [*ds.data_vars, *ds.coords]
    assert {"grad_norm", "q_star", "xi_c", "jacobian_log10_sv", "sigma_w2", "depth", "layer", "step"} <= set(
        names
    )
    unlabelled = [name for name in names if not ds[name].attrs.get("long_name")]
    assert not unlabelled
    assert ds["depth"].attrs["long_name"] == "depth L (hidden layers)"


def test_linspace_values_are_stored_as_written():
    experiment = experiment_from_dict(
        {"model": {"sigma_w2": {"linspace": [0.1, 0.7, 7]}, "sigma_b2": {"geomspace": [0.01, 1.0, 3]}}}
    )
    values = {axis.name: axis.values for axis in experiment.axes}
    assert values["sigma_w2"] == (
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.6,
        0.7,
    )  # linspace alone gives 0.30000000000000004
    assert values["sigma_b2"] == (0.01, 0.1, 1.0)
