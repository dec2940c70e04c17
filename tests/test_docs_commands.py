"""Every command README.md, docs/*.md and .github/workflows/*.yml show is run (issue 18 item 5, issue 21 item 4).

tests/docs_commands.py extracts the commands. Each page's commands run in order in a temporary
directory (its cwd): ``shmrss`` in-process through ``shmrss.cli.main`` (a subprocess costs a second of
imports), ``taskset`` and shell lines through bash, the scripts in a test of their own. A command whose
documented output shows ``shmrss: error: ...`` must exit 2 with that line (host numbers masked,
``docs_commands.normalise_error``); one whose output shows ``WARNING:`` lines must print them (but the
host's own: HOST_WARNINGS); any other must exit 0, or the status its comment gives (``cmd  # exit 1``) or its
mark's. A mark's ``needs`` names what the host may lack (kernel source, gcc): the page's other commands
run, then the test skips naming it (tests/ci_skips.py fails that skip in CI unless .ci/run declares it).

MARKS says which commands need a live long run or a many-core host, and what runs instead (a short
form: tiny durations, fewer points, at most 4 emulated CPUs). A command none of the rules below lets
run as written and no mark covers fails test_every_command_is_run_or_marked: a command added to the
docs later is run, or marked here, never dropped. The rules, per command:
* a ``shmrss`` command with a documented error is refused before anything starts: run as written;
* any other ``shmrss run``/``calibrate`` runs as written only when short: --duration <= 0.5 (default
  5), --repeat 1, --cpus <= 2, --possible-cpus <= 512, --tasks <= 1000; ``shmrss sweep`` always
  needs a mark (its points are child processes; its default is 3 repeats of 5 s);
* every script (scripts/*.py), ``pip`` and ``pytest`` command, and a synopsis (``[--option X]``) needs a mark;
* the same command again on the same page with no documented output (findings.md repeats runs for
  their spread) runs once; the second is "a repeat of" the first; so is a ``shmrss run`` whose short
  form is one the page already runs (findings.md's --cpus 8, 16 and 32 are each --cpus 4 here).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from conftest import _foreign_and_alive
from docs_commands import ROOT, Command, all_commands, normalise_error, subcommands

BIN = Path(sys.executable).parent  # the venv's console scripts (shmrss) for bash and taskset
SHORT = "0.1"  # seconds per design of every short form

# ----------------------------------------------------------------------------- the short forms


def with_options(*pairs: str, drop: tuple[str, ...] = ()) -> Callable[[list[str]], list[str]]:
    """A rewrite: set each ``--option value`` pair (replaced where the command has it, else appended), drop
    the flags in ``drop``."""
    def rewrite(argv: list[str]) -> list[str]:
        out = list(argv)
        for flag in drop:
            while flag in out:
                out.remove(flag)
        for opt, value in zip(pairs[::2], pairs[1::2]):
            if opt in out:
                out[out.index(opt) + 1] = value
            else:
                out += [opt, value]
        return out
    return rewrite


def short(*pairs: str, drop: tuple[str, ...] = ()) -> Callable[[list[str]], list[str]]:
    """The short form of a shmrss run or sweep: --duration 0.1 (and --repeat 1 for a sweep), no calibration."""
    def rewrite(argv: list[str]) -> list[str]:
        base = ["--duration", SHORT] + (["--repeat", "1"] if "sweep" in argv[:2] else [])
        out = with_options(*base, *pairs, drop=drop)(argv)
        return out if "--no-calibrate" in out else out + ["--no-calibrate"]
    return rewrite


def script(*args: str) -> Callable[[list[str]], list[str]]:
    """A script's smallest form: its own arguments replaced by these."""
    return lambda argv: argv[:2] + [a.replace("{ROOT}", str(ROOT)) for a in args]


@dataclass(frozen=True)
class Mark:
    file: str  # the page, relative to the repository ("*": any)
    match: str  # a regex searched in the command text
    why: str
    rewrite: Callable[[list[str]], list[str]] | None = None  # what runs instead; None: not run
    exit: int = 0  # the exit status the short form must give
    accept: Callable[[int, str, str], str | None] | None = None  # instead of the exit status: None or a problem
    warnings: bool = True  # False: the page's WARNING lines come from what the short form leaves out
    needs: Callable[[], str | None] | None = None  # what the host lacks to run it (a skip reason), or None


STRESS_FILES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                      if "mark.stress" in p.read_text())


def collected(code: int, out: str, err: str) -> str | None:
    """pytest --collect-only -q: exit 0 and some tests collected."""
    m = re.search(r"(\d+)(?:/\d+)? tests? collected", out)
    return None if code == 0 and m and int(m.group(1)) > 0 else f"collected nothing (exit {code}): {out[-300:]}"


