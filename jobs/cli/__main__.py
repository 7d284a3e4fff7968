"""``python -m bertsearch.jobs.cli``: what the scheduler runs its jobs with."""

import sys

from bertsearch.jobs.cli import main

sys.exit(main())
