"""Training: one jit-compiled program per group, vmapped over variants, ``lax.scan`` over steps.

``train_variant`` trains ONE network from its dynamic values (``Hyper``; an architecture's dynamic new
fields ride in ``Hyper.extra``, by name, into ``init``'s ``dynamic``): it initialises the parameters
from the variant's seed, runs ``spec.steps`` optimizer steps on minibatches drawn from the seed, and
measures at step 0, every ``spec.every`` steps and at the last step. The step loop is an outer
``lax.scan`` over recording intervals around an inner ``fori_loop`` over steps, so the hot loop holds no
measurement code and the program holds one copy of the step and one of the measurement (compile time
does not grow with the number of records). A variant whose loss or parameter update is non-finite is
frozen at its last finite state and flagged ``diverged`` (with the step); its later measurements are
NaN. Nothing it does can change another variant's numbers: vmap keeps variants independent.

``compile_group`` lifts ``train_variant`` with ``jax.vmap`` once, splits the variant axis over all
devices with ``jax.shard_map`` (each device trains its own variants, no communication; on a CPU in
passes of a few variants at a time, ``sweep.runner.passes``), and caches
the compiled program by (spec, chunk size), so a second chunk or run of the same shape never
recompiles.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sweep.config import Config
from sweep.config.grid import record_steps
from sweep.data import Dataset
from sweep.measure.metrics import EvalData, forward_signal, loss_fn, measure
from sweep.measure.spectrum import spectrum_summary, use_matrix_free
from sweep.nets.block_jacobian import exact_log10_sv, matrix_free_log10_sv
from sweep.nets.contract import (
    NEW_FIELD_DTYPES,
    SHARED_DYNAMIC,
    Architecture,
    Spec,
    new_dynamic_names,
    resolve,
    spec_from_config,
)
from sweep.nets.forward import n_layers, sizes
from sweep.runner import depth_buckets
from sweep.runner.devices import variant_mesh
from sweep.runner.passes import in_passes, one_layer_bytes, variants_per_pass
from sweep.storage import program_cache

TRACE_COUNT: Counter[GroupSpec] = Counter()  # how often each program was traced (tests read it)


@dataclass(frozen=True)
class JacobianSpec:
    """When and how to measure the input-output Jacobian's singular values (``[measure] jacobian*``)."""

    inputs: int  # the first `inputs` rows of the measurement subset
    every: int  # at step 0, the last step and every `every` steps (0: only those two)
    matrix_free: bool  # Lanczos top/bottom-k instead of the full spectrum
    k: int

    def n_sv(self, n: int) -> int:
        """Singular values recorded per input, of a Jacobian of size n (the block state's)."""
        return 2 * self.k if self.matrix_free else n

    def n_iter(self, n: int) -> int:
        return min(n, 3 * self.k + 16)


@dataclass(frozen=True)
class GroupSpec:
    """Everything static about a group: one compiled program per distinct spec."""

    model: Spec
    optimizer: str
    batch_size: int
    steps: int
    every: int
    jacobian: JacobianSpec | None = None
    bucketed: bool = False  # variants of several depths (up to model.depth) share this program

    @classmethod
    def from_config(cls, config: Config, dataset: Dataset, bucketed: bool = False) -> GroupSpec:
        t, s = config.train, config.measure
        model = spec_from_config(config.model, dataset.input_dim, dataset.n_classes, dataset.input_shape)
        jacobian = None
        if s.jacobian:
            n = sizes(model).row_state
            matrix_free = s.jacobian_mode == "matrix_free" or (
                s.jacobian_mode == "auto" and use_matrix_free(n)
            )
            inputs = min(s.jacobian_inputs, s.n_eval, config.data.n_train)
            jacobian = JacobianSpec(inputs, s.jacobian_every, matrix_free, min(s.jacobian_k, n))
        return cls(model, t.optimizer, t.batch_size, t.steps, s.every, jacobian, bucketed)

    @property
    def arch(self) -> str:
        return self.model.arch

    @property
    def activation(self) -> str:
        return self.model.activation

    @property
    def n_layers(self) -> int:
        return n_layers(self.model)

    @property
    def jacobian_size(self) -> int:
        """n: the size of the measured Jacobian (n x n), the block state of one input."""
        return sizes(self.model).row_state

    @property
    def record_steps(self) -> np.ndarray:
        return record_steps(self.steps, self.every)

    @property
    def extra_dtypes(self) -> dict[str, str]:
        """The architecture's dynamic new fields (``Hyper.extra``) and their dtypes."""
        arch = resolve(self.model.arch)
        types = {f.name: f.type for f in arch.new_fields}
        return {name: NEW_FIELD_DTYPES[types[name]] for name in new_dynamic_names(arch)}


