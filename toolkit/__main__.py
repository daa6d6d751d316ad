"""`python -m toolkit` (also what torchrun runs)."""

import sys

from toolkit.cli import main

sys.exit(main())
