"""The fields of an experiment: one frozen dataclass per section, ``FIELDS`` (each ``section.key``'s
type, check and whether it is static), the validators and the name lists. Parsing a file into an
``Experiment`` is ``sweep.config.experiment``.

Mixed weight scales (``[model]``; the scales multiply the standard weights, ``W = sigma_w * s * unit
draw``, so an entry at scale s has variance ``sigma_w2 s^2 / fan_in``; biases are never scaled):

    mix = "units"          # "none" (default) | "units": unit j's incoming weights all at its unit's scale
                           #   (the first round(f N) units of a layer at scale a, the rest at b)
                           # | "entries": entry (i, j) at scale a iff (i + j) mod M < round(f M),
                           #   M = min(fan_in, fan_out): every row and column holds the fraction f
    mix_scale_a = 0.5      # dynamic (vmapped: one compile serves every value), default 1
    mix_scale_b = 1.5      # dynamic, default 1
    mix_fraction = 0.5     # fraction f at scale a, in [0, 1]; dynamic, default 0.5
    layer_scales = "0.5 1.5"   # a pattern of per-layer scales repeated over layers 1..L (static);
                               # default "1". Sweep patterns as a list of strings: ["1", "0.5 1.5"]

Both apply to layers 1..L (every layer whose outputs are hidden units, the input layer included), never
to the readout L+1; they combine (``s = layer scale * mix scale``). ``mix_scale_a/b`` and
``mix_fraction`` need ``mix = "units"`` or ``"entries"``. Defaults give the unmixed network exactly.

Residual networks (``arch = "resnet"``, ``sweep.nets.resnet``; ``depth`` counts blocks
``x + a F(x)``): ``branch = "full"`` (``W2 phi(W1 x + b1) + b2``, default) or ``"reduced"``
(``phi(W x + b)``); ``branch_scale`` = alpha (dynamic, default 1); ``branch_scaling = "none"`` or
``"inv_sqrt_depth"`` (a = alpha / sqrt(depth)); ``branch_gain = "fixed"`` or ``"learned"`` (a scalar
per block, starting at alpha: 0 is SkipInit / ReZero). A field only some architectures read (these, the
mixed scales) may leave its default only where the architecture reads it.

Normalisation (``norm``, MLP and residual branches; ``sweep.nets.normalisation``): ``"none"``
(default), ``"layer"`` or ``"batch"``, applied to the pre-activations, ``phi(N(W x + b))``. Batch norm
couples the rows of a batch: its gradients and forward signal are measured in minibatches of
``train.batch_size`` rows, and it has no per-example Jacobian (``measure.jacobian`` is refused).

The architecture (``[model] arch``) is ``"mlp"``, ``"resnet"``, another registered name
(``sweep.register_architecture``) or your own as ``"package.module:attribute"``, imported (from the
installed packages or the current directory) when the file is validated; see
docs/custom_architectures.md. Such an architecture may add ``[model]`` fields of its own
(``sweep.nets.NewField``): a config holds them in ``ModelConfig.extra`` and reads and writes them by name
like the built-in ones (``Config.get``, ``Config.replace``, ``Config.as_dict``); ``experiment_fields``
is ``FIELDS`` with the new fields of a grid's architectures.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sweep.nets.activations import ACTIVATIONS
from sweep.nets.conv_init import KERNEL_ONLY_INITIALISERS
from sweep.nets.initialisers import INITIALISERS
from sweep.nets.normalisation import NORMS

OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
DATASETS = ("mnist1d", "gaussian_mixture", "synthetic_images", "mnist", "fashion_mnist", "cifar10")


class ConfigError(ValueError):
    """A bad experiment file or override; the message is one line naming the source and the field."""


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "mlp"
    activation: str = "tanh"
    width: int = 64
    depth: int = 10
    init: str = "gaussian"
    sigma_w2: float = 1.76
    sigma_b2: float = 0.05
    mix: str = "none"  # mixed weight scales within a layer: none | units | entries (see the docstring)
    mix_scale_a: float = 1.0
    mix_scale_b: float = 1.0
    mix_fraction: float = 0.5  # fraction of units (or entries) at mix_scale_a
    layer_scales: str = "1"  # per-layer scales, a pattern repeated over layers 1..L
    branch: str = "full"  # resnet: full W2 phi(W1 x + b1) + b2 | reduced phi(W x + b)
    branch_scale: float = 1.0  # resnet: alpha in x + alpha F(x) (dynamic)
    branch_scaling: str = "none"  # resnet: none | inv_sqrt_depth (alpha / sqrt(L))
    branch_gain: str = "fixed"  # resnet: fixed | learned (a scalar gain per block, starting at alpha)
    norm: str = "none"  # none | layer | batch: phi(N(W x + b)) (mlp; resnet branches)
    # an architecture's own fields (sweep.nets.NewField) as (name, value) pairs, in declaration order
    extra: tuple[tuple[str, Any], ...] = ()

    def get(self, name: str) -> Any:
        """A field's value by name: a built-in one, or an architecture's new field (its default where
        this config does not hold it); KeyError if ``name`` is neither."""
        if name in MODEL_KEYS:
            return getattr(self, name)
        for key, value in self.extra:
            if key == name:
                return value
        declared = new_field(f"model.{name}")
        if declared is None:
            raise KeyError(f"model.{name}")
        return declared.default


@dataclass(frozen=True)
class DataConfig:
    name: str = "mnist1d"
    n_train: int = 4000
    n_test: int = 1000
    path: str = ""
    input_dim: int = 40
    n_classes: int = 10


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    steps: int = 300
    batch_size: int = 64
    seed: int = 0


@dataclass(frozen=True)
class MeasureConfig:
    every: int = 25
    n_eval: int = 512
    trained_accuracy: float = 0.5  # "trained" = final training accuracy above this (phase diagrams)
    xi_multiple: float = 6.0  # theory overlay: trainable while depth <= xi_multiple * xi_c
    jacobian: bool = False  # record singular values of the input-output Jacobian
    jacobian_inputs: int = 1  # at this many inputs (the first training examples)
    jacobian_every: int = 0  # at step 0, the last step and every k steps (0: only those two)
    jacobian_mode: str = "auto"  # exact | matrix_free | auto (matrix-free above width 1024)
    jacobian_k: int = 16  # matrix-free: this many largest and smallest singular values


@dataclass(frozen=True)
class Config:
    """One fully resolved network variant (or the base of an experiment)."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    measure: MeasureConfig = MeasureConfig()

    def get(self, field: str) -> Any:
        section, key = field.split(".")
        if section == "model":
            return self.model.get(key)
        return getattr(getattr(self, section), key)

    def replace(self, values: Mapping[str, Any]) -> Config:
        """A copy with ``{"section.key": value}`` replaced (an architecture's new field included)."""
        sections = {name: getattr(self, name) for name in SECTIONS}
        extra = dict(self.model.extra)
        for field, value in values.items():
            section, key = field.split(".")
            if section == "model" and key not in MODEL_KEYS:
                if new_field(field) is None:
                    raise TypeError(f"{field} is no field of [model] nor a registered architecture's")
                extra[key] = value
            else:
                sections[section] = dataclasses.replace(sections[section], **{key: value})
        if extra != dict(self.model.extra):
            sections["model"] = dataclasses.replace(sections["model"], extra=tuple(extra.items()))
        return Config(**sections)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """The sections as plain dicts; an architecture's new fields appear in ``model`` by name."""
        out = dataclasses.asdict(self)
        out["model"] |= dict(out["model"].pop("extra"))
        return out


