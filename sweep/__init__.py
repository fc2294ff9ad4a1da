"""sweep: train many network variants at once and measure why deep networks do or do not train.

Public names: ``run`` (experiment -> results Dataset), ``load`` (a run directory -> Dataset),
``load_experiment``, and the errors they raise: ``ConfigError`` (bad input), ``DamagedFile`` and
``DamagedRun`` (a run directory's files fail their checks) and ``WriteFailed`` (a file could not be
written; what was saved is said); ``register_architecture``, ``Architecture`` and ``NewField`` (your own
network and the ``[model]`` fields it adds, docs/custom_architectures.md).

The names are imported on first use (a module-level ``__getattr__``), so ``import sweep`` and the
command line start without JAX and the training path; ``from sweep import run`` works as usual.
"""

from __future__ import annotations

import importlib

# public name -> the module that defines it
_PUBLIC = {
    "ConfigError": "sweep.config",
    "load_experiment": "sweep.config",
    "run": "sweep.runner.engine",
    "DamagedFile": "sweep.storage.integrity",
    "DamagedRun": "sweep.storage.integrity",
    "WriteFailed": "sweep.storage.integrity",
    "load": "sweep.storage.rundir",
    "register_architecture": "sweep.nets.contract",
    "Architecture": "sweep.nets.contract",
    "NewField": "sweep.nets.contract",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> object:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'sweep' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
