"""An architecture's own ``[model]`` fields (``sweep.nets.NewField``): declared in its entry, set and
swept in an experiment file like built-in fields, static ones splitting groups, dynamic ones vmapped
into one program, saved, resumed and loaded as Dataset dimensions."""

from __future__ import annotations

import copy
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweep
from examples.gated_mlp import GATED
from sweep.config import ConfigError, experiment_from_dict, load_experiment
from sweep.config.grid import groups
from sweep.data import load_dataset
from sweep.measure.metrics import cross_entropy
from sweep.nets import ArchitectureError, NewField, register_architecture
from sweep.nets.contract import RESERVED_NAMES, Spec
from sweep.runner import engine
from sweep.runner.train import TRACE_COUNT, GroupSpec, variant_key
from sweep.storage import store

READOUTS = ("linear", "tanh")


def _readout_act(value: str) -> str | None:
    return None if value in READOUTS else f"choose from {list(READOUTS)}, got {value!r}"


READOUT_SCALE = NewField(
    "readout_scale",
    float,
    default=1.0,
    static=False,
    check=lambda v: None if v >= 0 else f"must be non-negative, got {v}",
    doc="readout scale a: logits = a f(s W)",
)
READOUT_ACT = NewField("readout_act", str, default="linear", static=True, check=_readout_act)


def _init(key: jax.Array, dynamic: dict, spec: Spec) -> tuple[dict, dict]:
    """A tanh MLP whose readout multiplies its logits by ``readout_scale`` (kept in the readout's state)."""
    d, n, c = spec.input_dim, spec.width, spec.n_classes
    k = jax.random.split(key, 3)
    sigma_w = jnp.sqrt(dynamic["sigma_w2"])
    params = {
        "embed": {"w": sigma_w * jax.random.normal(k[0], (d, n)) / np.sqrt(d)},
        "blocks": {"w": sigma_w * jax.random.normal(k[1], (spec.depth, n, n)) / np.sqrt(n)},
        "readout": {"w": sigma_w * jax.random.normal(k[2], (n, c)) / np.sqrt(n)},
    }
    state = {"embed": {}, "blocks": {}, "readout": {"scale": jnp.asarray(dynamic["readout_scale"])}}
    return params, state


def _embed(params, state, x, spec):
    h = x @ params["w"]
    return spec.phi(h), state, h


def _block(params, state, s, spec):
    h = s @ params["w"]
    return spec.phi(h), state, h


def _readout(params, state, s, spec):
    z = s @ params["w"]
    if spec.option("readout_act") == "tanh":
        z = jnp.tanh(z)
    return state["scale"] * z, state


SCALED = sweep.Architecture(
    init=_init,
    embed=_embed,
    block=_block,
    readout=_readout,
    n_blocks=lambda spec: spec.depth,
    new_fields=(READOUT_SCALE, READOUT_ACT),
)
register_architecture("scaled", SCALED)


def scaled(tiny: dict, **model) -> dict:
    out = copy.deepcopy(tiny)
    out["model"].update(arch="scaled", sigma_w2=1.5, **model)
    return out


def test_a_dynamic_new_field_is_swept_in_one_compile_and_reaches_init(tiny):
    raw = scaled(tiny, width=17, readout_scale=[0.0, 0.5, 2.0])  # width 17: a program no other test has
    raw["train"]["steps"] = 0
    exp = experiment_from_dict(raw)
    (group,) = groups(exp)  # one group: the field is vmapped
    assert group.dynamic()["readout_scale"].tolist() == [0.0, 0.5, 2.0]
    results = engine.run(exp)
    assert results["train_loss"].dims[0] == "readout_scale"
    assert [n for s, n in TRACE_COUNT.items() if s.arch == "scaled" and s.model.width == 17] == [1]
    # the logits by hand: the network at scale 1, times each scale (init's draws depend on the seed only)
    dataset = load_dataset(exp.base.data)
    spec = GroupSpec.from_config(group.static, dataset).model
    dynamic = {"sigma_w2": jnp.float32(1.5), "sigma_b2": jnp.float32(0.05), "readout_scale": jnp.float32(1)}
    params, state = SCALED.init(variant_key(jnp.uint32(0), 0), dynamic, spec)
    x, y = dataset.x_train[:64], dataset.y_train[:64]
    s, _, _ = SCALED.embed(params["embed"], state["embed"], x, spec)
    for i in range(spec.depth):
        s, _, _ = SCALED.block({"w": params["blocks"]["w"][i]}, {}, s, spec)
    logits, _ = SCALED.readout(params["readout"], state["readout"], s, spec)
    for a in (0.0, 0.5, 2.0):
        measured = results["train_loss"].sel(readout_scale=a, step=0).item()
        assert measured == pytest.approx(float(cross_entropy(a * logits, y)), rel=1e-5)
    chance = np.log(spec.n_classes)  # at scale 0 every logit is 0
    assert results["train_loss"].sel(readout_scale=0.0, step=0).item() == pytest.approx(chance, rel=1e-6)