OVERRIDE_TABLES = ("scales", "runs")  # named lists of --set strings, see experiment_from_dict

SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "measure": MeasureConfig,
}


# ---------------------------------------------------------------------------------------------- fields
@dataclass(frozen=True)
class Field:
    """How one ``section.key`` is typed and checked, and whether it changes shapes/code (static).
    ``default`` and ``doc`` are set for an architecture's new fields (``new_field``)."""

    kind: type  # bool, int, float or str
    static: bool
    check: Callable[[Any], str | None] = lambda value: None  # returns a problem or None
    default: Any = None
    doc: str = ""


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be positive, got {value}"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be non-negative, got {value}"


def _unit_interval(value: float) -> str | None:
    return None if 0 <= value < 1 else f"must lie in [0, 1), got {value}"


MIXES = ("none", "units", "entries")
MIX_FIELDS = ("model.mix_scale_a", "model.mix_scale_b", "model.mix_fraction")
BRANCH_FIELDS = ("model.branch", "model.branch_scale", "model.branch_scaling", "model.branch_gain")
ADDED_FIELDS = (
    "model.mix",
    *MIX_FIELDS,
    "model.layer_scales",
    *BRANCH_FIELDS,
    "model.norm",
)  # see Experiment.fingerprint


def parse_layer_scales(text: str) -> tuple[float, ...]:
    """``"0.5 1.5"`` -> (0.5, 1.5): the per-layer scale pattern (ValueError if it is not one)."""
    scales = tuple(float(word) for word in text.replace(",", " ").split())
    if not scales or not all(math.isfinite(s) and s >= 0 for s in scales):
        raise ValueError(text)
    return scales


