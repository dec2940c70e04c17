"""The house plan (docs/architecture.md) holds: import-linter's contracts in pyproject.toml pass on the
tree, and each contract breaks on a copy of the tree with one bad import added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the tree at root (its pyproject.toml, its shmrss/ first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache", str(root / "pyproject.toml")], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    p = _lint(ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "3 kept, 0 broken" in p.stdout, p.stdout


def test_no_module_imports_the_cli_in_a_string_either():
    """A subprocess that runs the CLI goes through ``-m shmrss``, not ``from shmrss.cli import main``."""
    offenders = [str(f.relative_to(ROOT)) for f in (ROOT / "shmrss").rglob("*.py")
                 if f.name not in ("__main__.py", "cli.py") and "shmrss.cli" in f.read_text()]
    assert offenders == []


@pytest.mark.parametrize("module, line, broken", [
    # upward: the bottom layer reaching the CLI breaks the layers and the forbidden contract
    ("shmrss/errors.py", "from shmrss import cli", ("layers", "only shmrss.__main__")),
    # upward: the engine importing the run that drives it
    ("shmrss/engine/build.py", "from shmrss import orchestrator", ("layers",)),
    # a module that is in no layer (the contract is exhaustive)
    ("shmrss/unplaced.py", "import os", ("layers",)),
    # sideways within one layer: faults and orchestrator importing each other again is a cycle
    ("shmrss/faults.py", "from shmrss import orchestrator", ("no import cycle",)),
    # a workload module running the CLI by importing it
    ("shmrss/workloads/mixed.py", "from shmrss.cli import main", ("layers", "only shmrss.__main__")),
    # the run layer reaching up to the named workloads built on it
    ("shmrss/workload.py", "from shmrss import workloads", ("layers",)),
])
def test_a_bad_import_breaks_a_contract(tmp_path, module, line, broken):
    shutil.copytree(ROOT / "shmrss", tmp_path / "shmrss", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text((target.read_text() if target.exists() else '"""A module outside the plan."""\n')
                      + f"\n{line}  # noqa\n")
    p = _lint(tmp_path)
    assert p.returncode != 0, p.stdout
    for name in broken:
        assert any(name in ln and "BROKEN" in ln for ln in p.stdout.splitlines()), (name, p.stdout)


@pytest.mark.parametrize("argv", [["-m", "shmrss"], ["-m", "shmrss.workloads.page_fault1"],
                                  [str(ROOT / "workloads" / "page_fault1.py")]])
def test_the_cli_runs_through_main_and_from_a_workload_script(argv):
    """``python -m shmrss``, ``python -m shmrss.workloads.NAME`` and, from a checkout, ``python
    workloads/NAME.py`` (a link to it; both exec the CLI) refuse bad input in one line."""
    run = ["run"] if argv == ["-m", "shmrss"] else []
    p = subprocess.run([sys.executable, *argv, *run, "--cpus", "0"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == ["shmrss: error: argument --cpus: must be in [1, 4096], got 0"]


def test_a_workload_script_dumps_its_data():
    p = subprocess.run([sys.executable, str(ROOT / "workloads" / "exec.py"), "--dump"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0 and '"name": "exec"' in p.stdout, p.stderr


def test_a_workload_dump_into_a_closed_pipe_is_quiet():
    """``python -m shmrss.workloads.NAME --dump | head -c 10``: no BrokenPipeError traceback."""
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the child writes a byte
    try:
        p = subprocess.run([sys.executable, "-m", "shmrss.workloads.mixed", "--dump"], stdout=w,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w)
    assert p.returncode == 0 and p.stderr == "", p.stderr


def test_the_checkouts_workloads_folder_links_to_the_package():
    """The repository's workloads/ folder (users know ``python workloads/NAME.py``) holds links to the
    modules of shmrss.workloads, one per named workload, and no package of its own (no __init__.py)."""
    from shmrss import workloads

    folder = ROOT / "workloads"
    scripts = sorted(f.name for f in folder.glob("*.py"))
    assert scripts == sorted(f"{name}.py" for name in workloads.WORKLOADS)
    assert all((folder / s).is_symlink() and (folder / s).resolve() == ROOT / "shmrss" / "workloads" / s
               for s in scripts)


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory) -> Path:
    """``pip wheel .`` of this checkout, built once for the wheel tests."""
    dist, tree = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("tree")
    # from a copy: pip builds in the source tree, and two test workers building one tree at once collide
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "shmrss", tree / "shmrss", ignore=shutil.ignore_patterns("__pycache__"))
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(tree)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    (wheel,) = dist.glob("shmrss-*.whl")
    return wheel


def test_the_wheel_holds_every_package_and_the_workloads_inside_shmrss(built_wheel, tmp_path):
    """``pip install .`` carries every package under shmrss (the engine's templates included: a hand list
    once left shmrss/engine out) and the schema; the named workloads are at shmrss/workloads, not in a
    top-level ``workloads`` package; run from the unpacked wheel alone, ``-m shmrss.workloads.NAME`` works
    and ``workloads`` is not importable."""
    import zipfile

    with zipfile.ZipFile(built_wheel) as z:
        names = z.namelist()
        top = z.read(next(n for n in names if n.endswith(".dist-info/top_level.txt"))).decode().split()
        z.extractall(tmp_path / "site")
    assert top == ["shmrss"]
    assert not [n for n in names if n.startswith("workloads/")]
    sources = {str(f.relative_to(ROOT)) for f in (ROOT / "shmrss").rglob("*.py")}
    sources |= {str(f.relative_to(ROOT)) for f in (ROOT / "shmrss").rglob("*.json")}
    assert sources - set(names) == set()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    code = "import shmrss, sys; print(shmrss.__file__); import workloads"
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert p.stdout.startswith(str(tmp_path / "site")) and "No module named 'workloads'" in p.stderr, p
    p = subprocess.run([sys.executable, "-m", "shmrss.workloads.mixed", "--dump"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and '"name": "mixed"' in p.stdout, p.stderr


def _venv_with(wheel: Path, where: Path) -> Path:
    """A fresh venv holding the wheel alone; its dependencies come from this interpreter's site-packages
    through a .pth line (a .pth file in a directory named that way is not processed, so this checkout's
    editable install stays out). Returns the venv's ``bin``."""
    import site
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    vpy = where / "bin" / "python"
    purelib = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    Path(purelib, "zz_shmrss_test_deps.pth").write_text("".join(f"{d}\n" for d in sorted(here)))
    p = subprocess.run([sys.executable, "-m", "pip", "--python", str(vpy), "install", "-q", "--no-deps",
                        str(wheel)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return where / "bin"


def test_the_installed_wheel_runs_a_design_from_another_directory(built_wheel, tmp_path):
    """The wheel's console script, from a directory that is not the checkout: ``shmrss --help`` and a
    short run of one design (the run compiles the engine from the installed templates)."""
    bin_dir = _venv_with(built_wheel, tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = subprocess.run([str(bin_dir / "python"), "-c", "import shmrss; print(shmrss.__file__)"], cwd=elsewhere,
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.startswith(str(tmp_path / "venv")), p
    p = subprocess.run([str(bin_dir / "shmrss"), "--help"], cwd=elsewhere, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and "compare" in p.stdout, p.stderr
    p = subprocess.run([str(bin_dir / "shmrss"), "run", "--design", "atomic", "--duration", "0.5", "--cpus", "1"],
                       cwd=elsewhere, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "invariants" in p.stdout and "all hold" in p.stdout, p.stdout


def test_one_stdout_console():
    """The commands' stdout console is made in one place (issue 12, item 8): piped, it is 200 columns wide."""
    from shmrss import cli, console, monitor

    assert cli._out_console is console.stdout_console and monitor.stdout_console is console.stdout_console
    makers = [str(f.relative_to(ROOT)) for f in (ROOT / "shmrss").rglob("*.py")
              if "Console(width=" in f.read_text() and f.name != "console.py"]
    assert makers == []
    assert console.stdout_console().width == console.PIPED_WIDTH  # pytest captures stdout: not a terminal
