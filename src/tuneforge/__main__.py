"""`python -m tuneforge ...`: the CLI (the dashboard starts trainings this way, with its own interpreter)."""

import sys

from tuneforge.cli import main

sys.exit(main())
