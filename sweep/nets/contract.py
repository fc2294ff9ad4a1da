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

Architectures are registered by name (``register_architecture``); an experiment file may also name one
as ``"package.module:attribute"``, imported when the file is validated (``resolve``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
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

    def option(self, name: str) -> Any:
        return dict(self.options)[name]

    @cached_property
    def phi(self) -> Callable:
        from sweep.nets.activations import get_activation

        return get_activation(self.activation)


class Architecture(NamedTuple):
    """One architecture family, written for ONE variant (``sweep.runner.train`` vmaps it).

    Required:
      init(key, dynamic, spec) -> (params, state): ``dynamic`` maps each of ``SHARED_DYNAMIC`` and
        ``dynamic_fields`` to a scalar (a traced value: one compile serves every value).
      embed(params_e, state_e, x [B, d], spec) -> (s^1, state_e, tap^1)
      block(params_l, state_l, s^l, spec) -> (s^{l+1}, state_l, tap^{l+1})
      readout(params_r, state_r, s^L, spec) -> (logits [B, C], state_r)
      n_blocks(spec) -> int: length of the stacked depth axis.
    Optional:
      static_fields / dynamic_fields: the ``model.*`` config fields it reads beyond width, depth, init,
        activation (static: into ``spec.options``; dynamic: vmapped, into ``dynamic``).
      theory: the mean-field family it follows ("mlp") or None (no predictions).
      exact_jacobian(params, state, x_row [d], spec) -> log10 singular values [n]: a faster route to the
        numbers ``sweep.nets.block_jacobian.exact_log10_sv`` gives (or the Jacobian the entry documents).
        The generic routes differentiate ``block`` forward (``jax.linearize``): a block written with
        ``jax.custom_vjp`` (the MLP's) needs both Jacobian routes of its own.
      matrix_free_jacobian(params, state, x_row, spec, k, n_iter, key) -> (top [k], bottom [k], mean_sq).
      kept_per_unit(spec) -> float: values the backward pass keeps per unit of ``s`` and row (memory).
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
    theory: str | None = None
    exact_jacobian: Callable | None = None
    matrix_free_jacobian: Callable | None = None
    kept_per_unit: Callable[[Spec], float] | None = None
    batch_statistics: Callable[[Spec], bool] | None = None


def uses_batch_statistics(arch: Architecture, spec: Spec) -> bool:
    """``arch.batch_statistics(spec)``, False where the entry does not say."""
    return arch.batch_statistics is not None and bool(arch.batch_statistics(spec))


def spec_from_config(model: Any, input_dim: int, n_classes: int) -> Spec:
    """The network of a ``[model]`` config section (``sweep.config.ModelConfig``) on data of
    ``input_dim`` features and ``n_classes`` classes; the architecture's static fields go into
    ``Spec.options``."""
    options = tuple((name, getattr(model, name)) for name in resolve(model.arch).static_fields)
    return Spec(
        model.arch, model.activation, input_dim, model.width, model.depth, n_classes, model.init, options
    )


REQUIRED = ("init", "embed", "block", "readout", "n_blocks")
# imported on first use (sweep.nets.mlp imports sweep.config)
_BUILT_IN = {"mlp": "sweep.nets.mlp:MLP", "resnet": "sweep.nets.resnet:RESNET"}
_REGISTRY: dict[str, Architecture] = {}


class ArchitectureError(ValueError):
    """A name that is no architecture, or an object that does not satisfy the contract (one line)."""


def contract_problem(arch: object, fields: Mapping[str, bool] | None = None) -> str | None:
    """What keeps ``arch`` from satisfying the contract, or None. ``fields``: config field name ->
    static?, to check ``static_fields``/``dynamic_fields`` against (``model.*`` names without prefix)."""
    if not isinstance(arch, Architecture):
        return f"expected a sweep.nets.Architecture, got {type(arch).__name__}"
    for name in REQUIRED:
        if not callable(getattr(arch, name)):
            return f"{name} must be a function, got {getattr(arch, name)!r}"
    for name in ("exact_jacobian", "matrix_free_jacobian", "kept_per_unit", "batch_statistics"):
        value = getattr(arch, name)
        if value is not None and not callable(value):
            return f"{name} must be a function or None, got {value!r}"
    if fields is not None:
        for kind, names, static in (
            ("static", arch.static_fields, True),
            ("dynamic", arch.dynamic_fields, False),
        ):
            for name in names:
                if name not in fields:
                    return f"{kind}_fields names model.{name}, which is no field of [model]"
                if fields[name] is not static:
                    actual = "static" if fields[name] else "dynamic"
                    return f"{kind}_fields names model.{name}, which is {actual}"
    return None


def shape_problem(arch: Architecture) -> str | None:
    """What a tiny network of ``arch`` gets wrong in its shapes (``jax.eval_shape``: nothing runs), or
    None: init's ``(params, state)`` with the three parts, the blocks stacked ``n_blocks`` deep, a block
    that keeps its state's shapes, logits [B, C]."""
    import jax
    import jax.numpy as jnp

    from sweep.config import ModelConfig

    options = tuple((name, getattr(ModelConfig(), name)) for name in arch.static_fields)
    spec = Spec("check", "tanh", 3, 4, 2, 2, "gaussian", options)
    dynamic = {name: jnp.float32(1.0) for name in (*SHARED_DYNAMIC, *arch.dynamic_fields)}
    step = "init"
    try:
        out = jax.eval_shape(lambda key: arch.init(key, dynamic, spec), jax.random.key(0))
        if not (isinstance(out, tuple) and len(out) == 2):
            return "init must return (params, state)"
        for name, tree in zip(("params", "state"), out, strict=True):
            if not isinstance(tree, dict) or set(tree) != set(BLOCK_PARTS):
                return f"init's {name} must be a dict with the parts {list(BLOCK_PARTS)}"
        params, state = out
        n = arch.n_blocks(spec)
        for leaf in jax.tree.leaves((params["blocks"], state["blocks"])):
            if leaf.ndim == 0 or leaf.shape[0] != n:
                return (
                    f"every leaf of the blocks' params and state needs a leading depth axis of n_blocks = {n}"
                )
        step = "embed"
        x = jax.ShapeDtypeStruct((5, spec.input_dim), jnp.float32)
        s, _, _ = jax.eval_shape(
            lambda p, st, x: arch.embed(p["embed"], st["embed"], x, spec), params, state, x
        )
        step = "block"
        one = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype), (params["blocks"], state["blocks"])
        )
        s_next = jax.eval_shape(lambda b, s: arch.block(*b, s, spec)[0], one, s)
        if jax.tree.structure(s_next) != jax.tree.structure(s) or any(
            a.shape != b.shape or a.dtype != b.dtype
            for a, b in zip(jax.tree.leaves(s_next), jax.tree.leaves(s), strict=True)
        ):
            return "block must return a state of the shapes and dtypes it was given"
        step = "readout"
        logits, _ = jax.eval_shape(
            lambda p, st, s: arch.readout(p["readout"], st["readout"], s, spec), params, state, s
        )
        if logits.shape != (5, spec.n_classes):
            return f"readout must return logits [batch, n_classes], got {list(logits.shape)} for [5, 2]"
    except Exception as error:  # the user's code failed on a tiny network: say where, in one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"{step} fails on a tiny network (width 4, depth 2): {type(error).__name__}: {first}"
    return None


def _model_fields() -> dict[str, bool]:
    from sweep.config import FIELDS

    return {f.split(".")[1]: spec.static for f, spec in FIELDS.items() if f.startswith("model.")}


def register_architecture(name: str, arch: Architecture) -> Architecture:
    """Make ``arch`` available as ``model.arch = name`` (ArchitectureError if it breaks the contract)."""
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
        raise ArchitectureError(f"an architecture name is letters, digits and _, got {name!r}")
    problem = contract_problem(arch, _model_fields()) or shape_problem(arch)
    if problem:
        raise ArchitectureError(f"architecture {name!r}: {problem}")
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
    problem = contract_problem(arch, _model_fields()) or shape_problem(arch)
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
