"""``python -m afmask`` runs the command line."""

import sys

from afmask.cli import main

sys.exit(main())
