"""Experiment files: TOML -> a validated ``Experiment`` (a base ``Config`` plus sweep axes).

An experiment file has the sections ``[model]``, ``[data]``, ``[train]`` and ``[measure]``. Every field
is either fixed (a scalar) or swept:

    sigma_w2 = [1.0, 2.0]                  # a list of values
    sigma_w2 = {linspace = [1, 4, 13]}     # numpy.linspace(a, b, n)
    sigma_w2 = {geomspace = [0.5, 8, 5]}   # numpy.geomspace(a, b, n)
    depth = {range = [10, 101, 10]}        # range(start, stop, step)

Integer fields round ``linspace``/``geomspace`` values to the nearest integer and drop duplicates. The
grid is the product of all swept fields, in the order they appear in ``FIELDS`` (an architecture's own
``[model]`` fields, ``sweep.nets.NewField``, after the built-in ones). Everything is checked before any
JAX code runs; a bad value raises ``ConfigError`` with one line naming the file and the field.

The fields themselves, their types and checks: ``sweep.config.fields``.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sweep.config.fields import (
    ADDED_FIELDS,
    BRANCH_FIELDS,
    FIELDS,
    MIX_FIELDS,
    OVERRIDE_TABLES,
    SECTIONS,
    Config,
    ConfigError,
    Field,
    axis_name,
    experiment_fields,
    new_field,
)


@dataclass(frozen=True)
class Axis:
    field: str  # "model.sigma_w2"
    values: tuple[Any, ...]

    @property
    def name(self) -> str:
        return axis_name(self.field)


@dataclass(frozen=True)
class Experiment:
    """A base config plus the swept axes; the grid is the product of ``axes`` (first axis slowest)."""

    base: Config
    axes: tuple[Axis, ...]
    source: str = "<config>"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(axis.values) for axis in self.axes)

    @property
    def n_variants(self) -> int:
        return math.prod(self.shape)

    def to_toml_dict(self) -> dict[str, dict[str, Any]]:
        """The resolved experiment as TOML-ready sections: swept fields as explicit value lists."""
        sections = self.base.as_dict()
        for axis in self.axes:
            section, key = axis.field.split(".")
            sections[section][key] = list(axis.values)
        return sections

    def fingerprint(self) -> str:
        """A hash of the resolved experiment: equal iff the same variants would be computed.

        Fields added later (``ADDED_FIELDS``, and an architecture's own new fields) count only where
        they differ from their defaults, so the fingerprint of an experiment that does not use them is
        the one it had before they existed (its saved runs still resume)."""
        sections = self.to_toml_dict()
        default = Config()
        new = [f"model.{name}" for name, _ in self.base.model.extra]
        for field in (*ADDED_FIELDS, *new):
            section, key = field.split(".")
            if sections[section][key] == default.get(field):
                del sections[section][key]
        text = json.dumps(sections, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------- parsing
def _fail(source: str, field: str, problem: str) -> ConfigError:
    return ConfigError(f"{source}: {field}: {problem}")


def _scalar(value: Any, spec: Field, source: str, field: str) -> Any:
    """Type-check and convert one scalar value."""
    if spec.kind is str:
        if not isinstance(value, str):
            raise _fail(source, field, f"expected a string, got {value!r}")
    elif spec.kind is bool:
        if not isinstance(value, bool):
            raise _fail(source, field, f"expected true or false, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(source, field, f"expected a number, got {value!r}")
    elif spec.kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise _fail(source, field, f"expected an integer, got {value!r}")
        value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise _fail(source, field, f"expected a finite number, got {value!r}")
    problem = spec.check(value)
    if problem:
        raise _fail(source, field, problem)
    return value


def _range_values(kind: str, args: Any, spec: Field, source: str, field: str) -> list[Any]:
    if not isinstance(args, list) or len(args) != 3 or not all(isinstance(a, int | float) for a in args):
        raise _fail(source, field, f"{{{kind} = [a, b, n]}} needs three numbers, got {args!r}")
    if kind == "range":
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in args) or args[2] == 0:
            raise _fail(
                source, field, f"{{range = [start, stop, step]}} needs integers, step != 0; got {args}"
            )
        return list(range(*args))
    a, b, n = args
    if not isinstance(n, int) or n < 1:
        raise _fail(source, field, f"{{{kind} = [a, b, n]}} needs a positive integer n, got {n!r}")
    if kind == "geomspace" and (a <= 0 or b <= 0):
        raise _fail(source, field, f"{{geomspace = [a, b, n]}} needs positive a and b, got {args}")
    values = (np.linspace if kind == "linspace" else np.geomspace)(a, b, n)
    if spec.kind is int:
        return list(dict.fromkeys(round(v) for v in values))
    # 12 significant digits: linspace's round-off goes, so ``ds.sel(sigma_w2=1.5)`` finds 1.5
    return [float(f"{v:.12g}") for v in values]


def parse_value(raw: Any, field: str, source: str, spec: Field | None = None) -> tuple[Any, ...] | Any:
    """A raw TOML value -> a checked scalar, or a tuple of checked values if it sweeps. ``spec``: the
    field's type and check (default ``FIELDS[field]``; an architecture's new field passes its own)."""
    spec = spec or FIELDS[field]
    if isinstance(raw, dict):
        if len(raw) != 1 or next(iter(raw)) not in ("linspace", "geomspace", "range"):
            raise _fail(
                source, field, f"a table must be one of {{linspace|geomspace|range = [...]}}, got {raw}"
            )
        kind, args = next(iter(raw.items()))
        raw = _range_values(kind, args, spec, source, field)
    elif not isinstance(raw, list):
        return _scalar(raw, spec, source, field)
    if not raw:
        raise _fail(source, field, "the sweep is empty")
    values = tuple(_scalar(v, spec, source, field) for v in raw)
    if len(set(values)) != len(values):
        raise _fail(source, field, f"the sweep repeats a value: {list(values)}")
    return values


def _check_sections(raw: Mapping[str, Any], source: str) -> None:
    """Known sections, each a table, and known keys; a ``[model]`` key may be an architecture's new
    field (checked once the architectures are known: ``_unknown_key``)."""
    for section, body in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{section}]; expected one of {list(SECTIONS)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for key in body:
            if f"{section}.{key}" not in FIELDS and section != "model":
                raise _unknown_key(source, f"{section}.{key}", FIELDS)


def _unknown_key(source: str, field: str, fields: Mapping[str, Field]) -> ConfigError:
    section = field.split(".")[0]
    known = [f.split(".")[1] for f in fields if f.startswith(section + ".")]
    return ConfigError(f"{source}: unknown key {field}; [{section}] accepts {known}")


def parse_override(text: str) -> tuple[str, Any]:
    """``"section.key=value"`` -> (field, raw TOML value); bare words are strings."""
    field, raw = _split_override(text)
    if field not in FIELDS:
        raise ConfigError(f"--set {text!r}: unknown key {field}")
    return field, raw


def _split_override(text: str) -> tuple[str, Any]:
    """``parse_override`` but for the key check: a ``model.*`` key may be an architecture's new field."""
    field, sep, value = text.partition("=")
    field = field.strip()
    if not sep or field.count(".") != 1:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    section = field.split(".")[0]
    if section not in SECTIONS:
        raise ConfigError(f"--set {text!r}: unknown section [{section}]")
    if field not in FIELDS and section != "model":
        raise ConfigError(f"--set {text!r}: unknown key {field}")
    value = value.strip()
    try:
        return field, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        if value and value[0] not in "[{\"'" and all(c.isalnum() or c in "_-./" for c in value):
            return field, value  # a bare word such as relu
        raise ConfigError(f"--set {text!r}: cannot parse the value {value!r} as TOML") from None


