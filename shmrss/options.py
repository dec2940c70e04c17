"""argparse ``type=`` parsers shared by the ``run`` and ``sweep`` option definitions.

Plain ASCII numbers only, and each bad value is an ``argparse.ArgumentTypeError`` that the CLI's
parser turns into a one-line ``UsageError``.
"""

from __future__ import annotations

import argparse
import re

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def positive_float(text: str) -> float:
    # plain ASCII decimals only: float() and int() also take "1_0", " 1" and non-ASCII digits such as "١"
    try:
        if not _FLOAT.fullmatch(text):
            raise ValueError
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def int_at_least(lo: int, hi: int = 1 << 31):
    """A parser of one integer in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            if not _INT.fullmatch(text):
                raise ValueError
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], got {v}")
        return v

    return parse


def int_list(lo: int, hi: int):
    """A parser of a comma list of integers in [lo, hi], duplicates dropped, order kept."""
    one = int_at_least(lo, hi)

    def parse(text: str) -> list[int]:
        values = [one(x.strip()) for x in text.split(",") if x.strip()]
        if not values:
            raise argparse.ArgumentTypeError("empty list")
        return list(dict.fromkeys(values))

    return parse


def orders(text: str) -> tuple[int, ...]:
    """``--tree-orders``: a comma list of positive integers."""
    try:
        if not all(_INT.fullmatch(x) for x in text.split(",")):
            raise ValueError
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"orders must be positive, got {text}")
    return values


def label(text: str) -> str:
    """--label: one line of printable text, at most 100 characters (part of a result's identity)."""
    if len(text) > 100 or not text.isprintable():
        raise argparse.ArgumentTypeError(f"must be one line of at most 100 printable characters, got {text[:40]!r}")
    return text.strip()
