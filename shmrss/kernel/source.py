"""Where kernel source comes from: ``--kernel-src DIR``, ``$SHMRSS_KERNEL_SRC``, or Debian's tarball.

A kernel tree is any directory with the files a built-in kernel design compiles
(``lib/percpu_counter.c`` and ``include/linux/percpu_counter.h`` for k-percpu).
``extract(tarball, dest)`` takes only those from Debian's
``/usr/src/linux-source-6.1.tar.xz`` into a cache directory: the project commits
no kernel source. ``python -m shmrss.kernel.source [DEST]`` does it for CI and prints DEST.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
from pathlib import Path

ENV = "SHMRSS_KERNEL_SRC"
DEBIAN_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
FILES = ("lib/percpu_counter.c", "include/linux/percpu_counter.h", "Makefile")


class KernelSourceError(Exception):
    """No usable kernel source; the message is one line."""


def kernel_dir(given: str | None = None, files: tuple[str, ...] = FILES[:2]) -> Path:
    """The kernel tree named by ``given`` or ``$SHMRSS_KERNEL_SRC``, checked to hold ``files`` (k-percpu's)."""
    text = given or os.environ.get(ENV)
    if not text:
        raise KernelSourceError(f"no kernel source: pass --kernel-src DIR or set {ENV}")
    d = Path(text).expanduser()
    for rel in files:
        if not (d / rel).is_file():
            raise KernelSourceError(f"kernel source {d}: {rel} not found")
    return d.resolve()


def version(d: Path) -> str:
    """``6.1.158`` from the tree's Makefile (VERSION, PATCHLEVEL, SUBLEVEL), or ``unknown``."""
    try:
        lines = (d / "Makefile").read_text(errors="replace").splitlines()[:8]
    except OSError:
        return "unknown"
    v = {k.strip(): val.strip() for k, _, val in (ln.partition("=") for ln in lines) if val}
    parts = [v.get(k, "") for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL")]
    return ".".join(p for p in parts if p) or "unknown"


def extract(tarball: Path, dest: Path) -> Path:
    """Extract k-percpu's files from a linux-source tarball into ``dest`` (kept if already there)."""
    if all((dest / f).is_file() for f in FILES):
        return dest
    if not tarball.is_file():
        raise KernelSourceError(f"{tarball} not found (apt-get install linux-source-6.1)")
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(tarball) as tar:
        for member in tar:
            top, _, rel = member.name.partition("/")
            if rel in FILES and member.isfile():
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tar.extractfile(member).read())
    missing = [f for f in FILES if not (tmp / f).is_file()]
    if missing:
        shutil.rmtree(tmp, ignore_errors=True)
        raise KernelSourceError(f"{tarball} has no {', '.join(missing)}")
    shutil.rmtree(dest, ignore_errors=True)  # an interrupted extraction leaves only its .tmp
    tmp.rename(dest)
    return dest


def main(argv: list[str]) -> int:
    dest = Path(argv[0]) if argv else Path.home() / ".cache" / "shmrss-kernel-src" / "linux-6.1"
    try:
        print(extract(DEBIAN_TARBALL, dest))
    except (KernelSourceError, OSError) as e:
        print(f"shmrss: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