def named_overrides(raw: Mapping[str, Any], table: str, name: str | None, source: str) -> list[str]:
    """The ``--set`` strings listed under ``[table] name = [...]`` (``scales`` or ``runs``); [] if no name."""
    if name is None or (table == "scales" and table not in raw):
        return []  # a file without [scales] runs as written at every scale
    options = raw.get(table, {})
    if name not in options:
        raise ConfigError(f"{source}: [{table}] has no entry {name!r}; it has {sorted(options)}")
    entry = options[name]
    if not isinstance(entry, list) or not all(isinstance(text, str) for text in entry):
        raise ConfigError(f"{source}: {table}.{name}: expected a list of 'section.key=value' strings")
    return entry


def experiment_from_dict(
    raw: Mapping[str, Any],
    source: str = "<config>",
    overrides: Iterable[str] = (),
    *,
    scale: str | None = None,
    run: str | None = None,
) -> Experiment:
    """Validate a parsed TOML mapping plus ``--set`` overrides into an ``Experiment``.

    Besides the four sections, a file may name override lists: ``[scales]`` (e.g. ``quick``, ``full``)
    and ``[runs]`` (several related sweeps in one file, e.g. one per activation). They apply in the order
    scale, run, then the command line's ``--set``.

    The ``[model]`` section also accepts the new fields of the grid's architectures
    (``Architecture.new_fields``); the config holds every one of them, at its default where not set.
    """
    body_sections = {k: v for k, v in raw.items() if k not in OVERRIDE_TABLES}
    _check_sections(body_sections, source)
    values: dict[str, tuple[str, Any, str | None]] = {}  # field -> (origin, raw value, --set text)
    candidates = []  # the model.arch values that later overrides replace (_resolve_quietly)
    for section, body in body_sections.items():
        for key, value in body.items():
            values[f"{section}.{key}"] = (source, value, None)
    named = named_overrides(raw, "scales", scale, source) + named_overrides(raw, "runs", run, source)
    for origin, text in [(source, text) for text in named] + [("--set", text) for text in overrides]:
        field, value = _split_override(text)
        if field == "model.arch" and field in values:
            candidates.append(values[field][1])
        values[field] = (origin, value, text)
    fixed: dict[str, Any] = {}
    axes: list[Axis] = []

    def take(field: str, spec: Field) -> None:
        origin, raw_value, _ = values[field]
        parsed = parse_value(raw_value, field, origin, spec)
        if isinstance(parsed, tuple):
            axes.append(Axis(field, parsed))
        else:
            fixed[field] = parsed

    if "model.arch" in values:  # first: the architectures say which further [model] fields exist
        take("model.arch", FIELDS["model.arch"])
    fields = _grid_fields(fixed, axes)
    unknown = [field for field in values if field not in fields]
    if unknown:  # the fields of an architecture that an override replaced (held at its default below)
        _resolve_quietly(candidates)
    for field in unknown:
        origin, raw_value, text = values.pop(field)
        declared = new_field(field)
        at_default = declared is not None and parse_value(raw_value, field, origin, declared) in (
            declared.default,
            (declared.default,),
        )
        if not at_default:
            raise _refused_key(origin, field, text, fields, fixed, axes)
    for field, spec in fields.items():
        if field in values and field != "model.arch":
            take(field, spec)
    new = {field: spec.default for field, spec in fields.items() if field not in FIELDS}
    base = Config().replace(new | fixed)
    _check_jacobian_schedule(base, axes, source)
    _check_mix(base, axes, source)
    _check_architecture_fields(base, axes, source)
    _check_batch_norm_jacobian(base, axes, source)
    return Experiment(base=base, axes=tuple(axes), source=source)


