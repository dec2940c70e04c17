"""The one stdout console the commands print their tables to (``run``, ``topology``, ``calibrate``,
``monitor``): a terminal gets its own width, piped output a wide page so tables are not folded to 80
columns."""

from __future__ import annotations

import sys

from rich.console import Console

PIPED_WIDTH = 200


def stdout_console() -> Console:
    """A console on stdout, as wide as the terminal or PIPED_WIDTH columns when stdout is not one."""
    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)