def kernel_source() -> str | None:
    """For commands of the kernel's own C: the reason they cannot run here (tests/ci_skips.py fails this skip in
    CI unless .ci/run declares SHMRSS_CI_LACKS=kernel-src)."""
    if not os.environ.get("SHMRSS_KERNEL_SRC") or shutil.which("gcc") is None:
        return "no kernel source ($SHMRSS_KERNEL_SRC; .ci/run extracts Debian's linux-source-6.1) or no gcc"
    return None


def hpcc_source() -> str | None:
    """For k-tree and ``verify --design tree``: HPCC's lib/percpu_counter_tree.c, in no released kernel."""
    d = os.environ.get("SHMRSS_HPCC_SRC")
    if not d or not (Path(d) / "lib/percpu_counter_tree.c").is_file() or shutil.which("gcc") is None:
        return "no HPCC source ($SHMRSS_HPCC_SRC: a tree with lib/percpu_counter_tree.c) or no gcc"
    return None


def with_hpcc(*tail: str) -> Callable[[list[str]], list[str]]:
    """The command with DIR replaced by $SHMRSS_HPCC_SRC, and ``tail`` appended."""
    return lambda argv: [os.environ.get("SHMRSS_HPCC_SRC", "") if a == "DIR" else a for a in argv] + list(tail)


def gcc() -> str | None:
    """For commands that build C (``--design c:SPEC.toml``)."""
    return None if shutil.which("gcc") else "no gcc: the shim cannot be built"


def sweep_oom(code: int, out: str, err: str) -> str | None:
    """sweep-report.md's OOM sweep in its 0.1 s form: done (exit 0), or exit 1 with the sweep's one point
    measured and its only failed invariant the 2-pass selection, which a short run of tree's 2-pass can
    miss (findings.md claim 8 measures it over long runs); nothing else."""
    if code == 0:
        return None
    bad = re.findall(r"INVARIANT FAILED \(invariant failed: ([a-z_, ]+)\)", err)
    if code == 1 and bad and all(b.strip() == "oom_two_pass_agrees_with_precise" for b in bad) and \
            "Traceback" not in err:
        return None
    return f"exit {code}, not 0 nor 1 with the 2-pass selection alone failing: {err.strip()[-600:]}"


