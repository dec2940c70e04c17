"""The commands the README, docs/*.md and the example workflows show, as data for tests/test_docs_commands.py.

Markdown: fenced blocks (unlabeled, sh, bash, shell, console) and 4-space indented blocks. In a block
with ``$ `` lines only those are commands and the lines after one are its documented output; in any
other block a line is a command when it starts (after ``VAR=value`` assignments) with ``shmrss`` and a
subcommand or option, ``python``/``python3`` and ``scripts/...`` or ``-m``, ``pytest``, ``pip`` or
``taskset`` (so "shmrss results", a table's title, is not one). ``\\`` continuations are joined, a
trailing ``# comment`` is kept apart, ``a && b`` is two commands. In prose, an inline
```python scripts/...``` span is a command too (the docs name the scripts there).
Workflows: every ``run:`` step, with its job's and its own ``env:``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELL_LABELS = {"", "sh", "bash", "shell", "console"}


@dataclass
class Command:
    file: str  # relative to the repository root
    line: int
    text: str  # the command, continuations joined, without its trailing comment
    comment: str = ""  # the trailing "# ..." text, without the "#"
    output: list[str] = field(default_factory=list)  # documented output lines (blocks with "$ " lines)
    env: dict[str, str] = field(default_factory=dict)  # workflow steps: env: of the job and the step

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def error_line(self) -> str | None:
        """The documented ``shmrss: error: ...`` line, if the output shows one."""
        return next((o for o in self.output if o.startswith("shmrss: error:")), None)

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def subcommands() -> set[str]:
    from shmrss.cli import build_parser

    parser = build_parser()
    return set(next(a for a in parser._actions if a.dest == "cmd").choices)


def _command_re(subs: set[str]) -> re.Pattern:
    shmrss = rf"shmrss\s+(?:-|(?:{'|'.join(sorted(subs))})\b)"
    return re.compile(rf"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:{shmrss}|python3?\s+(?:scripts/|-m\s)|pytest\b|pip\b"
                      rf"|taskset\b)")


def split_comment(text: str) -> tuple[str, str]:
    """``cmd   # why`` -> (``cmd``, ``why``); a ``#`` inside quotes or a word is not a comment."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip(), text[i + 1:].strip()
    return text.rstrip(), ""


def _joined(lines: list[str], i: int) -> tuple[str, int]:
    """The logical line starting at lines[i] (``\\`` continuations joined) and the index after it."""
    text = lines[i].rstrip()
    while text.endswith("\\") and i + 1 < len(lines):
        i += 1
        text = text[:-1].rstrip() + " " + lines[i].strip()
    return text, i + 1


def _commands_of(text: str, file: str, line: int, output: list[str] | None = None) -> list[Command]:
    body, comment = split_comment(text)
    parts = [p.strip() for p in body.split(" && ")]
    return [Command(file, line, p, comment, list(output or [])) for p in parts if p]


def block_commands(lines: list[str], file: str, first_line: int, subs: set[str]) -> list[Command]:
    """The commands of one block (its lines without fence or indent); first_line: the file line of lines[0]."""
    found: list[Command] = []
    if any(ln.startswith("$ ") for ln in lines):
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            start = i
            text, i = _joined(lines, i)
            out = []
            while i < len(lines) and not lines[i].startswith("$ "):
                out.append(lines[i])
                i += 1
            while out and not out[-1].strip():
                out.pop()
            found += _commands_of(text[2:], file, first_line + start, out)
        return found
    pattern = _command_re(subs)
    i = 0
    while i < len(lines):
        start = i
        text, i = _joined(lines, i)
        if pattern.match(text.strip()):
            found += _commands_of(text.strip(), file, first_line + start)
    return found


_INLINE = re.compile(r"`(python3? scripts/[^`]+)`")


