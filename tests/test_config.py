"""Experiment files: parsing, sweeps, overrides, and one clear error line for each kind of bad input."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sweep.config import (
    ConfigError,
    experiment_from_dict,
    load_experiment,
    parse_layer_scales,
    parse_override,
)
from sweep.config.grid import groups, record_steps, variants
from sweep.nets.activations import ACTIVATIONS


def test_defaults_and_fixed_values():
    exp = experiment_from_dict({"model": {"width": 32}})
    assert exp.axes == () and exp.n_variants == 1
    assert exp.base.model.width == 32 and exp.base.model.activation == "tanh"


def test_sweep_forms():
    exp = experiment_from_dict(
        {
            "model": {"sigma_w2": {"linspace": [1, 4, 4]}, "depth": {"range": [10, 31, 10]}},
            "train": {"learning_rate": {"geomspace": [0.001, 0.1, 3]}, "seed": [0, 1]},
        }
    )
    axes = {a.name: a.values for a in exp.axes}
    assert axes["sigma_w2"] == (1.0, 2.0, 3.0, 4.0)
    assert axes["depth"] == (10, 20, 30)
    np.testing.assert_allclose(axes["learning_rate"], [0.001, 0.01, 0.1])
    assert exp.shape == (3, 4, 3, 2) and exp.n_variants == 72  # axes in FIELDS order: depth first


def test_integer_fields_round_linspace():
    exp = experiment_from_dict({"model": {"depth": {"geomspace": [5, 60, 6]}}})
    (axis,) = exp.axes
    assert all(isinstance(v, int) for v in axis.values) and axis.values[0] == 5 and axis.values[-1] == 60


def test_overrides_replace_and_sweep():
    exp = experiment_from_dict(
        {"train": {"steps": 300}},
        "x.toml",
        ["train.steps=50", "model.depth=[10,20]", "model.activation=relu"],
    )
    assert exp.base.train.steps == 50 and exp.base.model.activation == "relu"
    assert exp.axes[0].values == (10, 20)
    assert parse_override("model.sigma_w2={linspace = [1, 2, 3]}") == (
        "model.sigma_w2",
        {"linspace": [1, 2, 3]},
    )


def test_groups_split_on_static_fields_only():
    exp = experiment_from_dict(
        {
            "model": {"depth": [2, 3], "sigma_w2": [1.0, 2.0, 3.0]},
            "train": {"seed": [0, 1], "learning_rate": [0.1, 0.2]},
        }
    )
    plan = groups(exp)
    assert len(plan) == 2 and all(len(g.variants) == 12 for g in plan)
    assert {g.static.model.depth for g in plan} == {2, 3}
    dyn = plan[0].dynamic()
    assert dyn["seed"].dtype == np.uint32 and dyn["sigma_w2"].shape == (12,)
    # every variant appears exactly once, at its own grid index
    indices = [v.index for g in plan for v in g.variants]
    assert sorted(indices) == sorted(v.index for v in variants(exp))


def test_record_steps_always_include_zero_and_end():
    assert record_steps(10, 4).tolist() == [0, 4, 8, 10]
    assert record_steps(0, 5).tolist() == [0]


def test_name_lists_come_from_the_registries():
    from sweep.nets.contract import architecture_names
    from sweep.nets.initialisers import INITIALISERS

    assert "mlp" in architecture_names()
    for field, names in (("model.init", INITIALISERS), ("model.activation", ACTIVATIONS)):
        for name in names:  # every registered name is accepted, nothing else
            experiment_from_dict({"model": {field.split(".")[1]: name}})
    for field, wrong in (
        ("init", "Orthogonal"),
        ("init", "he"),
        ("arch", "resnet50"),
        ("activation", "Tanh"),
    ):
        with pytest.raises(ConfigError, match=f"model.{field}: unknown"):
            experiment_from_dict({"model": {field: wrong}})


def test_fingerprint_tracks_the_variants():
    a = experiment_from_dict({"model": {"sigma_w2": [1.0, 2.0]}})
    assert a.fingerprint() == experiment_from_dict({"model": {"sigma_w2": [1.0, 2.0]}}).fingerprint()
    assert a.fingerprint() != experiment_from_dict({"model": {"sigma_w2": [1.0, 3.0]}}).fingerprint()


BAD = [
    ({"modle": {"width": 3}}, "unknown section [modle]"),
    ({"model": {"widht": 3}}, "model.widht"),
    ({"model": {"width": "wide"}}, "model.width"),
    ({"model": {"width": 2.5}}, "model.width"),
    ({"model": {"width": 0}}, "model.width"),
    ({"model": {"depth": -3}}, "model.depth"),
    ({"train": {"steps": -1}}, "train.steps"),
    ({"train": {"batch_size": 0}}, "train.batch_size"),
    ({"model": {"sigma_w2": -1.0}}, "model.sigma_w2"),
    ({"model": {"sigma_b2": [0.1, -0.2]}}, "model.sigma_b2"),
    ({"train": {"learning_rate": -0.1}}, "train.learning_rate"),
    ({"model": {"activation": "tanhh"}}, "model.activation"),
    ({"train": {"optimizer": "adamw2"}}, "train.optimizer"),
    ({"data": {"name": "imagenet"}}, "data.name"),
    ({"model": {"arch": "transformer"}}, "model.arch"),
    ({"model": {"depth": []}}, "model.depth"),
    ({"model": {"sigma_w2": {"linspace": [1, 2]}}}, "model.sigma_w2"),
    ({"model": {"sigma_w2": {"logspace": [1, 2, 3]}}}, "model.sigma_w2"),
    ({"model": {"depth": {"range": [10, 1, 0]}}}, "model.depth"),
    ({"model": {"width": True}}, "model.width"),
    ({"model": {"depth": [3, 3]}}, "model.depth"),
    ({"model": {"mix": "neurons"}}, "model.mix"),
    ({"model": {"mix": "units", "mix_fraction": 1.5}}, "model.mix_fraction"),
    ({"model": {"mix": "units", "mix_scale_a": -0.5}}, "model.mix_scale_a"),
    ({"model": {"mix": "entries", "mix_scale_b": "big"}}, "model.mix_scale_b"),
    ({"model": {"mix_scale_a": 0.5}}, "model.mix_scale_a"),  # no effect while mix = "none"
    ({"model": {"mix_fraction": [0.25, 0.5]}}, "model.mix_fraction"),
    ({"model": {"layer_scales": "0.5 x"}}, "model.layer_scales"),
    ({"model": {"layer_scales": ""}}, "model.layer_scales"),
    ({"model": {"layer_scales": "0.5 -1"}}, "model.layer_scales"),
    ({"model": {"layer_scales": 0.5}}, "model.layer_scales"),  # a pattern is a string
    ({"model": {"layer_scales": ["1", "1"]}}, "model.layer_scales"),
]


@pytest.mark.parametrize(("raw", "needle"), BAD)
def test_bad_input_names_file_and_field(raw, needle):
    with pytest.raises(ConfigError) as error:
        experiment_from_dict(raw, "exp.toml")
    message = str(error.value)
    assert "\n" not in message and message.startswith("exp.toml") and needle in message


@pytest.mark.parametrize(
    "text", ["model.width", "width=3", "model.nope=3", "nosection.width=3", "model.depth=[1,"]
)
def test_bad_overrides(text):
    with pytest.raises(ConfigError, match="--set"):
        experiment_from_dict({}, "exp.toml", [text])


def test_override_type_errors_name_the_override():
    with pytest.raises(ConfigError, match=r"^--set: model.width"):
        experiment_from_dict({}, "exp.toml", ["model.width=-4"])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_experiment(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nwidth=3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_experiment(bad)


@given(
    st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=5, unique=True),
    st.lists(st.integers(1, 50), min_size=1, max_size=4, unique=True),
)
def test_grid_is_the_product_of_axes(sigmas, depths):
    exp = experiment_from_dict({"model": {"sigma_w2": sigmas, "depth": depths}})
    assert exp.n_variants == len(sigmas) * len(depths) == math.prod(exp.shape)
    vs = variants(exp)
    assert len(vs) == exp.n_variants
    for v in vs:
        assert v.config.model.depth == depths[v.index[0]]
        assert v.config.model.sigma_w2 == sigmas[v.index[1]]


def test_mixed_scale_fields():
    exp = experiment_from_dict(
        {
            "model": {
                "mix": ["units", "entries"],
                "mix_scale_a": 0.5,
                "mix_scale_b": [1.5, 2.0],
                "layer_scales": ["1", "0.5 1.5"],
            }
        }
    )
    assert [axis.name for axis in exp.axes] == ["mix", "mix_scale_b", "layer_scales"]
    assert exp.base.model.mix_scale_a == 0.5 and exp.base.model.mix_fraction == 0.5
    assert parse_layer_scales("0.5 1.5") == (0.5, 1.5) == parse_layer_scales(" 0.5,1.5 ")
    plan = groups(exp)  # mix and layer_scales are static (4 programs); the scales are vmapped
    assert len(plan) == 4 and all(len(group.variants) == 2 for group in plan)
    assert set(plan[0].dynamic()) >= {"mix_scale_a", "mix_scale_b", "mix_fraction"}
    # swept with mix = "none" among the values: the scales matter for the others
    experiment_from_dict({"model": {"mix": ["none", "units"], "mix_scale_a": 0.5}})


def test_fingerprint_ignores_the_mixed_fields_at_their_defaults():
    plain = experiment_from_dict({"model": {"sigma_w2": [1.0, 2.0]}})
    explicit = experiment_from_dict({"model": {"sigma_w2": [1.0, 2.0], "mix": "none", "layer_scales": "1"}})
    assert plain.fingerprint() == explicit.fingerprint()
    sections = plain.to_toml_dict()
    mixed = ("mix", "mix_scale_a", "mix_scale_b", "mix_fraction", "layer_scales")
    for key in (*mixed, "branch", "branch_scale", "branch_scaling", "branch_gain", "norm"):
        del sections["model"][key]  # as an experiment was resolved before these fields existed
    text = json.dumps(sections, sort_keys=True)
    assert plain.fingerprint() == hashlib.sha256(text.encode()).hexdigest()[:16]
    mixed = experiment_from_dict({"model": {"sigma_w2": [1.0, 2.0], "layer_scales": "0.5 1.5"}})
    assert mixed.fingerprint() != plain.fingerprint()


def test_an_unreadable_experiment_file_is_one_line(tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match=r"binary\.toml: not a text file"):
        load_experiment(binary)
    with pytest.raises(ConfigError, match="cannot read the experiment file"):
        load_experiment(tmp_path)  # a directory
