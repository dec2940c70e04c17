"""The README and docs/ stay navigable: every relative link resolves, the README stays short, no page
cites a file that is not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "workloads" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # links inside code blocks are not links
    return [t for t in _LINK.findall(text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    broken = [t for t in _relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not broken, f"{page.name}: links to missing files: {broken}"


def test_readme_keeps_to_the_essentials():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the rest belongs in docs/"
    assert lines[0] == "# shmrss"
    assert any("pip install -e '.[test]'" in line and "shmrss run" in line for line in lines[:8])
    assert any(line.strip() == "pytest" for line in lines[:12])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_cites_a_file_outside_the_repository(page):
    assert "ALGORITHMS.md" not in page.read_text(), f"{page.name} cites ALGORITHMS.md, which is not in the repository"


def test_the_link_check_finds_a_broken_link(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("[a](missing.md) [b](https://example.org) [c](#anchor)\n```\n[d](in-code.md)\n```\n")
    assert _relative_links(page) == ["missing.md"]
