"""The network contract (sweep.nets.contract), tested once for every registered architecture: the
built-in ones, the MLP without its fast paths (the generic routes), and the worked example of a user's
own architecture (examples/gated_mlp.py, named by "package.module:attribute")."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.config import experiment_from_dict
from sweep.config.grid import groups
from sweep.data import load_dataset
from sweep.measure.metrics import cross_entropy
from sweep.nets import block_jacobian
from sweep.nets.contract import architecture_names, new_dynamic_defaults, register_architecture, resolve
from sweep.nets.forward import signal
from sweep.nets.mlp import MLP, plain_block
from sweep.runner import engine, train
from sweep.runner.memory import SAFETY, share_bytes
from sweep.runner.train import TRACE_COUNT, GroupSpec, Hyper, train_data, train_variant, variant_key

register_architecture(  # the MLP written plainly, without its fast paths: the generic routes
    "mlp_plain",
    MLP._replace(block=plain_block, exact_jacobian=None, matrix_free_jacobian=None, kept_per_unit=None),
)
USER = "examples.gated_mlp:GATED"
# "arch+norm": the architecture with model.norm (slow: the fast subset tests normalisation on its own)
NORMALISED = [
    pytest.param(case, marks=pytest.mark.slow) for case in ("mlp+layer", "mlp+batch", "resnet+batch")
]
ARCHS = [*architecture_names(), USER, *NORMALISED]
# the residual CNN is the CNN with another block: the tests of what a block can get wrong cover it,
# the engine-level ones (retracing, divergence, memory) run on the CNN alone
ENGINE_ARCHS = [arch for arch in ARCHS if arch != "residual_cnn"]
OUTPUTS = ("train_loss", "train_accuracy", "test_accuracy", "grad_norm", "q_layer", "c_layer")


def tiny_of(tiny: dict, arch: str) -> dict:
    out = copy.deepcopy(tiny)
    name, _, norm = arch.partition("+")
    out["model"]["arch"] = name
    if norm:
        out["model"]["norm"] = norm
    if name in (
        "cnn",
        "residual_cnn",
    ):  # 12 positions x 6 channels; delta-orthogonal keeps the Jacobian well conditioned
        out["model"].update(channels=6, init="delta_orthogonal")
    return out


def batch_norm(arch: str) -> bool:
    return arch.endswith("+batch")


def one_network(tiny: dict, arch: str, sigma_w2: float = 1.5, seed: int = 0):
    """(architecture, spec, params, state, dataset) of one variant, as the engine builds it."""
    exp = experiment_from_dict(tiny_of(tiny, arch))
    dataset = load_dataset(exp.base.data)
    spec = GroupSpec.from_config(groups(exp)[0].static, dataset).model
    a = resolve(arch.partition("+")[0])
    dynamic = {
        name: jnp.float32(sigma_w2 if name == "sigma_w2" else 0.05) for name in ("sigma_w2", "sigma_b2")
    }
    dynamic |= {name: jnp.float32(getattr(exp.base.model, name)) for name in a.dynamic_fields}
    dynamic |= {
        name: value for name, value in new_dynamic_defaults(a).items()
    }  # e.g. the example's gate_scale
    params, state = a.init(variant_key(jnp.uint32(seed), 0), dynamic, spec)
    return a, spec, params, state, dataset


def by_hand(a, params: dict, state: dict, x: jax.Array, spec) -> tuple[list[jax.Array], jax.Array, list]:
    """The blocks one by one in Python (no scan): the taps of every layer, the logits, and the states."""
    s, _, tap = a.embed(params["embed"], state["embed"], x, spec)
    taps, states = [tap], [s]
    for i in range(a.n_blocks(spec)):
        block = jax.tree.map(lambda leaf: leaf[i], (params["blocks"], state["blocks"]))  # noqa: B023
        s, _, tap = a.block(*block, s, spec)
        taps.append(tap)
        states.append(s)
    logits, _ = a.readout(params["readout"], state["readout"], s, spec)
    return [*taps, logits], logits, states


@pytest.fixture(scope="module")
def single_variants() -> dict:
    """arch -> every variant of ``test_vmapped_group_equals_single_variant``'s grid trained alone (one
    jitted ``train_variant``, not vmapped): computed once, shared by both ways of passing the group."""
    return {}


def _alone(cache: dict, arch: str, exp, group, dataset) -> list[dict]:
    if arch not in cache:
        spec = GroupSpec.from_config(group.static, dataset)
        data = train_data(dataset, exp.base.measure.n_eval)
        one = jax.jit(lambda hyper: train_variant(spec, hyper, data))
        dyn = group.dynamic()
        hypers = [
            Hyper.of({k: jnp.asarray(v[i]) for k, v in dyn.items()}, tuple(spec.extra_dtypes))
            for i in range(len(group.variants))
        ]
        cache[arch] = [{name: np.asarray(one(h)[name]) for name in OUTPUTS} for h in hypers]
    return cache[arch]


# one vmap; passes of 4 (sweep.runner.passes), the last padded
@pytest.mark.parametrize("per_pass", [None, 4])
@pytest.mark.parametrize("arch", ARCHS)
def test_vmapped_group_equals_single_variant(tiny, monkeypatch, single_variants, arch, per_pass):
    tiny = tiny_of(tiny, arch)
    tiny["model"]["sigma_w2"] = [1.0, 1.7, 2.5]
    tiny["train"]["seed"] = [0, 3]
    exp = experiment_from_dict(tiny)
    (group,) = groups(exp)
    dataset = load_dataset(exp.base.data)
    alone = _alone(single_variants, arch, exp, group, dataset)  # before the engine's passes are patched
    if per_pass is not None:
        monkeypatch.setattr(train, "_COMPILED", {})  # this shape's program, compiled with other passes
        monkeypatch.setattr(train, "variants_per_pass", lambda layer_bytes, n, platform: per_pass)
    results = engine.run(exp)
    for variant, one in zip(group.variants, alone, strict=True):
        in_group = results.isel(dict(zip(results["train_loss"].dims[:2], variant.index, strict=True)))
        for name in OUTPUTS:
            np.testing.assert_allclose(in_group[name].values, one[name], rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_norms_equal_jax_grad_and_q_as_measured_by_hand(tiny, arch):
    tiny = tiny_of(tiny, arch)
    tiny["train"]["steps"] = 0
    tiny["model"]["sigma_w2"] = [1.5]
    results = engine.run(tiny)
    a, spec, params, state, dataset = one_network(tiny, arch)
    # batch norm is measured in minibatches of train.batch_size rows, each with its own statistics
    rows = tiny["train"]["batch_size"] if batch_norm(arch) else 64
    batches = [slice(start, start + rows) for start in range(0, 64, rows)]

    def norm(tree: dict) -> jax.Array:  # every leaf with two or more axes is a weight matrix
        return jnp.sqrt(sum(jnp.sum(jnp.square(w)) for w in jax.tree.leaves(tree) if w.ndim >= 2))

    @jax.jit  # by hand, but compiled once (op by op it compiled ~50 small programs per network)
    def one_batch(params: dict, x: jax.Array, y: jax.Array) -> tuple[jax.Array, ...]:
        grads = jax.grad(lambda p: cross_entropy(by_hand(a, p, state, x, spec)[1], y))(params)
        layers = [norm(grads["embed"])]
        layers += [norm(jax.tree.map(lambda g: g[i], grads["blocks"])) for i in range(a.n_blocks(spec))]  # noqa: B023
        taps = by_hand(a, params, state, x, spec)[0]
        q = jnp.stack([jnp.mean(jnp.square(t)) for t in taps])  # per-unit mean square of every layer's tap
        c = jnp.stack([signal(t)[1] for t in taps])
        return jnp.square(jnp.stack([*layers, norm(grads["readout"])])), q, c, taps[1]

    squares, q, c, first_taps = [], [], [], []
    for rows in batches:
        one = one_batch(params, dataset.x_train[rows], dataset.y_train[rows])
        for out, value in zip((squares, q, c, first_taps), one, strict=True):
            out.append(np.asarray(value))
    expected = np.sqrt(np.mean(squares, axis=0))  # root mean square over the minibatches
    measured = results["grad_norm"].isel(sigma_w2=0, step=0).values
    np.testing.assert_allclose(measured, expected, rtol=1e-4)
    np.testing.assert_allclose(results["q_layer"].isel(sigma_w2=0).values, np.mean(q, axis=0), rtol=1e-5)
    c = np.concatenate(c, axis=1)[:, : results.sizes["pair"]]  # pairs of rows within each minibatch
    np.testing.assert_allclose(results["c_layer"].isel(sigma_w2=0).values, c, rtol=1e-4, atol=1e-5)
    h = first_taps[0].reshape(first_taps[0].shape[0], -1)  # layer 1's tap of the first minibatch
    by_numpy = np.sum(h[0] * h[1]) / np.sqrt(np.sum(h[0] ** 2) * np.sum(h[1] ** 2))
    assert results["c_layer"].isel(sigma_w2=0, layer=1, pair=0).item() == pytest.approx(by_numpy, rel=1e-4)


def _stack_map(a, params: dict, state: dict, spec, shape: tuple[int, ...]):
    """s^1 (one row of ``shape``, flattened) -> s^L: the block stack whose Jacobian the generic route
    measures."""

    def stack(v: jax.Array) -> jax.Array:
        s = v.reshape(shape)
        for i in range(a.n_blocks(spec)):
            block = jax.tree.map(lambda leaf: leaf[i], (params["blocks"], state["blocks"]))  # noqa: B023
            s = a.block(*block, s, spec)[0]
        return s.reshape(-1)

    return stack


@pytest.mark.parametrize("arch", ARCHS)
def test_exact_jacobian_equals_autodiff(tiny, arch):
    """The engine's exact route against the SVD of the Jacobian by autodiff of the blocks applied one by
    one (``jax.jacrev``: reverse mode, which a ``custom_vjp`` block supports too), in float64; and
    Lanczos with a full Krylov space against it."""
    if batch_norm(arch):
        pytest.skip("a batch-normalised network has no per-example Jacobian (refused: test_normalisation)")
    jax.config.update("jax_enable_x64", True)
    try:
        a, spec, params, state, dataset = one_network(tiny, arch, sigma_w2=1.8)
        params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
        x = jnp.asarray(dataset.x_train[0], jnp.float64)
        s1 = a.embed(params["embed"], state["embed"], x[None], spec)[0]
        stack = _stack_map(a, params, state, spec, s1.shape)
        s1 = s1.reshape(-1)
        # each route compiled whole, as the engine runs it (op by op: hundreds of small programs)
        if a.exact_jacobian is None or "+" in arch:  # the generic route (the MLP's with norm): ds^L / ds^1
            jacobian = jax.jit(jax.jacrev(stack))(s1)
            exact = a.exact_jacobian or (lambda *args: block_jacobian.exact_log10_sv(a, *args))
            measured = jax.jit(lambda p, x: exact(p, state, x, spec))(params, x)
        else:  # the MLP's own route: J = dx^L / dx^1 with x^l = phi(h^l) (tanh here)
            assert spec.activation == "tanh"
            jacobian = jax.jit(jax.jacrev(lambda x1: spec.phi(stack(jnp.arctanh(x1)))))(spec.phi(s1))
            measured = jax.jit(lambda p, x: a.exact_jacobian(p, state, x, spec))(params, x)
        expected = np.log10(np.linalg.svd(np.asarray(jacobian), compute_uv=False))
        # layer norm removes two directions (each row's mean and its length): those singular values are
        # zero, and their computed logs are rounding noise (below 1e-8 in float64): compare the others
        nonzero = expected > -8
        assert np.sum(nonzero) == len(expected) - (2 if arch.endswith("+layer") else 0)
        np.testing.assert_allclose(measured[nonzero], expected[nonzero], atol=1e-9)
        assert np.all(np.asarray(measured)[~nonzero] < -8)
        n = s1.shape[0]  # Lanczos with a full Krylov space recovers the whole spectrum
        matrix_free = a.matrix_free_jacobian or (lambda *args: block_jacobian.matrix_free_log10_sv(a, *args))
        top, bottom, mean_sq = jax.jit(
            lambda p, x: matrix_free(p, state, x, spec, n // 2, n, jax.random.key(1))
        )(params, x)
        lanczos = np.concatenate([top, bottom])
        np.testing.assert_allclose(lanczos[nonzero], expected[nonzero], atol=1e-6)
        assert float(mean_sq) == pytest.approx(np.log10(np.mean(10 ** (2 * expected))), abs=1e-9)
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("arch", ENGINE_ARCHS)
def test_no_retrace_on_a_second_chunk(tiny, arch):
    tiny = tiny_of(tiny, arch)
    tiny["model"]["width"] = 20  # a shape no other test uses
    tiny["model"]["sigma_w2"] = [1.0, 1.5, 2.0]
    tiny["measure"]["jacobian"] = not batch_norm(arch)
    # at initialisation only: the whole program is traced all the same (its training loop then never
    # runs, and XLA compiles it away: a quicker compile), and retracing is decided by its cache key
    tiny["train"]["steps"] = 0
    engine.run(tiny, chunk_size=2)  # two chunks, the second padded
    norm = tiny["model"].get("norm", "none")
    counts = {
        s: n
        for s, n in TRACE_COUNT.items()
        if s.model.width == 20
        and s.arch == tiny["model"]["arch"]
        and dict(s.model.options).get("norm", "none") == norm
    }
    assert list(counts.values()) == [1]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ENGINE_ARCHS)
def test_a_diverging_variant_changes_no_other(tiny, arch):
    tiny = tiny_of(tiny, arch)
    tiny["model"].update(activation="relu", sigma_w2=2.0)
    # normalised nets and CNNs (their pooled logits) shrug off a step that is merely large
    huge = 1e36 if "+" in arch or "cnn" in arch else 1e7
    tiny["train"].update(learning_rate=[0.01, huge], steps=8)
    both = engine.run(tiny)
    # the same program (2 variants, same chunk) with a neighbour that trains calmly: the variant at 0.01
    # must not see whether its neighbour diverged (isolation from any neighbour at all, the vmapped
    # group against single-variant programs, is test_vmapped_group_equals_single_variant)
    calm = engine.run(tiny, overrides=("train.learning_rate=[0.01, 0.02]",))
    assert bool(both["diverged"].sel(learning_rate=huge))
    assert not bool(both["diverged"].sel(learning_rate=0.01)) and not bool(calm["diverged"].any())
    for name in OUTPUTS:
        np.testing.assert_allclose(
            both[name].sel(learning_rate=0.01).values, calm[name].sel(learning_rate=0.01).values, rtol=2e-4
        )


@pytest.mark.slow
@pytest.mark.parametrize("arch", ENGINE_ARCHS)
@pytest.mark.parametrize("jacobian", [False, True])
def test_memory_estimate_covers_the_compiled_program(tiny, monkeypatch, arch, jacobian):
    """XLA's buffers of a compiled chunk (temporaries and outputs) stay within the estimate without its
    safety factor (``sweep.runner.memory``, sizes from ``jax.eval_shape``)."""
    if jacobian and batch_norm(arch):
        pytest.skip("a batch-normalised network has no per-example Jacobian")
    tiny = tiny_of(tiny, arch)
    tiny["model"].update(width=32, depth=4, sigma_w2=[1.0, 2.0])
    tiny["measure"]["jacobian"] = jacobian
    exp = experiment_from_dict(tiny)
    dataset = load_dataset(exp.base.data)
    spec = GroupSpec.from_config(groups(exp)[0].static, dataset)
    monkeypatch.setattr(train, "_COMPILED", {})
    size, n_eval, n_test = 8, exp.base.measure.n_eval, exp.base.data.n_test
    data = train_data(dataset, n_eval)
    analysis = train.compile_group(spec, size, data)[0].run.memory_analysis()
    buffers = analysis.temp_size_in_bytes + analysis.output_size_in_bytes
    estimate = share_bytes(spec, size, n_eval, n_test, "cpu") / SAFETY
    assert buffers <= estimate, (buffers, estimate)
    assert buffers >= 0.3 * estimate, (buffers, estimate)  # an estimate, not a blind upper bound


# ------------------------------------------------------------------------------- your own architecture
def test_register_architecture_from_python(tiny):
    import sweep
    from examples.gated_mlp import GATED

    sweep.register_architecture("gated_here", GATED)
    assert "gated_here" in architecture_names()
    results = engine.run(tiny_of(tiny, "gated_here"))
    assert results["grad_norm"].sizes["layer"] == tiny["model"]["depth"] + 2  # embed, blocks, readout
    assert np.isfinite(results["train_loss"]).all()
    for name, bad, problem in [
        ("gated here", GATED, "letters, digits and _"),
        ("broken", GATED._replace(block=None), "block must be a function"),
        ("broken", (GATED.init, GATED.embed), "expected a sweep.nets.Architecture, got tuple"),
        ("broken", GATED._replace(dynamic_fields=("learning_rate",)), "model.learning_rate"),
    ]:
        with pytest.raises(ValueError, match=problem):
            sweep.register_architecture(name, bad)
    assert "broken" not in architecture_names()


BROKEN_MODULE = """
from examples.gated_mlp import GATED

