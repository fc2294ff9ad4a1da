"""Compiled programs kept on disk between runs: JAX's persistent compilation cache.

A group's program takes seconds to compile on a CPU (tens with spectra), and the same shapes recur:
reruns with other sigma values or seeds, ``--resume``, job-array shards on one machine, the figure
experiments. ``use_compile_cache`` points JAX's cache at ``SWEEP_CACHE_DIR`` (default
``$XDG_CACHE_HOME/sweep/xla``, else ``~/.cache/sweep/xla``); ``SWEEP_CACHE_DIR=off`` turns it off, and
a cache the user configured for JAX (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is left alone.
JAX keys every entry by the program, the JAX and XLA versions, the devices and the compiler flags, so an
entry is only ever reused for the same computation; programs compiled in under a second are not stored.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

OFF = ("off", "0", "false", "no", "")


def cache_dir() -> Path | None:
    """Where sweep keeps compiled programs (None: turned off with ``SWEEP_CACHE_DIR=off``)."""
    chosen = os.environ.get("SWEEP_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in OFF else Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sweep" / "xla"


def use_compile_cache() -> Path | None:
    """Turn JAX's persistent compilation cache on at ``cache_dir()`` unless the user configured one or
    turned it off. Returns the directory in use (None: no cache)."""
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
    return directory