def test_a_static_new_field_splits_groups_and_reaches_spec_options(tiny):
    exp = experiment_from_dict(scaled(tiny, readout_act=["linear", "tanh"], readout_scale=[1.0, 3.0]))
    plan = groups(exp)
    assert len(plan) == 2 and plan[0].key != plan[1].key
    assert [len(g.variants) for g in plan] == [2, 2]  # each holds both scales
    dataset = load_dataset(exp.base.data)
    options = [GroupSpec.from_config(g.static, dataset).model.options for g in plan]
    assert options == [(("readout_act", "linear"),), (("readout_act", "tanh"),)]
    # a static field at its default leaves the group key as it was without the field
    (one,) = groups(experiment_from_dict(scaled(tiny, readout_act="linear")))
    assert one.key == plan[0].key


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (("model.readout_scale=-1",), "--set: model.readout_scale: must be non-negative, got -1.0"),
        (('model.readout_scale="big"',), "--set: model.readout_scale: expected a number, got 'big'"),
        (("model.readout_scale=[1, 1]",), "--set: model.readout_scale: the sweep repeats a value"),
        (("model.readout_act=cubic",), "--set: model.readout_act: choose from ['linear', 'tanh']"),
        (("model.readout_act=1",), "--set: model.readout_act: expected a string, got 1"),
        (("model.readout_scal=1",), "--set 'model.readout_scal=1': unknown key model.readout_scal"),
    ],
)
def test_a_bad_value_is_one_config_error_line_naming_the_field(tiny, overrides, problem):
    with pytest.raises(ConfigError) as error:
        experiment_from_dict(scaled(tiny), overrides=overrides)
    assert str(error.value).startswith(problem) and "\n" not in str(error.value)


def test_a_bad_value_in_a_file_names_the_file_and_the_field(tiny, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[model]\narch = "scaled"\nreadout_scale = {linspace = [-1, 1, 3]}\n')
    with pytest.raises(ConfigError, match=f"^{path}: model.readout_scale: must be non-negative, got -1.0$"):
        load_experiment(path)
    path.write_text('[model]\narch = "scaled"\nreadout_sale = 2.0\n')
    with pytest.raises(ConfigError, match=f"^{path}: unknown key model.readout_sale; .*'readout_scale'"):
        load_experiment(path)


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        (NewField("width", int, 1, True), "collides with the config field model.width"),
        (NewField("seed", int, 1, False), "collides with the config field train.seed"),
        (NewField("layer", int, 1, True), "collides with a name of the results (layer)"),
        (NewField("readout_scale", int, 1, False), "'readout_scale' is int, dynamic, default 1 here but"),
        (NewField("readout_act", str, "tanh", True), "in the registered architecture 'scaled'"),
        (NewField("Mixed", float, 1.0, False), "lower-case letters, digits and _"),
        (NewField("label", str, "a", False), "a str field must be static"),
        (NewField("alpha", float, "1", False), "default '1' is no float"),
        (NewField("alpha", complex, 1j, False), "type must be one of float, int, bool, str"),
        (NewField("alpha", float, -1.0, False, READOUT_SCALE.check), "fails its own check: must be non-neg"),
    ],
)
def test_a_bad_or_colliding_new_field_is_refused_in_one_line(field, problem):
    with pytest.raises(ArchitectureError) as error:
        register_architecture("other", SCALED._replace(new_fields=(field,)))
    assert problem in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith("architecture 'other': ")
    # alike (type, static, default) is no collision: two architectures may share a field
    register_architecture("alike", SCALED._replace(new_fields=(READOUT_ACT, READOUT_SCALE)))


def test_a_new_field_with_an_architecture_that_does_not_declare_it_is_refused(tiny):
    with pytest.raises(
        ConfigError, match=r"^--set: model.readout_scale: has no effect with model.arch = 'mlp'"
    ):
        experiment_from_dict(tiny, overrides=("model.readout_scale=2",))
    both = scaled(tiny)
    both["model"]["arch"] = ["mlp", "scaled"]
    for value in (2.0, [1.0, 2.0]):
        with pytest.raises(
            ConfigError, match=r"readout_scale: has no effect with model.arch = 'mlp', 'scaled'$"
        ):
            experiment_from_dict(both, overrides=(f"model.readout_scale={value}",))
    # an override that replaces the architecture: the file's field is neutralised at its default
    file = scaled(tiny, readout_scale=[1.0, 2.0])
    with pytest.raises(
        ConfigError, match=r"^<config>: model.readout_scale: has no effect with model.arch = 'mlp'"
    ):
        experiment_from_dict(file, overrides=("model.arch=mlp",))
    plain = experiment_from_dict(file, overrides=("model.arch=mlp", "model.readout_scale=1"))
    without = experiment_from_dict(scaled(tiny), overrides=("model.arch=mlp",))  # the file without it
    assert plain.base.model.extra == () and plain.fingerprint() == without.fingerprint()
    exp = experiment_from_dict(both)  # at its default the field is no problem: every variant holds it
    assert [g.static.model.arch for g in groups(exp)] == ["mlp", "scaled"]
    assert all(v.config.get("model.readout_scale") == 1.0 for v in groups(exp)[0].variants)


