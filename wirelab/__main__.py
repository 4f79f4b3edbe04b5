"""``python -m wirelab``: the wirelab command (see :mod:`wirelab.cli`)."""

import sys

from wirelab.cli import main

sys.exit(main())
