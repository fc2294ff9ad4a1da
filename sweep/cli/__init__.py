"""The command line: thin argument parsing (``parser``) over the importable functions (``commands``);
``theory`` is ``sweep theory``'s table, ``gallery`` is ``sweep figures``. The console script is
``sweep.cli:console`` (``main`` and then a quick exit); ``python -m sweep.cli`` runs the same.

Nothing here imports JAX at import time: ``sweep --help`` starts without it.
"""

import atexit
import os
import sys

from sweep.cli.commands import main
from sweep.cli.parser import build_parser

__all__ = ["build_parser", "console", "main"]


def console() -> None:
    """The ``sweep`` command: ``main()``, then the exit handlers (``atexit``: JAX's, logging's, a
    distributed run's shutdown), flushed output and ``os._exit`` with its code. What is skipped is the
    interpreter's finalisation of every module and of XLA's C++ objects, 0.3-0.5 s after a run that
    compiled programs, when nothing is left to write (every file the commands write is closed before
    they return). An exception out of ``main`` ends the process the ordinary way."""
    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if code is None else int(code))
