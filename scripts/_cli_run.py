"""Shared by the benchmark scripts: one ``shmrss run`` in a subprocess, its JSON result back."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def run_json(args: list[str], source: str | None = None):
    """``shmrss run ARGS --json TMP``; the loaded result (an object, or a list for several runs), from the
    results document of this shmrss or the plain object or list an earlier one wrote.

    A run whose invariants failed still wrote its result (exit 1): the caller
    reports it. A run that wrote nothing ends the script with its stderr.
    """
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.json"
        cmd = [sys.executable, "-m", "shmrss", "run", *args, "--json", str(out)]
        env = None
        if source:  # another checkout of shmrss (bench_engine.py --before): first on the path
            import os

            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if not out.exists():
            raise SystemExit(f"shmrss run {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
        doc = json.loads(out.read_text())
        if isinstance(doc, dict) and "schema_version" in doc:  # {"schema_version": 1, "results": [...]}
            results = doc["results"]
            return results[0] if len(results) == 1 else results
        return doc  # an earlier shmrss (--before): one object, or a list
