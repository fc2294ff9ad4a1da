"""Compiled programs kept on disk between runs: JAX's persistent compilation cache.

A group's program takes seconds to compile on a CPU (tens with spectra), and the same shapes recur:
reruns with other sigma values or seeds, ``--resume``, job-array shards on one machine, the figure
experiments. ``use_compile_cache`` points JAX's cache at ``SWEEP_CACHE_DIR`` (default
``$XDG_CACHE_HOME/sweep/xla``, else ``~/.cache/sweep/xla``); ``SWEEP_CACHE_DIR=off`` turns it off, and
a cache the user configured for JAX (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is left alone.
JAX keys every entry by the program, the JAX and XLA versions, the devices and the compiler flags, so an
entry is only ever reused for the same computation. A run stores the programs that took at least
``RUN_MIN_COMPILE_SECONDS`` to compile: its groups' programs and the theory's (the mean-field solve and
the boundary search, 0.3-1 s each on 2 cores; under JAX's default of 1 s they were compiled again in
every process, 1.5-2.6 s beside the training), not the one-operation programs of eager array code (10-20
ms each). ``sweep plot`` stores every program: those of the theory curves take 0.01-1.3 s each.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

OFF = ("off", "0", "false", "no", "")
RUN_MIN_COMPILE_SECONDS = 0.05  # what `sweep run` stores (JAX's default: 1 s)


def cache_dir() -> Path | None:
    """Where sweep keeps compiled programs (None: turned off with ``SWEEP_CACHE_DIR=off``)."""
    chosen = os.environ.get("SWEEP_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in OFF else Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sweep" / "xla"


def use_compile_cache(min_compile_seconds: float | None = None) -> Path | None:
    """Turn JAX's persistent compilation cache on at ``cache_dir()`` unless the user configured one or
    turned it off. Returns the directory in use (None: no cache). ``min_compile_seconds``: store the
    programs that took at least this long to compile (JAX's default: 1 s, or the user's
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``, which wins); ``sweep plot`` keeps the theory curves'
    programs (0.05-0.1 s each) for the runs whose figures have no kept curves to draw from."""
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return Path(configured)
    directory = cache_dir()
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    if min_compile_seconds is not None and "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    return directory
