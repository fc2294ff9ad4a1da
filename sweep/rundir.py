"""Reading a run directory back: assemble saved chunks, merge shards, report status, load results.

A directory written by ``sweep run --out DIR`` (by one process or by many shards) holds
``config.toml``, ``chunks/manifest.json`` and one ``.npz`` per finished chunk; ``results.nc`` appears
once every chunk is there (or after ``sweep merge``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from sweep import store
from sweep.chunks import Chunk, plan_chunks
from sweep.config import Experiment, load_experiment
from sweep.grid import groups
from sweep.predictions import add_predictions
from sweep.results import assemble


def collect(
    out_dir: Path, experiment: Experiment, chunks: list[Chunk], attrs: dict[str, Any]
) -> tuple[xr.Dataset, int]:
    """Assemble every chunk saved in ``out_dir``; returns the Dataset and the number of missing variants."""
    parts, missing = [], 0
    for chunk in chunks:
        path = store.chunk_path(out_dir, chunk.name)
        if path.exists():
            parts.append(store.read_chunk(path))
        else:
            missing += chunk.n_variants
    return add_predictions(assemble(experiment, parts, attrs | {"missing_variants": missing})), missing


def _planned(directory: Path) -> tuple[Experiment, dict[str, Any], list[Chunk]]:
    manifest = store.read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"{directory}: no sweep run here (no chunks/manifest.json)")
    experiment = load_experiment(directory / store.CONFIG)
    return experiment, manifest, plan_chunks(groups(experiment), manifest["chunk_sizes"])


def assemble_dir(directory: str | Path) -> tuple[xr.Dataset, int]:
    """The Dataset of every chunk saved in DIR, and how many variants are still missing."""
    directory = Path(directory)
    experiment, manifest, chunks = _planned(directory)
    attrs = {
        "config": store.config_text(experiment),
        "experiment": str(directory / store.CONFIG),
        "fingerprint": experiment.fingerprint(),
        "n_variants": experiment.n_variants,
    } | manifest["dataset"]
    return collect(directory, experiment, chunks, attrs)


def merge(directory: str | Path) -> tuple[xr.Dataset, int]:
    """Write ``DIR/results.nc`` from the chunks in DIR (written by any number of shards).

    Missing variants are NaN with ``completed = False``; returns the Dataset and their number."""
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

    @property
    def missing(self) -> int:
        return self.variants - self.done


def status(directory: str | Path) -> Status:
    """Done / missing / diverged counts of a run directory."""
    directory = Path(directory)
    experiment, _, chunks = _planned(directory)
    done = diverged = chunks_done = 0
    for chunk in chunks:
        path = store.chunk_path(directory, chunk.name)
        if path.exists():
            _, outputs, _ = store.read_chunk(path)
            done += chunk.n_variants
            diverged += int(np.sum(outputs["diverged"]))
            chunks_done += 1
    return Status(experiment.n_variants, done, diverged, len(chunks), chunks_done)


def load(directory: str | Path) -> xr.Dataset:
    """The results of a run directory: ``results.nc`` if merged, else assembled from its chunks (with a
    warning that says how many variants are missing; see the ``completed`` variable)."""
    directory = Path(directory)
    if (directory / store.RESULTS).exists():
        return store.load(directory)
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