def test_the_fingerprint_and_group_keys_of_files_that_do_not_use_the_field_are_unchanged(tiny):
    # as computed before architectures could add fields (GATED then had no gate_scale)
    assert experiment_from_dict(tiny).fingerprint() == "913fd89ba6a28cd1"
    gated = copy.deepcopy(tiny)
    gated["model"]["arch"] = "examples.gated_mlp:GATED"
    exp = experiment_from_dict(gated)
    assert exp.base.model.extra == (("gate_scale", 1.0),)
    assert exp.fingerprint() == "1d8e6a5b71f59d71"
    assert [g.key for g in groups(exp)] == ["examples_gated_mlp_GATED-tanh-w16-d3-gaussian-sgd-b16-620e57d3"]
    assert experiment_from_dict(gated, overrides=("model.gate_scale=1.0",)).fingerprint() == exp.fingerprint()
    assert experiment_from_dict(gated, overrides=("model.gate_scale=2.0",)).fingerprint() != exp.fingerprint()
    assert experiment_from_dict(scaled(tiny, readout_act="linear")).fingerprint() == (
        experiment_from_dict(scaled(tiny)).fingerprint()
    )


def test_the_worked_example_sweeps_its_gate_scale():
    exp = load_experiment("examples/gated.toml", scale="tiny")
    assert "model.gate_scale" in {axis.field for axis in exp.axes}
    assert [g.key.split("-")[3] for g in groups(exp)] == ["d2", "d6"]  # one program per depth, not per scale
    assert GATED.new_fields[0].name == "gate_scale"


def test_a_swept_new_field_is_saved_resumed_and_loaded_as_a_dimension(tiny, tmp_path):
    raw = scaled(tiny, width=13, readout_scale=[0.5, 1.0, 2.0])
    raw["train"]["steps"] = 4
    out = tmp_path / "run"
    first = engine.run(raw, out, chunk_size=2)
    assert first["test_accuracy"].dims == ("readout_scale", "step")
    assert first["readout_scale"].values.tolist() == [0.5, 1.0, 2.0]
    assert first["readout_scale"].attrs["long_name"] == READOUT_SCALE.doc
    config = tomllib.loads((out / store.CONFIG).read_text())["model"]
    assert config["readout_scale"] == [0.5, 1.0, 2.0] and config["readout_act"] == "linear"
    assert tomllib.loads(first.attrs["config"])["model"]["readout_scale"] == [0.5, 1.0, 2.0]
    first_chunk, *others = sorted((out / store.CHUNKS).glob("*.npz"))  # 3 variants: 2 chunks
    assert len(others) == 1
    first_chunk.unlink()
    (out / store.RESULTS).unlink()
    resumed = engine.run(raw, out, resume=True, chunk_size=2)
    loaded = sweep.load(out)
    for ds in (resumed, loaded):
        assert ds["readout_scale"].values.tolist() == [0.5, 1.0, 2.0]
        assert ds["readout_scale"].attrs["long_name"] == READOUT_SCALE.doc
        for name in ("train_loss", "grad_norm", "q_layer", "test_accuracy"):
            np.testing.assert_array_equal(ds[name].values, first[name].values)
    # the saved config.toml is an experiment file of its own (sweep merge reads it)
    again = load_experiment(out / store.CONFIG)
    assert again.fingerprint() == loaded.attrs["fingerprint"]


def test_reserved_names_cover_the_results():
    from sweep.measure import predictions
    from sweep.storage.results import LONG_NAMES, PER_VARIANT_DIMS

    dims = {d for dims in PER_VARIANT_DIMS.values() for d in dims}
    predicted = [
        *predictions.PREDICTED,
        *predictions.MIXED_PREDICTED,
        *predictions.RESIDUAL_PREDICTED,
        *predictions.NORMALISATION_PREDICTED,
    ]
    assert {*PER_VARIANT_DIMS, *dims, *LONG_NAMES, *predicted} <= set(RESERVED_NAMES)
