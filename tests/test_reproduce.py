"""scripts/reproduce.py at its smoke size: every claim gets a section with a table or a reason, and a verdict."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VERDICTS = ("agree", "disagree", "cannot tell on this host")


@pytest.mark.stress
def test_reproduce_tiny_writes_every_claim(tmp_path):
    out, figs = tmp_path / "findings.md", tmp_path / "figures"
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "reproduce.py"), "--size", "tiny", "--out", str(out),
                        "--figures", str(figs)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    text = out.read_text()
    assert "Host: " in text and "Measured " in text
    sections = re.split(r"^## \d+\. ", text, flags=re.M)[1:]
    titles = [s.splitlines()[0] for s in sections]
    assert len(sections) == 9, titles
    for title, body in zip(titles, sections):
        verdicts = re.findall(r"^\*\*Verdict: ([^.*]+)\.\*\*", body, flags=re.M)
        assert verdicts, f"no verdict in {title!r}"
        for v in verdicts:
            assert v.split(":")[0] in VERDICTS, (title, v)
        assert "A run failed" not in body, (title, body[-500:])
        for rel in re.findall(r"!\[[^]]*\]\(([^)]+)\)", body):
            assert (out.parent / rel).is_file(), rel
    # the progress went to stderr, the page to the file only
    assert p.stdout == "" and "[9/9]" in p.stderr


@pytest.mark.stress
def test_replay_gives_the_same_page(tmp_path):
    """--raw then --replay: the same verdicts and numbers from the saved results, without re-running."""
    args = [sys.executable, str(ROOT / "scripts" / "reproduce.py"), "--size", "tiny", "--only", "oom"]
    raw = tmp_path / "raw.json"
    first = subprocess.run([*args, "--raw", str(raw), "--out", str(tmp_path / "a.md"), "--figures",
                            str(tmp_path / "fig")], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    again = subprocess.run([*args, "--replay", str(raw), "--out", str(tmp_path / "b.md"), "--figures",
                            str(tmp_path / "fig")], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    a, b = ((tmp_path / n).read_text().splitlines() for n in ("a.md", "b.md"))
    assert a[0] == b[0] and a[3:] == b[3:]  # only the "Measured ..." line differs: it says it was replayed
    assert "--replay" in b[2] and "--replay" not in a[2]
