"""The network contract: an architecture is a record of pure functions written for ONE variant.

In the spirit of optax's ``GradientTransformation``: no classes to subclass, no state hidden in objects.
The engine (``sweep.nets.forward``) assembles every network the same way::

    s^1, st, tap^1   = embed(params["embed"], state["embed"], x, spec)       # x [B, input_dim]
    s^{l+1}, st, tap = block(params["blocks"][l], state["blocks"][l], s^l, spec)   # lax.scan over l
    logits, st       = readout(params["readout"], state["readout"], s^L, spec)  # [B, n_classes]

``s`` is the state the blocks carry ([B, ...] for a batch of B rows); each ``tap`` is the [B, ...] value
whose per-unit mean square is q^l and whose input-pair correlations are c^l (the block's
pre-activation); the logits are the last layer's tap. ``params`` and ``state`` are dicts with the parts
``"embed"``, ``"blocks"`` (every leaf stacked on a leading depth axis of ``n_blocks(spec)``) and
``"readout"``; ``state`` holds non-trained values (e.g. running statistics; ``{}`` parts where there are
none) and is carried per variant through training. A weight matrix is any parameter leaf with at least
two axes (per block): the gradient norms have one entry per part and block, 1 + n_blocks + 1 layers.

From these alone the engine trains, measures gradient norms, q^l and c^l, Jacobian spectra of the block
stack (``sweep.nets.block_jacobian``: ``J = ds^L / ds^1``), memory and CPU pass sizes (``jax.eval_shape``,
``sweep.nets.sizes``) and chunk costs. An entry may add faster paths that give the same numbers (the
MLP's hand-written layer lives in its block; its Jacobian product in ``exact_jacobian``).

An architecture may add ``[model]`` fields of its own (``new_fields``, each a ``NewField``): an
experiment file that names it may set and sweep them like built-in fields. A static one reaches the
functions as ``spec.option(name)`` (a distinct value is a distinct program), a dynamic one as a traced
scalar in ``init``'s ``dynamic`` (vmapped: one program serves every value).

Architectures are registered by name (``register_architecture``); an experiment file may also name one
as ``"package.module:attribute"``, imported when the file is validated (``resolve``).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

BLOCK_PARTS = ("embed", "blocks", "readout")
SHARED_DYNAMIC = ("sigma_w2", "sigma_b2")  # every architecture's init receives these


@dataclass(frozen=True)
class Spec:
    """Static description of one network: one compiled program per distinct Spec.

    ``options`` holds the architecture's own static fields as ``(name, value)`` pairs, values as in the
    experiment file (``Architecture.static_fields``); read them with ``spec.option(name)``. ``training``
    says which of its two forms a network with a train/inference difference computes: the engine trains
    and measures gradients with the spec it is given (True) and takes test accuracy with
    ``dataclasses.replace(spec, training=False)``.
    """

    arch: str
    activation: str
    input_dim: int
    width: int
    depth: int  # model.depth: what it counts is the architecture's (MLP: hidden layers L)
    n_classes: int
    init: str  # a name of sweep.nets.initialisers.INITIALISERS
    options: tuple[tuple[str, Any], ...] = ()
    training: bool = True  # False: the network as used for inference (e.g. batch norm's running statistics)
    input_shape: tuple[int, ...] = ()  # (*positions, channels) of one flat input row; (): (input_dim, 1)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``input_shape``, or ``(input_dim, 1)`` where it is not given: how a row reshapes for
        convolutions (rows are flattened channels last, ``sweep.data.datasets``)."""
        return self.input_shape or (self.input_dim, 1)

    def option(self, name: str) -> Any:
        return dict(self.options)[name]

    @cached_property
    def phi(self) -> Callable:
        from sweep.nets.activations import get_activation

        return get_activation(self.activation)