class Hyper(NamedTuple):
    """The dynamic (vmapped) values of a variant: scalars for one variant, [V] arrays for a chunk.
    ``extra`` holds the architecture's dynamic new fields by name (``{}`` for one without)."""

    sigma_w2: jax.Array
    sigma_b2: jax.Array
    mix_scale_a: jax.Array
    mix_scale_b: jax.Array
    mix_fraction: jax.Array
    branch_scale: jax.Array
    learning_rate: jax.Array
    momentum: jax.Array
    seed: jax.Array
    depth: jax.Array  # int32: the variant's own model.depth (a depth bucket's program masks the rest)
    extra: dict[str, jax.Array] | None = None

    @classmethod
    def of(cls, values: dict[str, Any], extra: tuple[str, ...] = ()) -> Hyper:
        """A Hyper from ``{name: value}`` (``Group.dynamic()``, a chunk's slice of it): the built-in
        fields and, in ``extra``, the named new fields (others, e.g. a field of another architecture
        of the grid, are not this program's)."""
        builtin = {name: values[name] for name in cls._fields if name != "extra"}
        return cls(**builtin, extra={name: values[name] for name in extra})


HYPER_FIELDS = tuple(name for name in Hyper._fields if name != "extra")
HYPER_DTYPES = {"seed": jnp.uint32, "depth": jnp.int32}  # the others: float32


class TrainData(NamedTuple):
    x_train: jax.Array  # [n_train, d]
    y_train: jax.Array  # [n_train]
    eval: EvalData


class TrainState(NamedTuple):
    params: dict
    net_state: dict  # the architecture's non-trained state (sweep.nets.contract), per variant
    opt_state: Any
    diverged: jax.Array  # bool scalar
    diverged_step: jax.Array  # int32 scalar: the step whose update went non-finite, -1 if none


def make_optimizer(kind: str, learning_rate: jax.Array, momentum: jax.Array) -> optax.GradientTransformation:
    """An optax optimizer whose numeric hyperparameters live in its state (one compile for all values)."""
    if kind == "sgd":
        return optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate)
    if kind == "momentum":
        return optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate, momentum=momentum)
    if kind == "adam":
        return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
    if kind == "rmsprop":
        return optax.inject_hyperparams(optax.rmsprop)(learning_rate=learning_rate)
    raise ValueError(f"unknown optimizer {kind!r}")


def _all_finite(tree: Any) -> jax.Array:
    """Whether every element of every leaf is finite, as ONE fused reduction: x * 0 is 0 for finite x
    and NaN for inf or NaN, so the sum is finite exactly when every element is."""
    return jnp.isfinite(sum(jnp.sum(leaf * 0.0) for leaf in jax.tree.leaves(tree)))


def variant_key(seed: jax.Array, stream: jax.Array | int) -> jax.Array:
    """The threefry key ``(stream, seed)``: stream 0 draws the initial parameters, stream t+1 the rows of
    minibatch t. Distinct (stream, seed) pairs are independent streams of a counter-based generator, and
    the key depends on nothing but the seed, so a variant's draws never depend on its grid position,
    chunk or device (common random numbers). Built without hashing: no extra kernels to compile."""
    return jax.random.wrap_key_data(jnp.stack([jnp.asarray(stream, jnp.uint32), seed.astype(jnp.uint32)]))


