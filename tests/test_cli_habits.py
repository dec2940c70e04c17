"""Interface habits: --version, -v/-q after the subcommand, --json - writes the JSON alone on stdout."""

from __future__ import annotations

import json

from results_schema import validate_document

from shmrss import __version__
from shmrss.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"shmrss {__version__}"


def test_verbose_and_quiet_are_accepted_after_the_subcommand(capsys):
    assert main(["cleanup", "-v"]) == 0
    capsys.readouterr()
    assert main(["cleanup", "-q"]) == 0  # -q: info lines hidden
    assert main(["-q", "cleanup"]) == 0
    assert "INFO" not in capsys.readouterr().err
    assert main(["cleanup", "-v", "-q"]) == 2


def test_json_dash_writes_the_json_alone_to_stdout(capsys):
    code = main(["run", "--design", "atomic", "--cpus", "1", "--duration", "0.5", "--no-calibrate", "--no-reader",
                 "--json", "-"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)  # nothing else on stdout
    validate_document(doc)
    assert doc["results"][0]["design"] == "atomic"
    assert "shmrss results" in err  # the table went to stderr