class NewField(NamedTuple):
    """A ``[model]`` field an architecture adds (``Architecture.new_fields``), set in an experiment file
    as ``model.<name>`` like any built-in field and swept the same way.

    ``type``: float, int, bool or str; ``default``: the value where the file does not set it (the results
    of a file that leaves it there do not depend on the field's existence: same fingerprint); ``static``:
    True for a value that changes shapes or code (read it with ``spec.option(name)``; one program per
    value), False for a number inside the computation (a traced scalar in ``init``'s ``dynamic``; one
    program serves every value; a str field must be static). ``check(value) -> problem or None`` is run
    on every value of the file (after the type check); ``doc`` labels the results axis of a swept field.
    """

    name: str
    type: type
    default: Any
    static: bool
    check: Callable[[Any], str | None] | None = None
    doc: str = ""


NEW_FIELD_TYPES = (float, int, bool, str)
# dtypes of a dynamic new field's vmapped values (a str field is static)
NEW_FIELD_DTYPES = {float: "float32", int: "int32", bool: "bool"}
# names a new field may not take besides the config's: the results' other dimensions and variables,
# predictions included (tests/test_new_fields.py checks this list covers them), and ModelConfig's own
RESERVED_NAMES = (
    "step", "layer", "pair", "sv", "mode", "jacobian_input", "completed", "extra", "get", "mode_power",
    "train_loss", "train_accuracy", "test_accuracy", "grad_norm", "q_layer", "c_layer", "diverged",
    "diverged_step", "jacobian_log10_sv", "jacobian_mean_sq_sv", "jacobian_max_sv", "jacobian_min_sv",
    "jacobian_log10_condition", "jacobian_eig_variance_rel", "q_star", "c_star", "chi_1", "xi_c",
    "grad_norm_theory", "q_layer_theory", "chi_layer", "chi_mean", "q_last_theory", "grad_ratio_theory",
    "grad_growth_theory",
)  # fmt: skip
_NAME = re.compile(r"[a-z][a-z0-9_]*")


class Architecture(NamedTuple):
    """One architecture family, written for ONE variant (``sweep.runner.train`` vmaps it).

    Required:
      init(key, dynamic, spec) -> (params, state): ``dynamic`` maps each of ``SHARED_DYNAMIC``,
        ``dynamic_fields`` and the dynamic ``new_fields`` to a scalar (a traced value: one compile
        serves every value).
      embed(params_e, state_e, x [B, d], spec) -> (s^1, state_e, tap^1)
      block(params_l, state_l, s^l, spec) -> (s^{l+1}, state_l, tap^{l+1})
      readout(params_r, state_r, s^L, spec) -> (logits [B, C], state_r)
      n_blocks(spec) -> int: length of the stacked depth axis.
    Optional:
      static_fields / dynamic_fields: the ``model.*`` config fields it reads beyond width, depth, init,
        activation (static: into ``spec.options``; dynamic: vmapped, into ``dynamic``).
      new_fields: ``NewField``s, the ``[model]`` fields it adds (static ones into ``spec.options`` after
        ``static_fields``; dynamic ones vmapped, into ``dynamic``). A name may not be a config field's
        (of any section: a swept field's results axis is named after it) nor a results dimension or
        variable, and another registered architecture may declare it only alike (type, static, default).
      inits: the ``model.init`` values it accepts (every dense initialiser by default; an architecture
        with convolution kernels adds ``"delta_orthogonal"``).
      theory: the mean-field family it follows ("mlp") or None (no predictions).
      exact_jacobian(params, state, x_row [d], spec) -> log10 singular values [n]: a faster route to the
        numbers ``sweep.nets.block_jacobian.exact_log10_sv`` gives (or the Jacobian the entry documents).
        The generic routes differentiate ``block`` forward (``jax.linearize``): a block written with
        ``jax.custom_vjp`` (the MLP's) needs both Jacobian routes of its own.
      matrix_free_jacobian(params, state, x_row, spec, k, n_iter, key) -> (top [k], bottom [k], mean_sq).
      kept_per_unit(spec) -> float: values the backward pass keeps per unit of ``s`` and row (memory).
      depth_buckets: True if variants of different depths may share one program (``sweep.config.grid``):
        ``init`` then finds the variant's own ``model.depth`` as ``dynamic["depth"]`` (a traced int32,
        at most ``spec.depth``) and must draw, in the first ``n_blocks`` of its own depth, exactly the
        parameters its own program would (``initialisers.unit_draws_at_depth``), and nothing else in the
        network may depend on ``spec.depth`` (a depth factor such as resnet's 1/sqrt(L) is computed
        from ``dynamic["depth"]`` and rides in the state). The engine zeroes the parameters of the
        blocks past the variant's own, runs them as the identity and cuts the outputs back to the
        variant's layers.
      spec_problem(spec) -> str | None: what is wrong with this network that its fields alone do not show
        (it sees the data's ``input_shape``), as ``"model.<field>: <problem>"``, or None. The engine
        refuses such a run in one line before it compiles anything.
      multiply_adds(spec) -> int: multiply-adds of one example's forward pass (chunk costs), where it is
        not the number of weight-matrix entries (a convolution reuses its kernel at every position).
      batch_statistics(spec) -> bool: whether ``spec.training`` normalises with the batch's statistics
        (batch norm: the rows of a batch are coupled). The engine then measures gradients, loss and the
        forward signal in minibatches of ``train.batch_size`` rows of the measurement subset, averaged
        (``sweep.measure.metrics``), and refuses per-example Jacobians.
    """

    init: Callable
    embed: Callable
    block: Callable
    readout: Callable
    n_blocks: Callable[[Spec], int]
    static_fields: tuple[str, ...] = ()
    dynamic_fields: tuple[str, ...] = ()
    new_fields: tuple[NewField, ...] = ()
    inits: tuple[str, ...] = ("gaussian", "orthogonal")
    theory: str | None = None
    exact_jacobian: Callable | None = None
    matrix_free_jacobian: Callable | None = None
    kept_per_unit: Callable[[Spec], float] | None = None
    batch_statistics: Callable[[Spec], bool] | None = None
    multiply_adds: Callable[[Spec], int] | None = None
    spec_problem: Callable[[Spec], str | None] | None = None
    depth_buckets: bool = False