JACOBIAN_SUMMARIES = ("mean_sq_sv", "max_sv", "min_sv", "log10_condition", "eig_variance_rel")


def jacobian_record(
    spec: GroupSpec,
    arch: Architecture,
    params: dict,
    net_state: dict,
    x_eval: jax.Array,
    seed: jax.Array,
    step: jax.Array,
) -> dict[str, jax.Array]:
    """Singular values of the block stack's Jacobian (``sweep.nets.block_jacobian``, or the entry's own
    route) at the first ``spec.jacobian.inputs`` inputs, when ``step`` is a Jacobian step (else NaN;
    ``lax.cond`` skips the work): ``jacobian_log10_sv`` [inputs, n_sv] and summaries averaged over
    inputs (``jacobian_mean_sq_sv`` etc., log10 where named so)."""
    jac, model = spec.jacobian, spec.model
    due = (step == 0) | (step == spec.steps)
    if jac.every:
        due = due | (step % jac.every == 0)
    exact = arch.exact_jacobian or (lambda *args: exact_log10_sv(arch, *args))
    matrix_free = arch.matrix_free_jacobian or (lambda *args: matrix_free_log10_sv(arch, *args))

    def measure_spectrum(params: dict) -> dict[str, jax.Array]:
        x = x_eval[: jac.inputs]
        if jac.matrix_free:
            keys = jax.vmap(
                lambda i: variant_key(seed, jnp.uint32(2**31) + step.astype(jnp.uint32) * 64 + i)
            )(jnp.arange(jac.inputs, dtype=jnp.uint32))
            n_iter = jac.n_iter(spec.jacobian_size)
            top, bottom, mean_sq = jax.vmap(
                lambda row, key: matrix_free(params, net_state, row, model, jac.k, n_iter, key)
            )(x, keys)
            log10_sv = jnp.concatenate([top, bottom], axis=-1)
            summary = {
                "mean_sq_sv": mean_sq,
                "max_sv": top[:, 0],
                "min_sv": bottom[:, -1],
                "log10_condition": top[:, 0] - bottom[:, -1],
                "eig_variance_rel": jnp.full_like(mean_sq, jnp.nan),  # needs the whole spectrum
            }
        else:
            log10_sv = jax.vmap(lambda row: exact(params, net_state, row, model))(x)
            summary = spectrum_summary(log10_sv)
        out = {f"jacobian_{name}": jnp.mean(summary[name], axis=0) for name in JACOBIAN_SUMMARIES}
        return out | {"jacobian_log10_sv": log10_sv}

    def skip(params: dict) -> dict[str, jax.Array]:
        shapes = jax.eval_shape(measure_spectrum, params)
        return jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes)

    return jax.lax.cond(due, measure_spectrum, skip, params)


