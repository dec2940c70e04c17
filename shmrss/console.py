"""The one stdout console the commands print their tables to (``run``, ``topology``, ``calibrate``,
``monitor``): a terminal gets its own width, piped output a wide page so tables are not folded to 80
columns; and ``printable``, the one escape of names that come from files and /dev/shm."""

from __future__ import annotations

import sys

from rich.console import Console

PIPED_WIDTH = 200


def printable(text: object) -> str:
    """``text`` with every character that is not printable (ESC, BEL, newlines, other controls) written as a
    Python escape (``\\x1b``), so a name taken from a file or /dev/shm cannot drive the terminal. Rich markup
    is a separate matter: show the result as ``rich.text.Text`` or with ``markup=False``."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def stdout_console() -> Console:
    """A console on stdout, as wide as the terminal or PIPED_WIDTH columns when stdout is not one."""
    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)
