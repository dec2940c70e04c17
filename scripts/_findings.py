"""Shared by scripts/reproduce.py: a claim's findings (table, figure, verdicts), number formatting, the
markdown page and the figure helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

AGREE, DISAGREE, CANNOT = "agree", "disagree", "cannot tell on this host"


@dataclass
class Verdict:
    statement: str  # the claim, as reported
    verdict: str  # AGREE, DISAGREE or CANNOT, optionally followed by ": qualifier"
    why: str  # from the measured numbers


@dataclass
class Claim:
    key: str
    title: str
    reported: str  # what the authors reported (quoted from [designs.md](designs.md), not measured here)
    commands: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    figure: Path | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # measured facts worth a line
    seconds: float = 0.0


def fmt(v, spec: str = ",.0f", none: str = "-") -> str:
    return none if v is None else format(v, spec)


def ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def pct(r: float | None) -> str:
    return "-" if r is None else f"{(r - 1) * 100:+.1f}%"


def markdown(claims: list[Claim], head: list[str], out: Path) -> str:
    lines = ["# Findings: the claims of [designs.md](designs.md), measured on this host", "", *head, ""]
    lines += ["| # | claim | verdict |", "|---|---|---|"]
    for i, c in enumerate(claims, 1):
        lines.append(f"| {i} | [{c.title}](#{i}-{_anchor(c.title)}) | "
                     f"{'; '.join(v.verdict for v in c.verdicts) or 'none'} |")
    lines.append("")
    for i, c in enumerate(claims, 1):
        lines += [f"## {i}. {c.title}", "", f"**Reported.** {c.reported}", ""]
        if c.commands:
            lines += ["**Run here** (" + f"{c.seconds:.0f} s" + "):", "", "```"] + c.commands + ["```", ""]
        if c.rows:
            lines += ["| " + " | ".join(c.header) + " |", "|" + "---|" * len(c.header)]
            lines += ["| " + " | ".join(r) + " |" for r in c.rows]
            lines.append("")
        if c.figure is not None:
            rel = os.path.relpath(c.figure, out.parent)
            lines += [f"![{c.title}]({rel})", ""]
        for n in c.notes:
            lines.append(f"* {n}")
        if c.notes:
            lines.append("")
        for v in c.verdicts:
            lines += [f"**Verdict: {v.verdict}.** {v.statement} {v.why}", ""]
        if not c.verdicts:
            lines += [f"**Verdict: {CANNOT}.** Nothing was measured.", ""]
    return "\n".join(lines).rstrip() + "\n"


def _anchor(title: str) -> str:
    keep = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -")
    return keep.replace(" ", "-")


def new_figure(figsize=(6.4, 4.0)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    return plt, fig, ax


def save(plt, fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