def train_variant(spec: GroupSpec, hyper: Hyper, data: TrainData) -> dict[str, jax.Array]:
    """Train and measure one network. Returns per-record arrays ``[R]`` / ``[R, n_layers]``, ``q_layer``
    ``[n_layers]`` at initialisation, ``diverged`` and ``diverged_step`` scalars (R = len(record_steps))."""
    TRACE_COUNT[spec] += 1
    arch, model = resolve(spec.model.arch), spec.model
    dynamic = {name: getattr(hyper, name) for name in (*SHARED_DYNAMIC, *arch.dynamic_fields)}
    dynamic |= {name: (hyper.extra or {})[name] for name in new_dynamic_names(arch)}
    if spec.bucketed:
        dynamic["depth"] = hyper.depth
    params, net_state = arch.init(variant_key(hyper.seed, 0), dynamic, model)
    if spec.bucketed:  # blocks past the variant's own run as the identity (sweep.runner.depth_buckets)
        active = depth_buckets.active_blocks(arch, model, hyper.depth)
        arch, params, net_state = depth_buckets.mask(arch, params, net_state, active)
    optimizer = make_optimizer(spec.optimizer, hyper.learning_rate, hyper.momentum)
    state = TrainState(params, net_state, optimizer.init(params), jnp.array(False), jnp.array(-1, jnp.int32))
    n_train = data.x_train.shape[0]

    def train_step(state: TrainState, step: jax.Array) -> tuple[TrainState, None]:
        rows = jax.random.randint(variant_key(hyper.seed, step + 1), (spec.batch_size,), 0, n_train)
        (loss, net_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.net_state, arch, model, data.x_train[rows], data.y_train[rows]
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        # Judged on the update rather than the new parameters, so that accepting it fuses into applying it.
        finite = jnp.isfinite(loss) & _all_finite(updates)
        accept = finite & ~state.diverged
        params = jax.tree.map(lambda p, u: jnp.where(accept, p + u, p), state.params, updates)
        keep = lambda new, old: jnp.where(accept, new, old)  # noqa: E731
        opt_state = jax.tree.map(keep, opt_state, state.opt_state)
        net_state = jax.tree.map(keep, net_state, state.net_state)
        newly_diverged = ~finite & ~state.diverged
        diverged_step = jnp.where(newly_diverged, step, state.diverged_step)
        return TrainState(params, net_state, opt_state, state.diverged | ~finite, diverged_step), None

    def record(state: TrainState, step: jax.Array) -> dict[str, jax.Array]:
        values = measure(state.params, state.net_state, arch, model, data.eval, spec.batch_size)
        if spec.jacobian is not None:
            values |= jacobian_record(
                spec, arch, state.params, state.net_state, data.eval.x_eval, hyper.seed, step
            )
        return jax.tree.map(lambda v: jnp.where(state.diverged, jnp.nan, v.astype(jnp.float32)), values)

    def interval(state: TrainState, bounds: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        """Steps bounds[0] .. bounds[1]-1 (a dynamic count: one loop serves every interval), then measure."""
        state = jax.lax.fori_loop(bounds[0], bounds[1], lambda step, s: train_step(s, step)[0], state)
        return state, record(state, bounds[1])

    steps = spec.record_steps
    bounds = jnp.asarray(np.stack([np.concatenate([[0], steps[:-1]]), steps], axis=1), jnp.int32)
    state, out = jax.lax.scan(interval, state, bounds)  # the first interval is empty: step 0
    out |= forward_signal(params, net_state, arch, model, data.eval.x_eval, spec.batch_size)
    out["diverged"] = state.diverged
    out["diverged_step"] = state.diverged_step
    return depth_buckets.own_layers(out, active) if spec.bucketed else out


# --------------------------------------------------------------------------------- compiled programs
@dataclass(frozen=True)
class CompiledGroup:
    run: Any  # a compiled callable (Hyper[V], TrainData) -> dict of [V, ...] arrays
    chunk_size: int
    compile_seconds: float
    sharding: NamedSharding
    extra: tuple[str, ...] = ()  # the architecture's dynamic new fields (Hyper.extra)


# The programs of this process, most recently used last, at most MAX_PROGRAMS of them. Each XLA CPU
# executable holds memory mappings of its own (about 160); a process that kept every program it ever
# compiled (a notebook running sweep after sweep, ~400 programs) would pass the kernel's default limit
# of 65,530 mappings, and the next compilation would crash inside XLA. A run works through its groups
# one after another, so an evicted program is one a later run of the same shapes recompiles (or loads
# from the compilation cache).
MAX_PROGRAMS = 32
_COMPILED: OrderedDict[tuple, CompiledGroup] = OrderedDict()


def compile_group(spec: GroupSpec, chunk_size: int, data: TrainData) -> tuple[CompiledGroup, bool]:
    """The compiled program for ``chunk_size`` variants of ``spec``, and whether it was compiled now
    (False: taken from the cache). The program holds the next multiple of the device count (a run
    resumed on more devices keeps its chunk sizes); ``run_chunk`` pads a chunk to it."""
    mesh = variant_mesh()
    key = (spec, chunk_size, jax.tree.map(lambda a: (a.shape, a.dtype), data), mesh.devices.size)
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key], False
    chunk_size = -(-chunk_size // mesh.devices.size) * mesh.devices.size
    by_variant = NamedSharding(mesh, P("variants"))
    # shard_map: each device trains its own variants (vmapped, in passes on a CPU). Nothing is ever gathered,
    # whatever the program holds (per-variant SVDs, Gram-Schmidt, random draws); there is no
    # communication between devices at all.
    per_device = chunk_size // mesh.devices.size
    layer_bytes = one_layer_bytes(spec.model, spec.batch_size)
    per_pass = variants_per_pass(layer_bytes, per_device, mesh.devices.flat[0].platform)

    def train_share(hyper: Hyper, data: TrainData) -> dict[str, jax.Array]:
        """One device's variants, [per_device], in passes of ``per_pass`` (sweep.runner.passes)."""
        return in_passes(lambda h: train_variant(spec, h, data), hyper, per_pass)

    program = jax.jit(
        jax.shard_map(
            train_share,
            mesh=mesh,
            in_specs=(P("variants"), P()),
            out_specs=P("variants"),
            check_vma=False,  # variants never meet: no cross-device values to track in the types
        )
    )
    dtypes = {name: HYPER_DTYPES.get(name, jnp.float32) for name in HYPER_FIELDS} | spec.extra_dtypes
    shapes = {
        name: jax.ShapeDtypeStruct((chunk_size,), dtype, sharding=by_variant)
        for name, dtype in dtypes.items()
    }
    extra = tuple(spec.extra_dtypes)
    start = time.perf_counter()
    devices = list(mesh.devices.flat)
    parts = (repr(spec), chunk_size, per_pass, repr(key[2])) if _all_in_sweep(spec) else None
    compiled = program_cache.load(parts, devices) if parts is not None else None
    if compiled is None:
        build = lambda: program.lower(Hyper.of(shapes, extra), data).compile()  # noqa: E731
        compiled = build() if parts is None else program_cache.compile_and_keep(parts, devices, build)
    _COMPILED[key] = CompiledGroup(compiled, chunk_size, time.perf_counter() - start, by_variant, extra)
    while len(_COMPILED) > MAX_PROGRAMS:
        _COMPILED.popitem(last=False)
    return _COMPILED[key], True


def _all_in_sweep(spec: GroupSpec) -> bool:
    """Whether the program's code is all in the ``sweep`` package (a built-in architecture and
    activation): only such programs are kept whole between processes (``sweep.storage.program_cache``
    digests the package's source, not a user's module)."""
    arch = resolve(spec.model.arch)
    functions = [f for f in arch if callable(f)] + [spec.model.phi]
    return all(getattr(f, "__module__", "").startswith(("sweep.", "jax.")) for f in functions)


def train_data(dataset: Dataset, n_eval: int) -> TrainData:
    """Device arrays of a dataset; the measurement subset is the first ``n_eval`` training rows."""
    n_eval = min(n_eval, len(dataset.x_train))
    return jax.device_put(
        TrainData(
            dataset.x_train,
            dataset.y_train,
            EvalData(dataset.x_train[:n_eval], dataset.y_train[:n_eval], dataset.x_test, dataset.y_test),
        ),
        NamedSharding(variant_mesh(), P()),
    )


def run_chunk(
    compiled: CompiledGroup, hyper: dict[str, np.ndarray], data: TrainData
) -> dict[str, np.ndarray]:
    """Train up to ``compiled.chunk_size`` variants; the chunk is padded by repeating its last variant
    (padding never shows: its outputs are dropped). Returns numpy arrays with leading axis [V]."""
    n = len(hyper["seed"])
    pad = compiled.chunk_size - n
    padded = Hyper.of(
        {k: np.concatenate([v, np.repeat(v[-1:], pad)]) for k, v in hyper.items()}, compiled.extra
    )
    out = compiled.run(jax.device_put(padded, compiled.sharding), data)
    return {k: np.asarray(v)[:n] for k, v in out.items()}
