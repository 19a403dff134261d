"""``python -m maskrcnn_core``: the command line (see :mod:`maskrcnn_core.cli`)."""

import sys

from maskrcnn_core.cli import main

sys.exit(main())