def _grid_archs(fixed: Mapping[str, Any], axes: list[Axis]) -> tuple[str, ...]:
    """The values of model.arch in the grid (parsed and checked already)."""
    for axis in axes:
        if axis.field == "model.arch":
            return axis.values
    return (fixed.get("model.arch", Config().model.arch),)


def _grid_fields(fixed: Mapping[str, Any], axes: list[Axis]) -> dict[str, Field]:
    """The fields of an experiment whose grid holds these architectures: ``FIELDS`` and their new ones."""
    from sweep.nets.contract import resolve

    return experiment_fields(resolve(name) for name in _grid_archs(fixed, axes))


def _resolve_quietly(candidates: list[Any]) -> None:
    """Register the architectures named by ``model.arch`` values that later overrides replaced, where
    they resolve: a file may hold one's new fields, which ``--set model.name=default`` then neutralises
    (as ``--set model.mix_scale_a=1`` does a built-in one another architecture does not read)."""
    from sweep.nets.contract import ArchitectureError, resolve

    for value in candidates:
        for name in value if isinstance(value, list) else [value]:
            if isinstance(name, str):
                try:
                    resolve(name)
                except ArchitectureError:
                    pass  # not in the grid: its problems are not this experiment's


def _refused_key(
    origin: str,
    field: str,
    text: str | None,
    fields: Mapping[str, Field],
    fixed: Mapping[str, Any],
    axes: list[Axis],
) -> ConfigError:
    """The one line for a key the experiment does not accept: a registered architecture's new field
    that none of the grid's declares, or no field at all (as without architectures' new fields)."""
    from sweep.nets.contract import declared_by

    if new_field(field) is not None:
        names = ", ".join(map(repr, sorted(set(_grid_archs(fixed, axes)))))
        owners = ", ".join(map(repr, declared_by(field.split(".")[1])))
        return _fail(origin, field, f"has no effect with model.arch = {names} (a field of {owners})")
    if text is not None:
        return ConfigError(f"--set {text!r}: unknown key {field}")
    return _unknown_key(origin, field, fields)


