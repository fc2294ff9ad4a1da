"""What keeps an object from being an architecture of the network contract (``sweep.nets.contract``):
its functions and optional entries, its new ``[model]`` fields (names, types, defaults, collisions with
the config's fields and the results' names, agreement with other registered architectures), and the
shapes a tiny network of it computes (``jax.eval_shape``: nothing runs). Each check returns one line
or None; ``sweep.nets.contract.resolve`` and ``register_architecture`` raise it as ArchitectureError.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from sweep.nets.contract import (
    _NAME,
    BLOCK_PARTS,
    NEW_FIELD_TYPES,
    REQUIRED,
    RESERVED_NAMES,
    SHARED_DYNAMIC,
    Architecture,
    NewField,
    Spec,
    new_dynamic_defaults,
)


def contract_problem(arch: object, fields: Mapping[str, bool] | None = None) -> str | None:
    """What keeps ``arch`` from satisfying the contract, or None. ``fields``: config field name ->
    static?, to check ``static_fields``/``dynamic_fields`` against (``model.*`` names without prefix)."""
    if not isinstance(arch, Architecture):
        return f"expected a sweep.nets.Architecture, got {type(arch).__name__}"
    for name in REQUIRED:
        if not callable(getattr(arch, name)):
            return f"{name} must be a function, got {getattr(arch, name)!r}"
    optional = ("exact_jacobian", "matrix_free_jacobian", "kept_per_unit", "batch_statistics")
    for name in (*optional, "multiply_adds", "spec_problem"):
        value = getattr(arch, name)
        if value is not None and not callable(value):
            return f"{name} must be a function or None, got {value!r}"
    problem = _new_fields_problem(arch, fields)
    if problem:
        return problem
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


def _default_problem(field: NewField) -> str | None:
    """What is wrong with a new field's default (its type, finiteness, its own check), or None."""
    value = field.default
    if field.type is bool:
        ok = isinstance(value, bool)
    elif field.type is str:
        ok = isinstance(value, str)
    elif field.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        return f"default {value!r} is no {field.type.__name__}"
    problem = field.check(value) if field.check is not None else None
    return f"default {value!r} fails its own check: {problem}" if problem else None


def _new_fields_problem(arch: Architecture, fields: Mapping[str, bool] | None) -> str | None:
    """What is wrong with ``arch.new_fields`` on their own and against the config's ``[model]``
    ``fields`` (name -> static?; None: not checked against them), or None."""
    if not isinstance(arch.new_fields, tuple | list):
        return f"new_fields must be a tuple of sweep.nets.NewField, got {arch.new_fields!r}"
    seen: set[str] = set()
    config_names = _config_names() if fields is not None else {}
    for field in arch.new_fields:
        if not isinstance(field, NewField):
            return f"new_fields must hold sweep.nets.NewField entries, got {field!r}"
        if not isinstance(field.name, str) or not _NAME.fullmatch(field.name):
            return f"a new field's name is lower-case letters, digits and _, got {field.name!r}"
        where = f"new field {field.name!r}"
        if field.name in seen:
            return f"{where} is declared twice"
        seen.add(field.name)
        if field.type not in NEW_FIELD_TYPES:
            return f"{where}: type must be one of float, int, bool, str, got {field.type!r}"
        if not isinstance(field.static, bool):
            return f"{where}: static must be True or False, got {field.static!r}"
        if field.type is str and not field.static:
            return f"{where}: a str field must be static (a string cannot be vmapped)"
        if field.check is not None and not callable(field.check):
            return f"{where}: check must be a function or None, got {field.check!r}"
        if not isinstance(field.doc, str):
            return f"{where}: doc must be a string, got {field.doc!r}"
        problem = _default_problem(field)
        if problem:
            return f"{where}: {problem}"
        if field.name in (*arch.static_fields, *arch.dynamic_fields):
            return f"{where} is also named in static_fields/dynamic_fields"
        if field.name in config_names:
            return f"{where} collides with the config field {config_names[field.name]}"
        if field.name in RESERVED_NAMES:
            return f"{where} collides with a name of the results ({field.name})"
    return None


def declaration_problem(name: str, arch: Architecture, registry: Mapping[str, Architecture]) -> str | None:
    """Whether ``arch``'s new fields agree with those of the same names that the other architectures of
    ``registry`` declare (type, static, default), or None."""
    for field in arch.new_fields:
        for other_name, other in registry.items():
            if other_name == name:
                continue
            for theirs in other.new_fields:
                if theirs.name == field.name and _kind(theirs) != _kind(field):
                    return (
                        f"new field {field.name!r} is {_describe(field)} here but {_describe(theirs)} "
                        f"in the registered architecture {other_name!r}; rename one"
                    )
    return None


def _kind(field: NewField) -> tuple:
    return (field.type, field.static, field.default)


def _describe(field: NewField) -> str:
    return f"{field.type.__name__}, {'static' if field.static else 'dynamic'}, default {field.default!r}"


def shape_problem(arch: Architecture) -> str | None:
    """What a tiny network of ``arch`` gets wrong in its shapes (``jax.eval_shape``: nothing runs), or
    None: init's ``(params, state)`` with the three parts, the blocks stacked ``n_blocks`` deep, a block
    that keeps its state's shapes, logits [B, C]."""
    import jax
    import jax.numpy as jnp

    from sweep.config import ModelConfig

    options = tuple((name, getattr(ModelConfig(), name)) for name in arch.static_fields)
    options += tuple((f.name, f.default) for f in arch.new_fields if f.static)
    spec = Spec("check", "tanh", 3, 4, 2, 2, "gaussian", options)
    dynamic = {name: jnp.float32(1.0) for name in (*SHARED_DYNAMIC, *arch.dynamic_fields)}
    dynamic |= new_dynamic_defaults(arch)
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


def model_fields() -> dict[str, bool]:
    from sweep.config import FIELDS

    return {f.split(".")[1]: spec.static for f, spec in FIELDS.items() if f.startswith("model.")}


def _config_names() -> dict[str, str]:
    """Every config field's last component -> the field (a swept field's results axis is named so)."""
    from sweep.config import FIELDS

    return {f.split(".")[1]: f for f in reversed(FIELDS)}