def uses_batch_statistics(arch: Architecture, spec: Spec) -> bool:
    """``arch.batch_statistics(spec)``, False where the entry does not say."""
    return arch.batch_statistics is not None and bool(arch.batch_statistics(spec))


def network_problem(spec: Spec) -> str | None:
    """``Architecture.spec_problem`` of ``spec``'s architecture (None where the entry has none)."""
    arch = resolve(spec.arch)
    return arch.spec_problem(spec) if arch.spec_problem is not None else None


def option_names(arch: Architecture) -> tuple[str, ...]:
    """The names of ``Spec.options``: ``static_fields``, then the static ``new_fields``."""
    return (*arch.static_fields, *(f.name for f in arch.new_fields if f.static))


def dynamic_names(arch: Architecture) -> tuple[str, ...]:
    """The names of ``init``'s ``dynamic``: ``SHARED_DYNAMIC``, ``dynamic_fields``, the dynamic
    ``new_fields``."""
    return (*SHARED_DYNAMIC, *arch.dynamic_fields, *new_dynamic_names(arch))


def new_dynamic_names(arch: Architecture) -> tuple[str, ...]:
    """The dynamic ``new_fields``' names (``sweep.runner.train.Hyper.extra`` carries their values)."""
    return tuple(f.name for f in arch.new_fields if not f.static)


def new_dynamic_defaults(arch: Architecture) -> dict[str, Any]:
    """The dynamic ``new_fields`` at their defaults, as JAX scalars of their dtypes (shape checks)."""
    import jax.numpy as jnp

    return {f.name: jnp.asarray(f.default, NEW_FIELD_DTYPES[f.type]) for f in arch.new_fields if not f.static}


def spec_from_config(model: Any, input_dim: int, n_classes: int, input_shape: tuple[int, ...] = ()) -> Spec:
    """The network of a ``[model]`` config section (``sweep.config.ModelConfig``) on data of
    ``input_dim`` features (one input of ``input_shape``) and ``n_classes`` classes; the architecture's
    static fields (its ``static_fields``, then its static ``new_fields``) go into ``Spec.options``."""
    options = tuple((name, model.get(name)) for name in option_names(resolve(model.arch)))
    return Spec(
        model.arch,
        model.activation,
        input_dim,
        model.width,
        model.depth,
        n_classes,
        model.init,
        options,
        input_shape=tuple(input_shape),
    )