def _check_mix(base: Config, axes: list[Axis], source: str) -> None:
    """mix_scale_a/b and mix_fraction other than their defaults need a mix that uses them."""
    swept = {axis.field: axis.values for axis in axes}
    if set(swept.get("model.mix", (base.model.mix,))) != {"none"}:
        return
    default = Config()
    for field in MIX_FIELDS:
        if set(swept.get(field, (base.get(field),))) != {default.get(field)}:
            problem = "has no effect while model.mix = 'none'; set it to 'units' or 'entries'"
            raise _fail(source, field, problem)


def _check_architecture_fields(base: Config, axes: list[Axis], source: str) -> None:
    """A field that only some architectures read (their ``static_fields``/``dynamic_fields``) may leave
    its default only where every architecture of the grid reads it."""
    from sweep.nets.contract import ArchitectureError, resolve

    swept = {axis.field: axis.values for axis in axes}
    try:
        archs = [resolve(name) for name in swept.get("model.arch", (base.model.arch,))]
    except ArchitectureError:
        return  # model.arch's own check has said what is wrong
    read = [
        {f"model.{name}" for name in (*a.static_fields, *a.dynamic_fields, *(f.name for f in a.new_fields))}
        for a in archs
    ]
    names = sorted(set(swept.get("model.arch", (base.model.arch,))))
    for init in swept.get("model.init", (base.model.init,)):
        for name, arch in zip(swept.get("model.arch", (base.model.arch,)), archs, strict=True):
            if init not in arch.inits:
                problem = f"{init!r} does not apply to model.arch = {name!r}; it takes {list(arch.inits)}"
                if init == "delta_orthogonal":
                    problem += " (delta_orthogonal needs convolution kernels: model.arch = 'cnn')"
                raise _fail(source, "model.init", problem)
    default = Config()
    new = [f"model.{name}" for name, _ in base.model.extra]  # the grid's architectures' own fields
    for field in [*MIX_FIELDS, "model.mix", "model.layer_scales", *BRANCH_FIELDS, "model.norm", *new]:
        used = set(swept.get(field, (base.get(field),))) != {default.get(field)}
        if used and not all(field in r for r in read):
            raise _fail(source, field, f"has no effect with model.arch = {', '.join(map(repr, names))}")


def _check_batch_norm_jacobian(base: Config, axes: list[Axis], source: str) -> None:
    """A batch-normalised network has no per-example input-output Jacobian: its rows are coupled."""
    swept = {axis.field: axis.values for axis in axes}
    jacobian = any(swept.get("measure.jacobian", (base.measure.jacobian,)))
    if jacobian and "batch" in swept.get("model.norm", (base.model.norm,)):
        problem = (
            "is not measured with model.norm = 'batch' (a row's output depends on the rest of its "
            "batch: there is no per-example Jacobian); use norm = 'layer' or set measure.jacobian = false"
        )
        raise _fail(source, "measure.jacobian", problem)


def _check_jacobian_schedule(base: Config, axes: list[Axis], source: str) -> None:
    """measure.jacobian_every must fall on recorded steps: a multiple of measure.every."""
    swept = {axis.field: axis.values for axis in axes}
    for every in swept.get("measure.every", (base.measure.every,)):
        for jacobian_every in swept.get("measure.jacobian_every", (base.measure.jacobian_every,)):
            if jacobian_every % every:
                raise _fail(
                    source, "measure.jacobian_every", f"must be a multiple of measure.every ({every})"
                )


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse an experiment file (ConfigError if missing or not TOML)."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such experiment file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (an experiment file is TOML in UTF-8)") from None
    except OSError as error:  # a directory, no permission, ...
        raise ConfigError(f"{path}: cannot read the experiment file ({error.strerror})") from None


def load_experiment(
    path: str | Path, overrides: Iterable[str] = (), *, scale: str | None = None, run: str | None = None
) -> Experiment:
    """Read and validate an experiment TOML file (plus a named scale and run, and ``--set`` overrides)."""
    return experiment_from_dict(read_toml(path), str(path), overrides, scale=scale, run=run)