def orphans_listed(out: str, grace_s: float = 5.0) -> str | None:
    """ci.yml's leak check, run while the suite's other workers run: a listed segment is a problem only if no
    live run outside this process owns it and it is still there after ``grace_s`` (a test's run whose owner
    just ended unlinks it a moment later; the session's own leak check catches a real orphan)."""
    import time

    from shmrss.segment import SHM_DIR

    names = re.findall(r"shmrss-[0-9a-f]+", out)
    deadline = time.monotonic() + grace_s
    while True:
        left = [n for n in names if os.path.lexists(os.path.join(SHM_DIR, n)) and not _foreign_and_alive(n)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return f"lists a segment no live run owns: {', '.join(left)}" if left else None


def oom_at_256(code: int, err: str) -> str | None:
    """findings.md's OOM runs: exit 1, percpu's 2-pass disagreeing at P = 256, and no other failure."""
    failed = set(re.findall(r"ERROR: (\S+ P=\d+): invariant failed: (\S+)", err))
    if any(not re.match(r"ERROR: \S+ P=\d+: invariant failed: ", ln) for ln in err.splitlines() if "ERROR" in ln):
        return f"exit {code} with an error other than an invariant: {err.strip()[-600:]}"
    others = {f for f in failed if f[0] not in ("percpu P=256", "tree P=256")
              or f[1] != "oom_two_pass_agrees_with_precise"}
    if code == 1 and ("percpu P=256", "oom_two_pass_agrees_with_precise") in failed and not others:
        return None
    return f"exit {code}, not 1 with percpu's 2-pass disagreeing at P = 256 alone: {sorted(failed)}"


NOT_RUN_CI = ".ci/run itself runs this (a fresh venv, pip install -e '.[test]', pytest)"
# First match wins. file:line of a failure names the page's command; the mark says what ran instead.
MARKS = [
    # --- installing and testing: .ci/run does exactly this; the stress suite only has to collect here
    Mark("README.md", r"^python3 -m venv|^\. \.venv/bin/activate", NOT_RUN_CI),
    Mark("*", r"^pip install", NOT_RUN_CI),
    Mark("*", r"^pytest$", NOT_RUN_CI),
    Mark("*", r"^(\w+=\S+ )*pytest -m stress", "the stress suite takes minutes: its files collect (--collect-only)",
         lambda argv: argv + ["--collect-only", "-q", "-p", "no:cacheprovider", *STRESS_FILES], accept=collected),
    # --- README: the default comparison is 5 s a design on all cores
    Mark("README.md", r"^shmrss run$", "5 s a design on every core", short()),
    # --- README and kernel-c.md: the kernel's own C beside the port (needs the kernel tree and gcc)
    Mark("README.md", r"--design percpu,k-percpu", "5 s a design", short(), needs=kernel_source),
    Mark("docs/kernel-c.md", r"--design percpu,k-percpu", "5 s a design", short(), needs=kernel_source),
    Mark("docs/kernel-c.md", r"^shmrss run --design c:", "5 s a design", short(), needs=gcc),
    Mark("docs/kernel-c.md", r"^shmrss verify --design tree", "3000 ops on HPCC's copy", with_hpcc("--events", "3000"),
         needs=hpcc_source),
    Mark("docs/kernel-c.md", r"--design tree,k-tree", "HPCC's copy, short",
         lambda argv: short()(with_hpcc()(argv)), needs=hpcc_source),
    Mark("docs/kernel-c.md", r"^shmrss verify", "100,000 ops (15 s): 5000; the synopsis without its options",
         lambda argv: ["shmrss", "verify", "--events", "5000"], needs=kernel_source),
    # --- host-reference.md: a 3 s page run with the /proc sampler
    Mark("docs/host-reference.md", r"--host-reference --duration 3", "3 s", short("--duration", "0.3")),
    Mark("*", r"^python3? scripts/host_reference\.py", "5 runs of 3 s per mode: 1 run of 0.3 s",
         script("--repeat", "1", "--duration", "0.3", "--figure", "host-reference.png", "--raw", "host.json")),
    Mark("*", r"^python3? scripts/hiwater_walk\.py", "P up to 4096, 2 repeats: P = 2 and 64, one repeat",
         script("--possible", "2,64", "--duration", SHORT, "--repeat", "1")),
    # --- cli.md
    Mark("docs/cli.md", r"--host-cpus 1,0 .*--duration 1 ", "1 s a design", short()),
    Mark("docs/cli.md", r"--cpus 1 --duration 0.5 --repeat 3 --json r.json", "3 repeats", short("--repeat", "2")),
    # --- compare.md: two runs of 5 s, then compare them (new.json: a fixture, see FIXTURES)
    Mark("docs/compare.md", r"--json [ab][1-3]\.json", "the pooled sides' invocations: 1 repeat of 0.1 s each",
         short("--repeat", "1")),
    Mark("docs/compare.md", r"^shmrss run ", "5 s a design", short()),
    # --- designs-pcpcache.md: 5 s runs, --cpus 4 oversubscribed
    # pcpcache on mixed with the reader sharing 2 host CPUs with more runnable CPUs: a reader preempted in
    # its walk sees more flushes than the one per CPU its slack allows (approx_within_bound_throughout);
    # that is issue 23's finding on a loaded host, measured by reproduce.py, not what this test checks
    Mark("*", r"--design pcpcache --workload mixed|--workload mixed --design pcpcache", "5 or 2 s: 0.1 s, "
         "no reader", lambda argv: short()(argv) + ["--no-reader"]),
    Mark("docs/designs-pcpcache.md", r"--duration 5", "5 s a design", short()),
    # --- fault-body.md, faults.md
    Mark("docs/fault-body.md", r"^shmrss run .*--duration 3", "3 s a design", short()),
    Mark("docs/faults.md", r"--kill-at 0.5:1 .*--duration 2.5", "all 8 designs for 2.5 s with faults at 0.5, 1 "
         "and 1.5 s: 4 designs, the faults at 0.1, 0.15, 0.2 s of a 0.3 s run",
         lambda argv: ["shmrss", "run", "--design", "atomic,percpu,pernode,tree", "--cpus", "4", "--oversubscribe",
                       "--tasks", "8", "--reclaimer", "--kill-at", "0.1:1", "--offline-at", "0.15:2", "--kill-at",
                       "0.2:3", "--check-every", "0.1", "--duration", "0.3", "--no-calibrate"]),
    # --- findings.md: the runs of reproduce.py --size small, 1 to 2 s a design, up to 32 CPUs, P up to 4096
    Mark("docs/findings.md", r"--cpus (8|16|32) ", "8 to 32 emulated CPUs: 4", short("--cpus", "4")),
    Mark("docs/findings.md", r"--possible-cpus 2,(512,4096|64,512,4096)", "fork/exit at P up to 4096: P = 64",
         short("--possible-cpus", "64")),
    Mark("docs/findings.md", r"--workload oom_select .*--possible-cpus 2,256", "2 s a design; the page's result "
         "is that 2-pass over percpu's counters picks another victim at P = 256 (FAILED), so it exits 1 (tree's "
         "may too in a short run)", short(), accept=lambda code, out, err: oom_at_256(code, err)),
    Mark("docs/findings.md", r"--workload rss_steal --tasks 10000", "10,000 tasks: 1,000",
         short("--tasks", "1000")),
    Mark("docs/findings.md", r"--duration [12]\.0", "1 to 2 s a design", short()),
    # --- sweep-report.md: 36 + 24 + 18 + 8 points of 1 to 2 s, then the report of them all
    Mark("docs/sweep-report.md", r"--mode processes,threads --duration 1 --repeat 3",
         "36 points: 1 design x 2 modes, 1 CPU, 1 repeat", short("--design", "atomic", "--cpus", "1")),
    Mark("docs/sweep-report.md", r"--design atomic,percpu,tree --cpus 2 --possible-cpus 2,64,512",
         "24 points: 1 design at P 64", short("--design", "percpu", "--possible-cpus", "64")),
    Mark("docs/sweep-report.md", r"--workload fork_exit --lifecycle upstream,ctor-cache,lazy",
         "18 points: 1 variant at P 64", short("--lifecycle", "lazy", "--possible-cpus", "64")),
    Mark("docs/sweep-report.md", r"--workload oom_select --tasks 40,1000",
         "8 points: 40 mms, tree at P 2", short("--design", "tree", "--tasks", "40", "--possible-cpus", "2"),
         accept=sweep_oom),
    Mark("docs/sweep-report.md", r"--cpus 1 --duration 4 --repeat 2 --out int.jsonl",
         "2 points of 4 s (the page interrupts the first with ^C; here 1 point runs whole, and the second "
         "command finds it done)", short(), warnings=False),
    Mark("docs/sweep-report.md", r"--design all (--cpus \S+ )?--shard \$SLURM", "a Slurm task (SLURM_* set to task 0 of 8) of "
         "a whole sweep: 1 CPU, 1 repeat", short("--cpus", "1")),
    # --- workflows (the inputs are WORKFLOW_EXPRESSIONS)
    Mark(".github/workflows/ci.yml", r"^left=\$\(ls /dev/shm", "run as written; other users' live runs on a "
         "shared host may hold segments (and the suite's other workers' runs): those may be listed",
         lambda argv: argv, accept=lambda code, out, err: None if code == 0 else orphans_listed(out)),
    Mark(".github/workflows/sweep.yml", r"^shmrss sweep", "a shard of a whole sweep: 1 CPU, 1 repeat of 0.1 s",
         lambda argv: argv + ["--cpus", "1", "--repeat", "1", "--duration", SHORT, "--no-calibrate"]),
    # --- the scripts, each run once in its smallest form (test_scripts_run), whatever arguments a page gives
    Mark("*", r"^python3? scripts/bench_engine\.py", "a benchmark of many 2 s runs: --quick (one configuration, "
         "a short C loop), --before this checkout", script("--quick", "--duration", SHORT, "--repeat", "1",
                                                            "--before", "{ROOT}", "--json", "bench.json")),
    Mark("*", r"^python3? scripts/compare_designs\.py", "every design on 6 workloads: --quick (the first)",
         script("--quick", "--duration", SHORT, "--json", "designs.json")),
    Mark("*", r"^python3? scripts/read_scale\.py", "a matrix of P x mms x online: one point",
         script("--design", "percpu,tree", "--possible", "64", "--mms", "2", "--online", "cpus", "--duration",
                SHORT, "--json", "read.json")),
    Mark("*", r"^python3? scripts/fork_exit_axes\.py", "P x online x 3 variants: one point",
         script("--possible", "64", "--online", "cpus", "--lifecycle", "upstream,inline", "--duration", SHORT,
                "--json", "axes.json")),
    Mark("*", r"^python3? scripts/fault_sizes\.py", "3 sizes x 3 designs: one size, one design",
         script("--sizes", "16", "--design", "percpu", "--duration", SHORT, "--json", "sizes.json")),
    Mark("*", r"^python3? scripts/fault_body\.py", "2 modes x 2 bodies x 2 designs x 5 repeats: processes mode, "
         "1 repeat", script("--modes", "processes", "--duration", SHORT, "--repeat", "1", "--json", "body.json")),
    Mark("*", r"^python3? scripts/reproduce\.py", "the whole findings page: --size tiny, one experiment, into "
         "the temporary directory", script("--size", "tiny", "--only", "split_rss_steal", "--out", "findings.md",
                                           "--figures", "figures", "--raw", "raw.json")),
]


# Warnings that say something about the host the page was written on, not about the command.
HOST_WARNINGS = ("no free core for the reader", "oversubscribed:", "the TSC advances")

# The values the workflows' ${{ ... }} expressions take here.
WORKFLOW_EXPRESSIONS = {"inputs.designs": "atomic", "inputs.cpus": "1", "matrix.shard": "0", "inputs.duration": "1",
                        "inputs.runner": "ubuntu-latest", "github.workspace": "."}
SLURM_ENV = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "8"}