def _layer_scales(value: str) -> str | None:
    try:
        parse_layer_scales(value)
    except ValueError:
        return f'expected non-negative numbers separated by spaces, e.g. "0.5 1.5", got {value!r}'
    return None


def _fraction(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must lie in [0, 1], got {value}"


def _choice(choices: Iterable[str]) -> Callable[[str], str | None]:
    options = tuple(choices)
    return lambda value: None if value in options else f"unknown value {value!r}; choose from {list(options)}"


def _architecture(value: str) -> str | None:
    """A registered architecture or ``"package.module:attribute"`` (imported now: sweep.nets.contract)."""
    from sweep.nets.contract import check_arch

    return check_arch(value)


FIELDS: dict[str, Field] = {
    "model.arch": Field(str, True, _architecture),
    "model.activation": Field(str, True, _choice(ACTIVATIONS)),
    "model.width": Field(int, True, _positive),
    "model.depth": Field(int, True, _positive),
    "model.init": Field(str, True, _choice((*INITIALISERS, *KERNEL_ONLY_INITIALISERS))),
    "model.sigma_w2": Field(float, False, _non_negative),
    "model.sigma_b2": Field(float, False, _non_negative),
    "model.mix": Field(str, True, _choice(MIXES)),
    "model.mix_scale_a": Field(float, False, _non_negative),
    "model.mix_scale_b": Field(float, False, _non_negative),
    "model.mix_fraction": Field(float, False, _fraction),
    "model.layer_scales": Field(str, True, _layer_scales),
    "model.branch": Field(str, True, _choice(("full", "reduced"))),
    "model.branch_scale": Field(float, False, _non_negative),
    "model.branch_scaling": Field(str, True, _choice(("none", "inv_sqrt_depth"))),
    "model.branch_gain": Field(str, True, _choice(("fixed", "learned"))),
    "model.norm": Field(str, True, _choice(NORMS)),
    "data.name": Field(str, True, _choice(DATASETS)),
    "data.n_train": Field(int, True, _positive),
    "data.n_test": Field(int, True, _positive),
    "data.path": Field(str, True),
    "data.input_dim": Field(int, True, _positive),
    "data.n_classes": Field(int, True, lambda v: None if v >= 2 else f"must be at least 2, got {v}"),
    "train.optimizer": Field(str, True, _choice(OPTIMIZERS)),
    "train.learning_rate": Field(float, False, _positive),
    "train.momentum": Field(float, False, _unit_interval),
    "train.steps": Field(int, True, _non_negative),
    "train.batch_size": Field(int, True, _positive),
    "train.seed": Field(int, False, _non_negative),
    "measure.every": Field(int, True, _positive),
    "measure.n_eval": Field(int, True, _positive),
    "measure.trained_accuracy": Field(
        float, True, lambda v: None if 0 <= v <= 1 else f"must lie in [0, 1], got {v}"
    ),
    "measure.xi_multiple": Field(float, True, _positive),
    "measure.jacobian": Field(bool, True),
    "measure.jacobian_inputs": Field(int, True, _positive),
    "measure.jacobian_every": Field(int, True, _non_negative),
    "measure.jacobian_mode": Field(str, True, _choice(("auto", "exact", "matrix_free"))),
    "measure.jacobian_k": Field(int, True, _positive),
}
STATIC_FIELDS = tuple(f for f, spec in FIELDS.items() if spec.static)
DYNAMIC_FIELDS = tuple(f for f, spec in FIELDS.items() if not spec.static)
MODEL_KEYS = frozenset(f.name for f in dataclasses.fields(ModelConfig)) - {"extra"}


# ----------------------------------------------------------------------- an architecture's new fields
def _as_field(declared: Any, checks: Iterable[Callable[[Any], str | None]] = ()) -> Field:
    """A ``sweep.nets.NewField`` as a config ``Field`` checked by ``checks`` (default: its own check)."""
    checks = tuple(checks) or ((declared.check,) if declared.check is not None else ())

    def check(value: Any) -> str | None:
        return next((problem for c in checks if (problem := c(value))), None)

    return Field(declared.type, declared.static, check, declared.default, declared.doc)


def new_field(field: str) -> Field | None:
    """``model.<name>`` as a registered architecture declares it (``sweep.nets.NewField``), or None
    (a built-in field, another section's, or no architecture registered in this process declares it)."""
    section, _, key = field.partition(".")
    if section != "model" or key in MODEL_KEYS:
        return None
    from sweep.nets.contract import new_field as declaration

    declared = declaration(key)
    return None if declared is None else _as_field(declared)


def experiment_fields(archs: Iterable[Any]) -> dict[str, Field]:
    """``FIELDS`` plus the new fields of the architectures ``archs`` (``sweep.nets.Architecture``s),
    inserted after the built-in ``[model]`` fields in declaration order: the fields of an experiment
    whose grid holds ``archs``. A field several of them declare (alike) runs every one's check."""
    declared: dict[str, Any] = {}
    checks: dict[str, list[Callable[[Any], str | None]]] = {}
    for arch in archs:
        for entry in arch.new_fields:
            declared.setdefault(entry.name, entry)
            if entry.check is not None and entry.check not in checks.setdefault(entry.name, []):
                checks[entry.name].append(entry.check)
    if not declared:
        return FIELDS
    new = {f"model.{name}": _as_field(entry, checks[name]) for name, entry in declared.items()}
    model = {f: spec for f, spec in FIELDS.items() if f.startswith("model.")}
    return model | new | {f: spec for f, spec in FIELDS.items() if not f.startswith("model.")}


def config_fields(config: Config) -> tuple[str, ...]:
    """Every field ``config`` holds: ``FIELDS`` and its architecture's new fields (after ``[model]``'s)."""
    new = tuple(f"model.{name}" for name, _ in config.model.extra)
    if not new:
        return tuple(FIELDS)
    model = tuple(f for f in FIELDS if f.startswith("model."))
    return (*model, *new, *(f for f in FIELDS if not f.startswith("model.")))


def field_spec(field: str) -> Field:
    """A field's ``Field``: ``FIELDS[field]`` or a registered architecture's new field (KeyError if none)."""
    spec = FIELDS.get(field) or new_field(field)
    if spec is None:
        raise KeyError(field)
    return spec


def static_fields(config: Config) -> tuple[str, ...]:
    """``STATIC_FIELDS`` and the static new fields ``config`` holds: equal within a group."""
    if not config.model.extra:
        return STATIC_FIELDS
    return tuple(f for f in config_fields(config) if field_spec(f).static)


def dynamic_fields(config: Config) -> tuple[str, ...]:
    """``DYNAMIC_FIELDS`` and the dynamic new fields ``config`` holds: the vmapped values."""
    if not config.model.extra:
        return DYNAMIC_FIELDS
    return tuple(f for f in config_fields(config) if not field_spec(f).static)


def axis_name(field: str) -> str:
    """The results dimension of a swept field: its last component (``model.sigma_w2`` -> ``sigma_w2``)."""
    return field.split(".")[1]
