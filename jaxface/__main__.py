"""`python -m jaxface COMMAND ...`: the `jaxface` command (see jaxface/cli.py)."""

import sys

from jaxface.cli import main

if __name__ == "__main__":
  sys.exit(main())
