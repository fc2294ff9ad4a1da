"""``python -m sweep.cli ARGS``: the ``sweep`` command."""

import sys

from sweep.cli.commands import main

sys.exit(main())