def _wide_block(params, state, s, spec):
    import jax.numpy as jnp
    return jnp.concatenate([s, s], axis=-1), state, s

WIDENS = GATED._replace(block=_wide_block)
NOT_ONE = "a string"
"""


@pytest.mark.parametrize(
    ("arch", "problem"),
    [
        ("no_such_package.nets:NET", "cannot import module 'no_such_package.nets' (ModuleNotFoundError"),
        ("raises_on_import:NET", "cannot import module 'raises_on_import' (RuntimeError: boom)"),
        ("examples.gated_mlp:NOPE", "module 'examples.gated_mlp' has no attribute 'NOPE'"),
        ("broken_arch:NOT_ONE", "expected a sweep.nets.Architecture, got str"),
        ("broken_arch:WIDENS", "block must return a state of the shapes and dtypes it was given"),
        ("resnet9", "unknown architecture 'resnet9'; choose from ["),
    ],
)
def test_a_bad_architecture_is_one_config_error_line_and_nothing_is_written(
    tmp_path, monkeypatch, arch, problem
):
    from sweep.cli import main
    from sweep.config import ConfigError

    (tmp_path / "broken_arch.py").write_text(BROKEN_MODULE)
    (tmp_path / "raises_on_import.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    experiment = tmp_path / "mine.toml"
    experiment.write_text(f'[model]\narch = "{arch}"\nwidth = 8\ndepth = 2\n')
    with pytest.raises(ConfigError) as error:
        engine.run(experiment)
    message = str(error.value)
    assert message.startswith(f"{experiment}: model.arch: ") and problem in message and "\n" not in message
    out = tmp_path / "run"
    assert main(["run", str(experiment), "--out", str(out), "--quiet"]) == 2
    assert not out.exists()


@pytest.mark.slow
def test_the_worked_example_runs_with_its_one_command_and_draws_figures(tmp_path, monkeypatch):
    """docs/custom_architectures.md's command, at the example's tiny scale, from the repository root."""
    from pathlib import Path

    from sweep.cli import main

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "custom_architectures.md").read_text()
    assert "sweep run examples/gated.toml --out runs/gated" in doc
    monkeypatch.chdir(root)
    out = tmp_path / "gated"
    assert main(["run", "examples/gated.toml", "--scale", "tiny", "--out", str(out), "--quiet"]) == 0
    assert {p.name for p in (out / "figures").glob("*.png")} >= {"gradient_norms.png", "training_curves.png"}
    from sweep import load

    results = load(out)
    assert "q_star" not in results  # no theory: no mean-field predictions beside the data
    assert results["grad_norm"].sizes["layer"] == 6 + 2