def markdown_commands(path: Path, subs: set[str], file: str | None = None) -> list[Command]:
    file = file or str(path.relative_to(ROOT))
    lines = path.read_text().splitlines()
    found: list[Command] = []
    i, prose = 0, []  # prose: (line number, text) of the current paragraph, for inline spans
    while i < len(lines):
        ln = lines[i]
        fence = re.match(r"^(\s*)```\s*([\w+-]*)", ln)
        if fence:
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith("```"):
                j += 1
            found += _inline(prose, file)
            if fence.group(2) in SHELL_LABELS:
                indent = len(fence.group(1))
                found += block_commands([x[indent:] for x in lines[i + 1:j]], file, i + 2, subs)
            prose, i = [], j + 1
            continue
        if ln.startswith("    ") and (i == 0 or not lines[i - 1].strip()) and not _in_list(lines, i):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            found += _inline(prose, file)
            found += block_commands([x[4:] for x in lines[i:j]], file, i + 1, subs)
            prose, i = [], j
            continue
        if not ln.strip():
            found += _inline(prose, file)
            prose = []
        else:
            prose.append((i + 1, ln))
        i += 1
    return found + _inline(prose, file)


def _in_list(lines: list[str], i: int) -> bool:
    """An indented line after a list item's paragraph is the item's continuation, not a code block."""
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    return j >= 0 and bool(re.match(r"^\s*(?:[-*+]|\d+\.)\s", lines[j])) and not lines[j].startswith("    ")


def _inline(prose: list[tuple[int, str]], file: str) -> list[Command]:
    if not prose:
        return []
    text = " ".join(t.strip() for _, t in prose)
    starts = []  # character offset of each source line in text, to name the line a span starts on
    pos = 0
    for n, t in prose:
        starts.append((pos, n))
        pos += len(t.strip()) + 1
    found = []
    for m in _INLINE.finditer(text):
        line = max(n for off, n in starts if off <= m.start())
        found += _commands_of(m.group(1), file, line)
    return found


def workflow_commands(path: Path) -> list[Command]:
    import yaml

    file = str(path.relative_to(ROOT))
    doc = yaml.safe_load(path.read_text())
    run_lines = [n for n, ln in enumerate(path.read_text().splitlines(), 1) if re.match(r"^\s*(- )?run:", ln)]
    found = []
    for job in doc["jobs"].values():
        for step in job.get("steps", []):
            if "run" in step:
                env = {**job.get("env", {}), **step.get("env", {})}
                found.append(Command(file, run_lines[len(found)], step["run"].strip(), "", [],
                                     {k: str(v) for k, v in env.items()}))
    return found


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def workflows() -> list[Path]:
    return sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def all_commands() -> list[Command]:
    subs = subcommands()
    found = []
    for page in doc_pages():
        found += markdown_commands(page, subs)
    for wf in workflows():
        found += workflow_commands(wf)
    return found


_NUMBER = r"\d+(?:\.\d+)?(?:e[+-]?\d+)?"


def normalise_error(line: str) -> str:
    """An error line with its host-dependent parts masked: sizes (``23.5 GiB``), the limit a segment
    exceeds (/dev/shm's free space or half the available memory), uids, and
    everything inside parentheses (``(usable CPUs 0)``, ``(online CPUs 0-3,5)``, ``(uid 0)``). The words,
    and the numbers the user typed outside parentheses (``CPU 7``, ``--duration 1e+308``), must match."""
    line = re.sub(rf"{_NUMBER}\s*([KMGT]iB)", r"# \1", line.strip())
    # which limit binds, /dev/shm's free space or half the available memory, depends on the host
    line = re.sub(r"; (/dev/shm has # [KMGT]iB free|# [KMGT]iB of memory is available and a segment may take "
                  r"at most 1/\d+ of it)$", "; (no room on this host)", line)
    line = re.sub(rf"\buid {_NUMBER}", "uid #", line)
    line = re.sub(r"\(([^()]*)\)", lambda m: "(" + re.sub(rf"{_NUMBER}(?:[,:-]{_NUMBER})*", "#", m.group(1)) + ")",
                  line)
    return re.sub(r"\s+", " ", line)
