"""``python -m shmrss``: the command line. The one module besides the ``shmrss`` console script that
imports ``shmrss.cli`` (the import-linter contract in pyproject.toml keeps it so)."""

import sys

from shmrss.cli import main

if __name__ == "__main__":
    sys.exit(main())
