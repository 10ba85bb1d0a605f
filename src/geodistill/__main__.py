import sys

from geodistill.platform.cli import main

sys.exit(main())
