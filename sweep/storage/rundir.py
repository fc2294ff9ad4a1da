"""Reading a run directory back: assemble saved chunks, merge shards, report status, load results.

A directory written by ``sweep run --out DIR`` (by one process or by many shards) holds
``config.toml``, ``chunks/manifest.json`` and one ``.npz`` per finished chunk; ``results.nc`` appears
once every chunk is there (or after ``sweep merge``). Every chunk read is verified
(``sweep.storage.integrity``): a damaged one is moved into ``chunks/damaged/`` and reported, and counts as
missing until ``--resume`` recomputes it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from sweep.config import ConfigError, Experiment, load_experiment
from sweep.config.grid import groups_of_run
from sweep.measure.predictions import add_predictions
from sweep.runner.chunks import Chunk, plan_chunks
from sweep.storage import integrity, store
from sweep.storage.integrity import DamagedFile, DamagedRun
from sweep.storage.results import Part, assemble


def chunk_identity(chunk: Chunk, fingerprint: str) -> dict[str, Any]:
    """What a chunk file must record to be this run's chunk: experiment, name, group and compiled size."""
    return {"fingerprint": fingerprint, "chunk": chunk.name, "group": chunk.group.key, "size": chunk.size}


@dataclass
class Saved:
    """The chunks found in a run directory: the readable ones, and one line per damaged one (moved aside)."""

    parts: dict[str, Part] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)

    def missing(self, chunks: list[Chunk]) -> int:
        return sum(c.n_variants for c in chunks if c.name not in self.parts)


def read_saved(directory: Path, experiment: Experiment, chunks: list[Chunk], remedy: str) -> Saved:
    """Read and verify every saved chunk of ``chunks``; a damaged one is moved into ``chunks/damaged/``
    and described in one line ending with ``remedy`` (what recomputes it)."""
    fingerprint, saved = experiment.fingerprint(), Saved()
    folder = directory / store.CHUNKS
    present = set(os.listdir(folder)) if folder.is_dir() else set()
    for chunk in chunks:
        path = store.chunk_path(directory, chunk.name)
        if path.name not in present:
            continue
        try:
            seen = path.stat()
            saved.parts[chunk.name] = store.read_chunk(path, chunk_identity(chunk, fingerprint))
        except FileNotFoundError:  # moved or removed meanwhile by another process
            continue
        except DamagedFile as damage:
            try:
                moved = integrity.move_aside(path, seen)
            except OSError as error:  # e.g. a directory this user may read but not change
                saved.damaged.append(f"{damage}; could not move it aside ({error.strerror}); {remedy}")
                continue
            if moved is not None:  # else another process replaced it meanwhile: missing for now
                saved.damaged.append(f"{damage}; moved to {moved}; {remedy}")
    return saved


def collect(
    out_dir: Path, experiment: Experiment, chunks: list[Chunk], attrs: dict[str, Any], remedy: str
) -> tuple[xr.Dataset, int, list[str]]:
    """Assemble every chunk saved in ``out_dir``: the Dataset, the number of missing variants, and one
    line per damaged chunk found (moved aside; it counts as missing)."""
    saved = read_saved(out_dir, experiment, chunks, remedy)
    missing = saved.missing(chunks)
    parts = [saved.parts[c.name] for c in chunks if c.name in saved.parts]
    results = add_predictions(assemble(experiment, parts, attrs | {"missing_variants": missing}))
    return results, missing, saved.damaged


def _resume_hint(directory: Path) -> str:
    return f"`sweep run EXPERIMENT --out {directory} --resume` recomputes it"


