"""sweep: train many network variants at once and measure why deep networks do or do not train.

Public names: ``run`` (experiment -> results Dataset), ``load`` (a run directory -> Dataset),
``load_experiment``, and the errors they raise: ``ConfigError`` (bad input), ``DamagedFile`` and
``DamagedRun`` (a run directory's files fail their checks) and ``WriteFailed`` (a file could not be
written; what was saved is said).
"""

from sweep.config import ConfigError, load_experiment
from sweep.engine import run
from sweep.integrity import DamagedFile, DamagedRun, WriteFailed
from sweep.rundir import load

__all__ = ["ConfigError", "DamagedFile", "DamagedRun", "WriteFailed", "load", "load_experiment", "run"]
