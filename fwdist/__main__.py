"""``python -m fwdist`` runs the command line."""

import sys

from fwdist.cli import main

sys.exit(main())
