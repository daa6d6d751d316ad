"""A plugin that ends the program when imported (it must count as a failed plugin)."""

import sys

sys.exit(3)
