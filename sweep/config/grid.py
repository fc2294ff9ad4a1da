"""Sweep axes -> variants -> groups of variants that share shapes and code (NumPy only).

A *variant* is one point of the grid: its multi-index into the experiment's axes and its resolved
``Config``. A *group* gathers the variants whose static fields (arch, activation, width, depth, init,
dataset, optimizer kind, batch size, steps, measurement schedule) agree: one compiled program trains a
whole group, vmapping over the dynamic fields (sigma_w2, sigma_b2, learning rate, momentum, seed).
An architecture's own new fields (``sweep.nets.NewField``) take part by their kind: a static one splits
groups, a dynamic one is vmapped.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass

import numpy as np

from sweep.config import (
    STATIC_FIELDS,
    Config,
    Experiment,
    axis_name,
    dynamic_fields,
    field_spec,
    static_fields,
)
from sweep.nets.contract import NEW_FIELD_DTYPES


@dataclass(frozen=True)
class Variant:
    index: tuple[int, ...]  # position along each experiment axis
    config: Config


@dataclass(frozen=True)
class Group:
    """Variants sharing one compiled program. ``static`` is their common config (dynamic fields unset)."""

    key: str  # a stable, human-readable name, e.g. "mlp-tanh-w64-d10-gaussian-mnist1d-sgd-b64-s300"
    static: Config
    variants: tuple[Variant, ...]

    def dynamic(self) -> dict[str, np.ndarray]:
        """The vmapped inputs: ``{"sigma_w2": [V] float32, ..., "seed": [V] uint32}``, then the dynamic
        new fields the config holds (float32, int32 or bool, as declared)."""
        out = {}
        for field in dynamic_fields(self.static):
            name = axis_name(field)
            values = [v.config.get(field) for v in self.variants]
            dtype = np.uint32 if name == "seed" else NEW_FIELD_DTYPES[field_spec(field).kind]
            out[name] = np.asarray(values, dtype)
        return out


def variants(experiment: Experiment) -> list[Variant]:
    """Every grid point in C order over ``experiment.axes`` (a single variant if nothing is swept)."""
    out = []
    for index in itertools.product(*(range(len(axis.values)) for axis in experiment.axes)):
        values = {axis.field: axis.values[i] for axis, i in zip(experiment.axes, index, strict=True)}
        out.append(Variant(index, experiment.base.replace(values)))
    return out


def group_key(config: Config) -> str:
    """A readable, unique name of a group's static fields (a short hash covers the rest)."""
    m, t = config.model, config.train
    arch = re.sub(r"[^A-Za-z0-9_]+", "_", m.arch)  # "package.module:attribute" -> a file-name word
    values = [config.get(f) for f in STATIC_FIELDS]
    # an architecture's static new fields count where they leave their defaults (as in the fingerprint)
    new = [(f, config.get(f)) for f in static_fields(config) if f not in STATIC_FIELDS]
    values += [(f, v) for f, v in new if v != field_spec(f).default]
    digest = hashlib.sha256(repr(values).encode()).hexdigest()[:8]
    return f"{arch}-{m.activation}-w{m.width}-d{m.depth}-{m.init}-{t.optimizer}-b{t.batch_size}-{digest}"


def static_part(config: Config) -> Config:
    """The config with its dynamic fields reset to defaults: equal for variants of one group."""
    default = Config()
    return config.replace({field: default.get(field) for field in dynamic_fields(config)})


def groups(experiment: Experiment) -> list[Group]:
    """Partition the grid into groups of equal static fields, in first-appearance order."""
    by_static: dict[tuple, list[Variant]] = {}
    for variant in variants(experiment):
        static_values = tuple(variant.config.get(field) for field in static_fields(variant.config))
        by_static.setdefault(static_values, []).append(variant)
    out = []
    for members in by_static.values():
        static = static_part(members[0].config)
        out.append(Group(group_key(static), static, tuple(members)))
    return out


def record_steps(steps: int, every: int) -> np.ndarray:
    """Steps at which measurements are taken: 0, every, 2*every, ... and always the last step."""
    return np.unique(np.append(np.arange(0, steps + 1, every), steps))