# ----------------------------------------------------------------------------- the plan of each command

@dataclass
class Plan:
    command: Command
    argv: list[str] | None  # what runs (None: not run)
    env: dict[str, str]
    mark: Mark | None = None
    repeat_of: Command | None = None
    unmarked_reason: str | None = None  # why it may not run as written without a mark

    @property
    def script(self) -> bool:
        return bool(self.argv) and self.argv[0].startswith("python") and self.argv[1].startswith("scripts/")


def _split(cmd: Command) -> tuple[dict[str, str], list[str]]:
    """``A=1 B=2 prog args`` -> ({A: 1, B: 2}, [prog, args]); a workflow step is one bash script."""
    if cmd.file.startswith(".github/") and not cmd.text.startswith("shmrss ") and re.search(r"[\n$|;&<>()]",
                                                                                            cmd.text):
        return {}, ["bash", "-c", cmd.text]  # a shell script: bash runs it as the runner would
    argv = shlex.split(cmd.text)
    env = {}
    while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):
        k, v = argv.pop(0).split("=", 1)
        env[k] = v
    return env, argv


def _option(argv: list[str], opt: str, default: str | None) -> str | None:
    return argv[argv.index(opt) + 1] if opt in argv[:-1] else default


def _why_not_as_written(cmd: Command, argv: list[str]) -> str | None:
    if re.search(r"\s\[-", cmd.text):
        return "a synopsis ([--option ...]): mark it with a form to run"
    if argv[0] in ("pip", "pytest") or argv[0].startswith("python") or argv[0] in (".", "bash"):
        if argv[0] == "bash" and not re.search(r"\bshmrss\s+[a-z-]", cmd.text):
            return None
        return f"{argv[0]} commands need a mark"
    if argv[0] == "taskset":
        argv = argv[argv.index("shmrss"):]
    if argv[0] != "shmrss" or len(argv) < 2 or cmd.error_line:
        return None
    sub = argv[1]
    if sub == "sweep":
        return "a sweep's points are child processes (default: 3 repeats of 5 s)"
    if sub not in ("run", "calibrate") or "--help" in argv:
        return None
    nums = lambda opt, d: [float(x) for x in str(_option(argv, opt, d)).split(",")]  # noqa: E731
    checks = [("--duration", "5", 0.5), ("--repeat", "1", 1), ("--cpus", "2", 2), ("--possible-cpus", "2", 512),
              ("--tasks", "1", 1000)]
    over = [f"{opt} {_option(argv, opt, d)} > {lim:g}" for opt, d, lim in checks if max(nums(opt, d)) > lim]
    return ", ".join(over) or None


