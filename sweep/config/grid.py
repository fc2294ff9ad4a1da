"""Sweep axes -> variants -> groups of variants that share shapes and code (NumPy only).

A *variant* is one point of the grid: its multi-index into the experiment's axes and its resolved
``Config``. A *group* gathers the variants whose static fields (arch, activation, width, depth, init,
dataset, optimizer kind, batch size, steps, measurement schedule) agree: one compiled program trains a
whole group, vmapping over the dynamic fields (sigma_w2, sigma_b2, learning rate, momentum, seed).
An architecture's own new fields (``sweep.nets.NewField``) take part by their kind: a static one splits
groups, a dynamic one is vmapped.

Depth buckets. Every distinct depth would be its own program, and a program costs seconds to compile
whatever its depth (6-7.6 s on 2 cores). Where the architecture supports it
(``Architecture.depth_buckets``) and no Jacobian is measured, variants that differ only in depth share
the program of their bucket's deepest depth A: a variant of depth L runs the bucket's blocks with those
past its own ``n_blocks(L)`` masked to the identity (``sweep.runner.train``), from exactly the
parameters its own program would draw, and its outputs are cut back to its own layers. A grid of at
most ``BUCKETS`` depths keeps one program per depth (masked work would cost more than the few compiles
it saves); a larger one gets ``BUCKETS`` contiguous depth ranges (more if needed to keep the masked
work, blocks run beyond a variant's own over all blocks run, at most ``MASKED_WORK_LIMIT``), cut to
mask the least work (``choose_buckets``). ``SWEEP_DEPTH_BUCKETS=off``:
one program per depth, as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
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
from sweep.nets.contract import NEW_FIELD_DTYPES, Spec, resolve

MASKED_WORK_LIMIT = 0.25  # at most this fraction of a group's block work may be masked layers
# depths per static set beyond which they share programs (about 6 x 6-7 s of compiling on 2 cores)
BUCKETS = 6


@dataclass(frozen=True)
class Variant:
    index: tuple[int, ...]  # position along each experiment axis
    config: Config


@dataclass(frozen=True)
class Group:
    """Variants sharing one compiled program. ``static`` is their common config (dynamic fields unset)."""

    key: str  # a stable, human-readable name, e.g. "mlp-tanh-w64-d10-gaussian-mnist1d-sgd-b64-s300"
    static: Config  # model.depth: the deepest variant's (a depth bucket's program depth)
    variants: tuple[Variant, ...]

    @property
    def depths(self) -> tuple[int, ...]:
        """The distinct depths of the variants, ascending (one, unless the group is a depth bucket)."""
        return tuple(sorted({v.config.model.depth for v in self.variants}))

    @property
    def bucketed(self) -> bool:
        return len(self.depths) > 1

    def dynamic(self) -> dict[str, np.ndarray]:
        """The vmapped inputs: ``{"sigma_w2": [V] float32, ..., "seed": [V] uint32}``, then the dynamic
        new fields the config holds (float32, int32 or bool, as declared), and ``"depth"`` [V] int32
        (each variant's own model.depth: a depth bucket masks the blocks beyond it)."""
        out = {"depth": np.asarray([v.config.model.depth for v in self.variants], np.int32)}
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


def depth_buckets_on() -> bool:
    return os.environ.get("SWEEP_DEPTH_BUCKETS", "").strip().lower() not in ("off", "0", "false", "no")


def groups(experiment: Experiment, buckets: bool | None = None) -> list[Group]:
    """Partition the grid into groups of equal static fields (depth buckets merged: see the module
    docstring; ``buckets`` None: unless ``SWEEP_DEPTH_BUCKETS=off``), in first-appearance order."""
    buckets = depth_buckets_on() if buckets is None else buckets
    by_static: dict[tuple, list[Variant]] = {}
    for variant in variants(experiment):
        static_values = tuple(
            variant.config.get(field)
            if field != "model.depth" or not (buckets and _bucketable(variant.config))
            else None
            for field in static_fields(variant.config)
        )
        by_static.setdefault(static_values, []).append(variant)
    out = []
    for members in by_static.values():
        counts = Counter(v.config.model.depth for v in members)
        for bucket in choose_buckets(dict(counts), n_blocks_of(members[0].config)):
            inside = tuple(v for v in members if v.config.model.depth in bucket)
            static = static_part(inside[0].config).replace({"model.depth": max(bucket)})
            out.append(Group(group_key(static), static, inside))
    return out


def groups_of_run(experiment: Experiment, keys: Iterable[str]) -> list[Group] | None:
    """The groups a run directory was planned with, given its manifest's group ``keys``: today's plan,
    or one program per depth for a run begun before depth buckets (or with them off); None if neither
    plan has those keys."""
    keys = set(keys)
    for buckets in (None, False):
        plan = groups(experiment, buckets)
        if {g.key for g in plan} == keys:
            return plan
    return None


def _bucketable(config: Config) -> bool:
    """Whether variants of this config may share a depth bucket's program."""
    if config.measure.jacobian:
        return False
    return resolve(config.model.arch).depth_buckets


def n_blocks_of(config: Config) -> Callable[[int], int]:
    """depth -> the architecture's number of blocks (``Architecture.n_blocks``) at that depth."""
    arch = resolve(config.model.arch)
    spec = Spec(config.model.arch, config.model.activation, 1, config.model.width, 1, 2, config.model.init)
    return lambda depth: int(arch.n_blocks(dataclasses.replace(spec, depth=depth)))


def choose_buckets(counts: dict[int, int], n_blocks: Callable[[int], int]) -> list[tuple[int, ...]]:
    """Contiguous buckets of the depths (``counts``: depth -> variants), each run at its deepest depth.

    At most ``BUCKETS`` depths: one program each (nothing masked; compiling a few programs costs less
    than masking). More: ``BUCKETS`` buckets, or more where needed to keep the masked work, sum over
    variants of (bucket blocks - own blocks) over the sum of bucket blocks, at most
    ``MASKED_WORK_LIMIT``; for that many buckets the partition with the least masked work (dynamic
    programming over the sorted depths)."""
    depths = sorted(counts)
    m = len(depths)
    if m <= BUCKETS:
        return [(d,) for d in depths]
    blocks = [n_blocks(d) + 2 for d in depths]  # a variant's work: its blocks, the embed and readout
    own = np.cumsum([0] + [counts[d] * b for d, b in zip(depths, blocks, strict=True)])
    n = np.cumsum([0] + [counts[d] for d in depths])

    def masked(i: int, j: int) -> float:  # depths[i..j] in one bucket, run at depths[j]
        return float((n[j + 1] - n[i]) * blocks[j] - (own[j + 1] - own[i]))

    best = {i: (masked(i, m - 1), [m]) for i in range(m)}  # one bucket from depths[i] to the end
    for k in range(1, m + 1):  # best[i]: the least masked work of k buckets over depths[i:]
        if k > 1:
            best = {
                i: min(
                    (
                        (masked(i, j) + best[j + 1][0], [j + 1, *best[j + 1][1]])
                        for j in range(i, m - 1)
                        if j + 1 in best
                    ),
                    key=lambda option: option[0],
                )
                for i in range(m - k + 1)
            }
        waste, cuts = best[0]
        if k >= BUCKETS and waste <= MASKED_WORK_LIMIT * (float(own[-1]) + waste):
            return [tuple(depths[a:b]) for a, b in itertools.pairwise([0, *cuts])]
    return [(d,) for d in depths]


def masked_work(plan: list[Group]) -> tuple[int, int, float] | None:
    """``(depths, buckets, masked fraction)`` of a plan's depth buckets (blocks run beyond a variant's
    own over all blocks run, as ``choose_buckets`` counts them); None if no group is a bucket."""
    buckets = [g for g in plan if g.bucketed]
    if not buckets:
        return None
    own = run = 0
    for group in buckets:
        n_blocks = n_blocks_of(group.static)
        own += sum(n_blocks(v.config.model.depth) + 2 for v in group.variants)
        run += (n_blocks(group.static.model.depth) + 2) * len(group.variants)
    return len({d for g in buckets for d in g.depths}), len(buckets), (run - own) / run


def record_steps(steps: int, every: int) -> np.ndarray:
    """Steps at which measurements are taken: 0, every, 2*every, ... and always the last step."""
    return np.unique(np.append(np.arange(0, steps + 1, every), steps))
