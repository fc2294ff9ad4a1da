"""``python -m sweep.cli ARGS``: the ``sweep`` command."""

from sweep.cli import console

console()