REQUIRED = ("init", "embed", "block", "readout", "n_blocks")
# imported on first use (sweep.nets.mlp imports sweep.config)
_BUILT_IN = {
    "mlp": "sweep.nets.mlp:MLP",
    "resnet": "sweep.nets.resnet:RESNET",
    "cnn": "sweep.nets.cnn:CNN",
    "residual_cnn": "sweep.nets.residual_cnn:RESIDUAL_CNN",
}
_REGISTRY: dict[str, Architecture] = {}


class ArchitectureError(ValueError):
    """A name that is no architecture, or an object that does not satisfy the contract (one line)."""


def new_field(name: str) -> NewField | None:
    """The declaration of the new ``[model]`` field ``name`` (without the ``model.`` prefix) by a
    registered architecture (the first one; any others declare it alike), or None."""
    for arch in _REGISTRY.values():
        for field in arch.new_fields:
            if field.name == name:
                return field
    return None


def declared_by(name: str) -> tuple[str, ...]:
    """The registered architectures that declare the new field ``name``."""
    return tuple(n for n, a in _REGISTRY.items() if any(f.name == name for f in a.new_fields))


def _problem(name: str, arch: object) -> str | None:
    """What keeps ``arch`` (to be named ``name``) from the contract, in one line (``contract_checks``)."""
    from sweep.nets import contract_checks as checks  # it imports this module: on first use

    return (
        checks.contract_problem(arch, checks.model_fields())
        or checks.declaration_problem(name, arch, _REGISTRY)
        or checks.shape_problem(arch)
    )


def _check(name: str, arch: object) -> None:
    """ArchitectureError (one line, naming ``name``) unless ``arch`` satisfies the contract and agrees
    with the registered architectures' new fields."""
    problem = _problem(name, arch)
    if problem:
        raise ArchitectureError(f"architecture {name!r}: {problem}")


def register_architecture(name: str, arch: Architecture) -> Architecture:
    """Make ``arch`` available as ``model.arch = name`` (ArchitectureError if it breaks the contract)."""
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
        raise ArchitectureError(f"an architecture name is letters, digits and _, got {name!r}")
    _check(name, arch)
    _REGISTRY[name] = arch
    return arch


def architecture_names() -> tuple[str, ...]:
    """The registered names, built-in ones first."""
    return tuple(dict.fromkeys([*_BUILT_IN, *_REGISTRY]))


def resolve(name: str) -> Architecture:
    """The architecture ``model.arch = name`` means: a registered name or ``"package.module:attribute"``
    (imported now, checked against the contract, then registered under that string).
    ArchitectureError with one line saying what is wrong."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILT_IN:
        module, attribute = _BUILT_IN[name].split(":")
        _REGISTRY[name] = getattr(importlib.import_module(module), attribute)
        return _REGISTRY[name]
    if ":" not in name:
        raise ArchitectureError(
            f"unknown architecture {name!r}; choose from {list(architecture_names())} "
            "or name your own as 'package.module:attribute'"
        )
    module_name, _, attribute = name.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:  # the console script's path lacks the cwd
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any failure of the user's module: one line, not a traceback
        raise ArchitectureError(
            f"cannot import module {module_name!r} ({type(error).__name__}: {error})"
        ) from None
    if not hasattr(module, attribute):
        raise ArchitectureError(f"module {module_name!r} has no attribute {attribute!r}")
    arch = getattr(module, attribute)
    problem = _problem(name, arch)
    if problem:
        raise ArchitectureError(f"{name}: {problem}")
    _REGISTRY[name] = arch
    return arch


def check_arch(name: str) -> str | None:
    """``model.arch``'s check for sweep.config: the problem in one line, or None. A built-in or
    registered name is not imported here (validating a file stays light); any other is."""
    if name in _BUILT_IN or name in _REGISTRY:
        return None
    try:
        resolve(name)
    except ArchitectureError as error:
        return str(error)
    return None
