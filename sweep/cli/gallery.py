"""Regenerate the figures of every experiment file: run each (at a named scale), draw, collect PNGs.

``sweep figures --scale quick --out figures`` runs every ``experiments/*.toml`` — every entry of its
``[runs]`` table, or the file once if it has none — into ``runs/figures/<experiment>[/<run>]`` and copies
each figure to ``figures/<experiment>[-<run>]-<figure>.png``. Results of a previous run at the same scale
are reused (``--resume``), so an interrupted gallery picks up where it stopped.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from sweep.config import ConfigError, read_toml
from sweep.runner import engine


def experiment_runs(path: Path) -> list[str | None]:
    """The named runs of an experiment file, or [None] for a file with a single sweep."""
    return list(read_toml(path).get("runs", {})) or [None]


def regenerate(
    experiments: list[Path],
    scale: str,
    out: Path,
    work: Path = Path("runs/figures"),
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Run and draw every experiment; returns the PNGs copied into ``out``."""
    from plots.figures import draw_all

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in experiments:
        for run in experiment_runs(path):
            name = path.stem + (f"-{run}" if run else "")
            directory = work / scale / name
            started = time.perf_counter()
            try:  # reuse finished chunks of an earlier gallery run of the same experiment
                results = engine.run(path, directory, scale=scale, run=run, resume=True)
            except ConfigError:  # the experiment file changed since: start over
                results = engine.run(path, directory, scale=scale, run=run, force=True)
            log(f"{name}: {results.attrs['n_variants']} variants in {time.perf_counter() - started:.0f} s")
            for png in draw_all(results, directory / "figures"):
                target = out / f"{name}-{png.name}"
                shutil.copyfile(png, target)
                written.append(target)
    return written
