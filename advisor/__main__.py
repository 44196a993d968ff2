"""`python -m advisor` runs the command-line interface."""

import sys

from advisor.cli import main

sys.exit(main())
