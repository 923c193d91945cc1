"""``python -m synthora``: the same command line as ``synthora``."""

import sys

from synthora.cli import main

sys.exit(main())
