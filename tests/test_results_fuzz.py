"""Issue 19: fuzzing the readers of results files. Thousands of files mutated from real results (type swaps,
NaN, huge numbers, missing and duplicated keys, truncation, foreign lines) go through ``report``'s reading,
tables and CSV rows, ``compare``'s reading and comparison and ``show``'s tables in-process, and a sample of
them through the
commands themselves: every file is read or refused with one line (InputError, exit 2), never a traceback,
within a time and memory bound.
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shmrss import compare, report, report_data, report_figures, show, wis_csv
from shmrss.results_file import InputError

QUICK = ["--duration", "0.2", "--no-calibrate", "--cpus", "1"]
FILES = 1000  # in-process, a few ms each
COMMANDS = 12  # of them through `shmrss report` and `shmrss compare` as processes


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, dict]:
    """Real results: a page_fault1 run (with its reader), a fork_exit run, and the first as a sweep line."""
    d = tmp_path_factory.mktemp("seeds")
    out = {}
    for name, argv in (("run", ["--design", "percpu"]), ("life", ["--workload", "fork_exit"])):
        path = d / f"{name}.json"
        p = subprocess.run([sys.executable, "-m", "shmrss", "run", *QUICK, *argv, "--json", str(path)],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        out[name] = json.loads(path.read_text())["results"][0]
    key = {"workload": "page_fault1", "mode": "processes", "design": "percpu", "cpus": 1, "possible_cpus": 1,
           "duration_s": 0.2, "repeat": 0}
    out["line"] = {"sweep": {"key": key, "status": "ok", "exit_code": 0, "wall_s": 1.0, "argv": ["run"],
                             "error": None}, **out["run"]}
    return out


_ODD = [None, True, 0, -1, 1e308, -1e308, 10**30, 10**400, float("nan"), float("inf"), "", "x", "2", "[/]",
        "\x1b]0;t\x07", [], [1, "a"], {}, {"median": "x"}, [[2]], 1.5]


def _paths(v, at=()):
    """Every path to a member or element of ``v``."""
    yield at
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, at + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v[:4]):
            yield from _paths(x, at + (i,))


def _copy(v):
    return json.loads(json.dumps(v))  # several times faster than copy.deepcopy on these trees


def _mutate(r: dict, rng: random.Random) -> dict:
    paths = [p for p in _paths(r) if p]
    for _ in range(rng.choice((1, 1, 2, 3))):
        at = rng.choice(paths)
        parent = r
        try:
            for step in at[:-1]:
                parent = parent[step]
            if rng.random() < 0.25 and isinstance(parent, dict):
                del parent[at[-1]]
            else:
                parent[at[-1]] = copy.copy(rng.choice(_ODD))  # the odd lists and objects are never changed
        except (KeyError, IndexError, TypeError):  # an earlier mutation changed the path
            pass
    return r


def _text(obj, rng: random.Random) -> str:
    text = json.dumps(obj, allow_nan=True)
    roll = rng.random()
    if roll < 0.1 and len(obj) > 1:  # a key twice: json.dumps cannot say that, so splice it in
        k = rng.choice(list(obj))
        text = "{" + json.dumps(k) + ": " + json.dumps(obj[k], allow_nan=True) + ", " + text[1:]
    elif roll < 0.2:
        text = text[:rng.randrange(len(text))]  # cut short
    elif roll < 0.25:
        text = text.replace("1", "1" * 30, 1)  # a huge number somewhere
    return text


def _varied(r: dict, rng: random.Random) -> dict:
    """Another point of the same kind (CPUs, possible CPUs, repeat), so tables and figures have series."""
    r = _copy(r)
    cpus = rng.choice((1, 2, 4))
    possible = rng.choice((cpus, cpus, 64))
    r["params"].update(cpus=cpus, possible_cpus=possible)
    if "sweep" in r:
        r["sweep"]["key"].update(cpus=cpus, possible_cpus=possible, repeat=rng.randrange(3))
    return r


def _file(seeds: dict, rng: random.Random, path: Path) -> None:
    lines = []
    for _ in range(rng.choice((1, 2, 4, 8))):
        base = _varied(seeds[rng.choice(("run", "life", "line"))], rng)
        obj = _mutate(base, rng) if rng.random() < 0.9 else base
        lines.append(_text(obj, rng))
    if rng.random() < 0.2:  # a run --json document instead of JSON lines
        doc = {"schema_version": rng.choice((1, 1, 1, 2, "1", None)), "results": [json.loads(ln) for ln in lines
                                                                                   if _loads(ln)]}
        body = json.dumps(doc, indent=1, allow_nan=True)
        path.write_text(body[:rng.randrange(len(body))] if rng.random() < 0.2 else body)
    else:
        path.write_text("\n".join(lines) + "\n")


def _loads(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _through_report(path: Path, draw: bool = False) -> str:
    data = report_data.load([str(path)])
    if not any(g.results for g in data.groups):
        return "refused"
    report.render(data, [str(path)], [], [], path.parent, None)
    for _stem, _k, gs in wis_csv._named(data.groups):
        wis_csv.rows(gs)
    if draw:
        report_figures.draw_all(data.groups, path.parent)
    return "read"


def _no_png(fig, out: Path, name: str) -> Path:
    """save_png without the PNG (most of a figure's time): the figure's data is still all drawn."""
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out / name


def _through_compare(path: Path, base) -> str:
    side = compare.load_side(str(path))
    rows = compare.compare(base, [side])
    for fmt in ("markdown", "csv", "json"):
        compare.render(rows, fmt, "base")
    return "read"


def _through_show(path: Path, fmt: str) -> str:
    """``shmrss show``: the file's tables rendered (a terminal table to a string, markdown to stdout)."""
    from types import SimpleNamespace

    from rich.console import Console

    args = SimpleNamespace(results=str(path), format=fmt, wide=False)
    show.main(args, lambda *tables: Console(file=io.StringIO(), width=200))
    return "read"


def _one_line(e: InputError) -> None:
    assert "\n" not in str(e) and str(e), repr(e)


def test_mutated_results_are_read_or_refused_with_one_line(seeds, tmp_path, monkeypatch):
    monkeypatch.setattr(report_figures, "save_png", _no_png)
    rng = random.Random(19)
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"schema_version": 1, "results": [seeds["run"]]}))
    base = compare.load_side(str(base))
    path = tmp_path / "fuzz.jsonl"
    outcome = {"read": 0, "refused": 0}
    rss0, rss_max = _rss(), 0
    t0 = time.perf_counter()
    for i in range(FILES):
        _file(seeds, rng, path)
        for through in (lambda p: _through_report(p, draw=i % 15 == 0), lambda p: _through_compare(p, base),
                        lambda p: _through_show(p, "markdown" if i % 2 else "table")):
            try:
                outcome[through(path)] += 1
            except InputError as e:
                _one_line(e)
                outcome["refused"] += 1
            except Exception as e:  # the failing file, kept for the report
                raise AssertionError(f"file {i}: {type(e).__name__}: {e}\n{path.read_text()[:3000]}") from e
        if i % 50 == 0:
            rss_max = max(rss_max, _rss() - rss0)
    took = time.perf_counter() - t0
    assert outcome["read"] > FILES // 10 and outcome["refused"] > FILES // 2, outcome  # of 3 x FILES passes  # both sides exercised
    assert took < 120, f"{FILES} files took {took:.1f} s"  # ~10 s on an idle 2-core VM: no file hangs
    assert rss_max < 100 << 20, f"the resident set grew by {rss_max >> 20} MiB"


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_mutated_results_through_the_commands(seeds, tmp_path):
    """The commands themselves (figures drawn too): exit 0, 1 or 2, never a traceback, one error line."""
    rng = random.Random(1919)
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"schema_version": 1, "results": [seeds["run"]]}))
    for i in range(COMMANDS):
        path = tmp_path / f"f{i}.jsonl"
        _file(seeds, rng, path)
        argv = (["report", str(path), "--out", str(tmp_path / f"rep{i}")], ["compare", str(base), str(path),
                "--format", "markdown"], ["show", str(path)])[i % 3]
        p = subprocess.run([sys.executable, "-m", "shmrss", *argv], capture_output=True, text=True, timeout=120)
        assert "Traceback" not in p.stderr and p.returncode in (0, 1, 2), (argv, p.stderr, path.read_text()[:2000])
        if p.returncode == 2:
            assert len([ln for ln in p.stderr.splitlines() if ln.startswith("shmrss: error:")]) == 1, p.stderr


def test_the_fuzzer_makes_every_kind_of_damage(seeds, tmp_path):
    """The mutations the issue names occur: NaN, a huge number, a key twice, a missing key, truncation."""
    rng = random.Random(19)
    path = tmp_path / "f.jsonl"
    seen = io.StringIO()
    for _ in range(300):
        _file(seeds, rng, path)
        seen.write(path.read_text())
    text = seen.getvalue()
    assert "NaN" in text and "Infinity" in text and "1" * 30 in text and '"[/]"' in text
    from shmrss.results_file import read_records

    notes = []
    for _ in range(300):
        _file(seeds, rng, path)
        try:
            notes += read_records(path)[1]
        except InputError as e:
            notes.append(str(e))
    joined = "\n".join(notes)
    for needle in ("twice", "is missing", "cut short", "beyond ±2^64", "holds NaN", "not integer"):
        assert needle in joined, needle