def plans() -> list[Plan]:
    seen: dict[tuple[str, str], Command] = {}
    seen_short: dict[tuple, Command] = {}  # a command whose short form the page already runs, once
    out = []
    for cmd in all_commands():
        env, argv = _split(cmd)
        mark = next((m for m in MARKS if m.file in ("*", cmd.file) and re.search(m.match, cmd.text)), None)
        key = (cmd.file, cmd.text)
        if key in seen and not cmd.output and not seen[key].output:
            out.append(Plan(cmd, None, env, mark, repeat_of=seen[key]))
            continue
        seen[key] = cmd
        short_form = mark.rewrite(argv) if mark is not None and mark.rewrite else None
        same = (cmd.file, tuple(short_form or ()), tuple(sorted(env.items())))
        # e.g. findings.md's --cpus 8, 16 and 32, each --cpus 4 here (a sweep's second command resumes)
        if short_form and short_form[:1] == ["shmrss"] and "sweep" not in short_form[1:2] and same in seen_short \
                and not cmd.output and not seen_short[same].output:
            out.append(Plan(cmd, None, env, mark, repeat_of=seen_short[same]))
            continue
        seen_short.setdefault(same, cmd)
        if mark is not None:
            out.append(Plan(cmd, short_form, env, mark))
        else:
            out.append(Plan(cmd, argv, env, unmarked_reason=_why_not_as_written(cmd, argv)))
    return out


PLANS = plans()
PAGES = list(dict.fromkeys(p.command.file for p in PLANS))


# ----------------------------------------------------------------------------- fixtures the pages assume

def _workload(name: str, tapes: dict, tasks: list) -> str:
    return json.dumps({"name": name, "mms": 1, "tapes": tapes, "tasks": tasks})


