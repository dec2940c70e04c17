"""The consoles the commands print their tables to: ``stdout_console`` (``topology``, ``calibrate``,
``monitor``): a terminal gets its own width, piped output a wide page so tables are not folded to 80
columns; ``fitted`` (``run``, ``show``): piped, exactly as wide as the tables need, so no cell folds; and ``printable``, the
one escape of names that come from files and /dev/shm."""

from __future__ import annotations

import io
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


def needed_width(*renderables) -> int:
    """The columns the renderables take when nothing in them is folded."""
    from rich.measure import Measurement

    probe = Console(width=100_000, file=io.StringIO())
    return max((Measurement.get(probe, probe.options, r).maximum for r in renderables), default=80)


def fitted(*renderables, stderr: bool = False) -> Console:
    """A terminal's own console; piped, one as wide as the renderables need (at least 100 columns)."""
    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, width=max(100, needed_width(*renderables)))