def _planned(directory: Path) -> tuple[Experiment, dict[str, Any], list[Chunk]]:
    """The experiment, manifest and chunks of a run directory; DamagedFile if one of them is damaged."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory (expected the --out of `sweep run`)")
    manifest = store.read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"{directory}: no sweep run here (no chunks/manifest.json)")
    path = directory / store.CONFIG
    remedy = f"`sweep run EXPERIMENT --out {directory} --resume` rewrites it"
    try:
        experiment = load_experiment(path)
    except (ConfigError, OSError, UnicodeDecodeError) as error:
        problem = integrity.one_line(error).removeprefix(f"{path}: ")
        raise DamagedFile(path, f"missing or damaged ({problem})", remedy) from None
    if experiment.fingerprint() != manifest["fingerprint"]:
        raise DamagedFile(path, "damaged or replaced: not the experiment of chunks/manifest.json", remedy)
    plan = groups_of_run(experiment, manifest["chunk_sizes"])
    if plan is None:
        raise DamagedFile(path, "plans other groups than chunks/manifest.json names", remedy)
    return experiment, manifest, plan_chunks(plan, manifest["chunk_sizes"])


def assemble_dir(directory: str | Path) -> tuple[xr.Dataset, int]:
    """The Dataset of every chunk saved in DIR, and how many variants are still missing.

    DamagedRun (one line per damaged chunk, each moved aside) if any saved chunk is damaged."""
    directory = Path(directory)
    experiment, manifest, chunks = _planned(directory)
    attrs = {
        "config": store.config_text(experiment),
        "experiment": str(directory / store.CONFIG),
        "fingerprint": experiment.fingerprint(),
        "n_variants": experiment.n_variants,
    } | manifest["dataset"]
    results, missing, damaged = collect(directory, experiment, chunks, attrs, _resume_hint(directory))
    if damaged:
        raise DamagedRun(damaged)
    return results, missing


def merge(directory: str | Path) -> tuple[xr.Dataset, int]:
    """Write ``DIR/results.nc`` from the chunks in DIR (written by any number of shards).

    Missing variants are NaN with ``completed = False``; returns the Dataset and their number. Nothing
    is written if a chunk is damaged (DamagedRun)."""
    results, missing = assemble_dir(directory)
    store.write_results(Path(directory), results)
    return results, missing


@dataclass(frozen=True)
class Status:
    variants: int
    done: int
    diverged: int
    chunks: int
    chunks_done: int
    chunks_damaged: int = 0  # not done, with a damaged copy in chunks/damaged/
    found_damaged: tuple[str, ...] = ()  # one line per damaged chunk found (and moved aside) just now

    @property
    def missing(self) -> int:
        return self.variants - self.done


def status(directory: str | Path) -> Status:
    """Done / missing / diverged / damaged counts of a run directory (damaged chunks are moved aside)."""
    directory = Path(directory)
    experiment, _, chunks = _planned(directory)
    saved = read_saved(directory, experiment, chunks, _resume_hint(directory))
    done = sum(c.n_variants for c in chunks if c.name in saved.parts)
    diverged = sum(int(np.sum(outputs["diverged"])) for _, outputs, _ in saved.parts.values())
    aside = integrity.damaged_names(directory / store.CHUNKS)
    damaged = sum(
        1 for c in chunks if c.name not in saved.parts and store.chunk_path(directory, c.name).name in aside
    )
    return Status(
        experiment.n_variants, done, diverged, len(chunks), len(saved.parts), damaged, tuple(saved.damaged)
    )


def load(directory: str | Path) -> xr.Dataset:
    """The results of a run directory: ``results.nc`` if merged, else assembled from its chunks (with a
    warning that says how many variants are missing; see the ``completed`` variable).

    DamagedFile or DamagedRun (each line naming a file and what is wrong) if a file is damaged or
    foreign; damaged chunks are moved aside."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory (expected the --out of `sweep run`)")
    if (directory / store.RESULTS).exists():
        results = store.load(directory)
        try:
            manifest = store.read_manifest(directory)
        except DamagedFile:
            manifest = None  # the results carry their own checksum; the manifest matters to --resume
        if manifest is not None and manifest["fingerprint"] != results.attrs["fingerprint"]:
            raise DamagedFile(
                directory / store.RESULTS,
                "the results of another experiment than this directory's (compare its config.toml)",
                f"`sweep merge {directory}` rewrites it from the saved chunks",
            )
        return results
    if not (directory / store.CHUNKS).exists():
        raise FileNotFoundError(
            f"{directory}: no results here (run `sweep run EXPERIMENT --out {directory}`)"
        )
    results, missing = assemble_dir(directory)
    if missing:
        warnings.warn(
            f"{directory}: not merged; {missing} of {results.attrs['n_variants']} variants missing "
            "(completed == False); finish them with --resume or the remaining shards",
            stacklevel=2,
        )
    return results