FIXTURES: dict[str, Callable[[Path], None]] = {
    # cli.md: byte 0x8d at offset 1 is not UTF-8
    "garbage.json": lambda d: (d / "garbage.json").write_bytes(b"[\x8d]"),
    "deep.json": lambda d: (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000),
    "markup.json": lambda d: (d / "markup.json").write_text(_workload(
        "[/x]", {"t": [["fault", "anon", 8], ["unmap", "anon", 8]]}, [{"mm": 0, "tape": "t", "cpu": 0}])),
    # a tape that only yields and sleeps, and both tasks on CPU 0: CPU 1 idles
    "sleepy.json": lambda d: (d / "sleepy.json").write_text(_workload(
        "sleepy", {"t": [["fault", "anon", 8], ["unmap", "anon", 8]], "z": [["yield"], ["sleep", 0]]},
        [{"mm": 0, "tape": "t", "cpu": 0}, {"mm": 0, "tape": "z", "cpu": 0}])),
    # compare.md: a new build's result to set against base.json
    "new.json": lambda d: _in_process(["run", "--design", "atomic", "--mode", "threads", "--duration", SHORT,
                                       "--no-calibrate", "--json", str(d / "new.json")]),
}


def _in_process(argv: list[str]) -> int:
    from shmrss.cli import main

    return main(argv)


class Crafted:
    """monitor.md's refused /dev/shm entries, made under the page's names just before its command (the
    command's comment says which), removed right after."""

    @staticmethod
    def make(comment: str, name: str, monkeypatch) -> None:
        from shmrss import layout as L
        from shmrss.segment import SHM_DIR, Segment

        path = os.path.join(SHM_DIR, name)
        if comment == "64 KiB of zeros":
            Path(path).write_bytes(b"\0" * 65536)
        elif comment == "a FIFO":
            os.mkfifo(path, 0o600)
        elif comment in ("chown 65534", "header says layout version 2"):
            import design_drivers as dd

            seg = Segment.create(dd.geometry("percpu", 2, nmm=3, ntask=2))
            words = seg.words.copy()
            seg.unlink()
            seg.close()
            if comment.startswith("header"):
                words[L.H_VERSION] = int(comment.split()[-1])
            Path(path).write_bytes(words.tobytes())
            os.chmod(path, 0o600)
            if comment.startswith("chown") and os.geteuid() == 0:
                os.chown(path, 65534, 65534)
            elif comment.startswith("chown"):  # only root can give it away: be someone else instead
                me = os.geteuid()
                monkeypatch.setattr(os, "geteuid", lambda: me + 1)
        elif comment:
            raise AssertionError(f"no crafted segment for the comment {comment!r}: add it to Crafted.make")

    @staticmethod
    def remove(name: str, monkeypatch) -> None:
        from shmrss.segment import SHM_DIR

        monkeypatch.undo()
        path = os.path.join(SHM_DIR, name)
        if os.path.lexists(path):
            os.unlink(path)


# ----------------------------------------------------------------------------- running one command

def _expand(argv: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """What a shell does to the pages' words: $VAR and globs."""
    out = []
    for a in argv:
        a = re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), os.environ.get(m.group(1), m.group(0))), a)
        matches = sorted(str(p.relative_to(cwd)) for p in cwd.glob(a)) if "*" in a else []
        out += matches or [a]
    return out


def _copy_repo_inputs(token: str, cwd: Path) -> None:
    """A page may name a file of the repository (``c:tests/kernel_c/x.toml``, ``workloads/x.json``): its folder
    is copied into cwd, so the command finds it there and what it writes never reaches the checkout."""
    for rel in re.findall(r"(?:^|[:=])([\w.-]+/[\w./-]+)", token):
        src = ROOT / rel
        if src.is_file() and not (cwd / rel).exists() and src.parent not in (ROOT, ROOT / "docs", ROOT / "scripts"):
            shutil.copytree(src.parent, cwd / Path(rel).parent, dirs_exist_ok=True)


def _workflow_env(env: dict[str, str]) -> dict[str, str]:
    sub = lambda v: re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: WORKFLOW_EXPRESSIONS[m.group(1)], v)  # noqa: E731
    return {k: sub(v) for k, v in env.items()}


