"""sweep: train many network variants at once and measure why deep networks do or do not train.

Public names: ``run`` (experiment -> results Dataset), ``load`` (a run directory -> Dataset),
``load_experiment`` and ``ConfigError``.
"""

from sweep.config import ConfigError, load_experiment
from sweep.engine import run
from sweep.rundir import load

__all__ = ["ConfigError", "load", "load_experiment", "run"]
