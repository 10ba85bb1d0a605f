"""``python -m geodistill``: the ``geodistill`` command (the one entry point besides the console script)."""

import sys

from geodistill.platform.cli import main

sys.exit(main())