def run_plan(plan: Plan, cwd: Path, capfd, monkeypatch) -> tuple[int, str, str]:
    """Run one planned command in cwd: (exit status, stdout, stderr)."""
    env = {**SLURM_ENV, **plan.env, **_workflow_env(plan.command.env)}
    argv = _expand(plan.argv, env, cwd) if plan.argv[0] != "bash" else plan.argv
    for token in argv:
        if token in FIXTURES and not (cwd / token).exists():
            FIXTURES[token](cwd)
        _copy_repo_inputs(token, cwd)
    if argv[0] == "shmrss":
        capfd.readouterr()
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            crafted = argv[1] == "monitor" and plan.command.comment
            if crafted:
                Crafted.make(plan.command.comment, argv[-1], m)
            try:
                code = _in_process(argv[1:])
            finally:
                if crafted:
                    Crafted.remove(argv[-1], m)
        out, err = capfd.readouterr()
        return code, out, err
    if argv[0].startswith("python"):
        argv = [sys.executable, str(ROOT / argv[1]), *argv[2:]]
    elif argv[0] == "pytest":
        argv = [sys.executable, "-m", "pytest", *argv[1:]]
    full_env = {**os.environ, **env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    p = subprocess.run(argv, cwd=ROOT if argv[1:3] == ["-m", "pytest"] else cwd, env=full_env,
                       capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def check(plan: Plan, code: int, out: str, err: str) -> list[str]:
    """What went wrong, as lines naming the page's command."""
    cmd = plan.command
    head = f"{cmd.where}: `{cmd.text}`" + (f" (ran: `{shlex.join(plan.argv)}`)" if plan.mark else "")
    tail = (err.strip() or out.strip()).splitlines()[-5:]
    documented = cmd.error_line
    if documented:
        got = [ln for ln in err.splitlines() if ln.startswith("shmrss: error:")]
        if code != 2 or not got:
            return [f"{head}: the page shows `{documented}` (exit 2), it exited {code}: {tail}"]
        if normalise_error(got[-1]) != normalise_error(documented):
            return [f"{head}: the page shows\n    {documented}\n  the command says\n    {got[-1]}"]
        return []
    problems = []
    said_exit = re.match(r"exit (\d+)\b", cmd.comment)  # `cmd   # exit 1` on the page
    expected = int(said_exit.group(1)) if said_exit else plan.mark.exit if plan.mark else 0
    if plan.mark and plan.mark.accept:
        problems += [f"{head}: {p}" for p in [plan.mark.accept(code, out, err)] if p]
    elif code != expected:
        problems.append(f"{head}: exited {code}, not {expected}: {tail}")
    said = {normalise_error(ln) for ln in err.splitlines()}
    shown = cmd.output if not plan.mark or plan.mark.warnings else []
    for w in (o for o in shown if o.startswith("WARNING:") and not any(h in o for h in HOST_WARNINGS)):
        if normalise_error(w) not in said:
            problems.append(f"{head}: the page shows `{w}`; the command did not say it")
    return problems


# ----------------------------------------------------------------------------- the tests

@pytest.mark.parametrize("page", PAGES)
def test_the_commands_of_a_page_run(page, tmp_path, capfd, monkeypatch):
    """Each page's commands that are not scripts, in order, in one temporary directory."""
    monkeypatch.chdir(tmp_path)
    todo = [p for p in PLANS if p.command.file == page and p.argv and not p.script]
    problems, lacking = [], []
    for plan in todo:
        lacks = plan.mark.needs() if plan.mark and plan.mark.needs else None
        if lacks:
            lacking.append(f"{plan.command.where}: {lacks}")
            continue
        problems += check(plan, *run_plan(plan, tmp_path, capfd, monkeypatch))
    assert not problems, "\n".join(problems)
    if lacking:  # the page's other commands ran and passed
        pytest.skip("not run on this host: " + "; ".join(lacking))


SCRIPT_PLANS = {p.mark.match: p for p in PLANS if p.argv and p.script and p.mark}  # unmarked: see below


@pytest.mark.parametrize("match", list(SCRIPT_PLANS), ids=lambda m: re.sub(r"\W|python3|scripts", "", m))
def test_scripts_run(match, tmp_path, capfd, monkeypatch):
    """Each script the pages name, once, in its smallest form: it exits 0 and writes its table."""
    plan = SCRIPT_PLANS[match]
    lacks = plan.mark.needs() if plan.mark.needs else None
    if lacks:
        pytest.skip(f"{plan.command.where}: {lacks}")
    code, out, err = run_plan(plan, tmp_path, capfd, monkeypatch)
    assert not check(plan, code, out, err), "\n".join(check(plan, code, out, err))
    assert "|---|" in out or (tmp_path / "findings.md").exists(), f"{plan.command}: no table in\n{out}"


def test_every_help_page_and_calibrate_run(tmp_path, capfd, monkeypatch):
    """``shmrss --help``, every subcommand's ``--help`` and ``calibrate``'s success path (its cache in
    tmp_path, so the user's calibration stays)."""
    monkeypatch.chdir(tmp_path)
    for argv in (["--help"], *([s, "--help"] for s in sorted(subcommands()))):
        assert _in_process(argv) == 0, f"shmrss {' '.join(argv)} failed"
        out = capfd.readouterr().out
        assert out.startswith("usage: shmrss"), f"shmrss {' '.join(argv)}: {out[:200]}"
    import shmrss.calibrate

    monkeypatch.setattr(shmrss.calibrate, "cache_dir", lambda: tmp_path)
    assert _in_process(["calibrate", "--cpus", "1", "--json", "cal.json"]) == 0
    assert (tmp_path / shmrss.calibrate.CACHE_FILE).exists() and (tmp_path / "cal.json").exists()
    assert "ns" in capfd.readouterr().out


def test_every_command_is_run_or_marked():
    """A command runs as written, runs its mark's short form, is a repeat, or is marked not run; every mark
    is used (a stale one fails too)."""
    unmarked = [f"{p.command}: {p.unmarked_reason}: add a Mark with its short form"
                for p in PLANS if p.mark is None and p.repeat_of is None and p.unmarked_reason]
    assert not unmarked, "\n".join(unmarked)
    used = {id(p.mark) for p in PLANS if p.mark}
    stale = [f"{m.file} {m.match!r}" for m in MARKS if id(m) not in used]
    assert not stale, f"marks that match no command any more: {stale}"
    not_run = [p for p in PLANS if p.argv is None and p.repeat_of is None]
    assert all(p.mark.why for p in not_run)
    assert all(re.search(r"^(pip|pytest$|python3 -m venv|\. )", p.command.text) for p in not_run), \
        [str(p.command) for p in not_run if not re.search(r"^(pip|pytest$|python3 -m venv|\. )", p.command.text)]


def test_the_extractor_reads_blocks_as_the_pages_write_them(tmp_path):
    from docs_commands import block_commands, markdown_commands

    subs = {"run", "monitor"}
    lines = ["$ shmrss run --x \\", "    --y   # why", "WARNING: w", "shmrss: error: e", "$ shmrss monitor a"]
    got = block_commands(lines, "p.md", 10, subs)
    assert [(c.line, c.text, c.comment, c.output) for c in got] == [
        (10, "shmrss run --x --y", "why", ["WARNING: w", "shmrss: error: e"]), (14, "shmrss monitor a", "", [])]
    assert got[0].error_line == "shmrss: error: e"
    plain = ["shmrss results", "shmrss-0c30 x", "FOO=1 pytest -m stress  # c", "shmrss run && shmrss monitor b",
             "python scripts/x.py --a", "python -m shmrss run", "echo shmrss run"]
    assert [c.text for c in block_commands(plain, "p.md", 1, subs)] == [
        "FOO=1 pytest -m stress", "shmrss run", "shmrss monitor b", "python scripts/x.py --a", "python -m shmrss run"]
    page = tmp_path / "probe.md"
    page.write_text("text\n\n    shmrss run --a\n\n```c\nshmrss run --no\n```\n\n* item\n\n    shmrss run --no2\n\n"
                    "See `python scripts/y.py\n--b 1` here.\n```console\n$ shmrss monitor z\n```\n")
    assert [(c.line, c.text) for c in markdown_commands(page, subs, "probe.md")] == [
        (3, "shmrss run --a"), (13, "python scripts/y.py --b 1"), (16, "shmrss monitor z")]


def test_a_repository_file_a_command_names_is_copied_into_the_temporary_directory(tmp_path):
    _copy_repo_inputs("c:tests/data/../data", tmp_path)  # not a file: nothing
    assert not (tmp_path / "tests").exists()
    some = next(p for p in sorted((ROOT / "tests" / "data").iterdir()) if p.is_file())
    _copy_repo_inputs(f"--workload=tests/data/{some.name}", tmp_path)
    assert (tmp_path / "tests" / "data" / some.name).read_text() == some.read_text()


def test_errors_compare_without_the_hosts_numbers():
    a = "shmrss: error: segment would need 27.5 GiB for percpu (truth: 4096 CPUs); /dev/shm has 23.5 GiB free"
    b = "shmrss: error: segment would need 27.5 GiB for percpu (truth: 2 CPUs); /dev/shm has 7.1 GiB free"
    assert normalise_error(a) == normalise_error(b)
    c = b.replace("/dev/shm has 7.1 GiB free", "7.1 GiB of memory is available and a segment may take at most "
                                                 "1/2 of it")
    assert normalise_error(a) == normalise_error(c)
    assert normalise_error(a) != normalise_error(a.replace("for percpu", "for atomic"))
    assert normalise_error("shmrss: error: CPU 7 does not exist (online CPUs 0,1)") == \
        normalise_error("shmrss: error: CPU 7 does not exist (online CPUs 0-3,5)")
    assert normalise_error("shmrss: error: CPU 7 is offline") != normalise_error("shmrss: error: CPU 8 is offline")
    assert normalise_error("shmrss: error: layout version 2, reads 1") != normalise_error(
        "shmrss: error: layout version 2, reads 3")


def test_the_leak_check_forgives_a_segment_unlinked_in_its_grace_but_not_an_orphan(new_segment, geometry):
    """ci.yml's leak check, as this test runs it beside other workers: a segment of ours that is gone within
    the grace is a run that was ending; one that stays, owned by no live run outside us, is named."""
    import threading

    with new_segment(geometry("atomic", 1)) as seg:
        listed = f"left in /dev/shm: {seg.name.lstrip('/')}"
        assert orphans_listed(listed, grace_s=0.2) == f"lists a segment no live run owns: {seg.name.lstrip('/')}"
        threading.Timer(0.3, seg.unlink).start()
        assert orphans_listed(listed, grace_s=5.0) is None
