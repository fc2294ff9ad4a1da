"""The command line: thin argument parsing (``parser``) over the importable functions (``commands``);
``theory`` is ``sweep theory``'s table, ``gallery`` is ``sweep figures``. The console script is
``sweep.cli:main``; ``python -m sweep.cli`` runs the same.

Nothing here imports JAX at import time: ``sweep --help`` starts without it.
"""

from sweep.cli.commands import main
from sweep.cli.parser import build_parser

__all__ = ["build_parser", "main"]
