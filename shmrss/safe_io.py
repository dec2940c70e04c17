"""Writing and reading the user's files safely: every output goes to a fresh temporary in its own directory
(created with O_CREAT|O_EXCL by ``mkstemp``, so a symlink planted there is never followed) and is renamed
over the target; outputs are checked by really creating a file before anything is measured; inputs are read
only from regular files, with a size limit.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

MAX_LINE_BYTES = 16 << 20  # one results line; a run result is tens of kB


class OutputError(OSError):
    """An output that cannot be written; the message is one line naming the path."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a new temporary in the same directory, fsync, rename.

    A symlink at ``path`` itself is replaced, not followed. Raises OutputError with one line."""
    p = Path(path)
    if p.name in ("", ".", ".."):
        raise OutputError(f"{path!r} is not a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name[:64]}.", suffix=".tmp", dir=p.parent or ".")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, p)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    return p


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def _lstat_or_none(p: Path, prefix: str = ""):
    """The path's own status (a link not followed), None when nothing is there; OutputError otherwise."""
    try:
        return os.lstat(p)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OutputError(f"{prefix}cannot use {p}: {e.strerror}") from None


def check_file_output(path: str | Path, what: str) -> Path:
    """Refuse (OutputError) an output file that cannot be written, by creating a temporary next to it.

    ``os.access`` is not enough: it says yes to root on /proc and read-only mounts."""
    if str(path) == "":
        raise OutputError(f"{what}: an empty path")
    p = Path(path)
    st = _lstat_or_none(p, f"{what}: ")
    if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise OutputError(f"{what}: {path} exists and is not a regular file")
    parent = p.parent
    if not parent.is_dir():
        raise OutputError(f"{what}: directory {parent.resolve()} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name[:64]}.", suffix=".probe", dir=parent)
    except OSError as e:
        raise OutputError(f"{what}: cannot write in {parent}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(tmp)
    return p


def check_dir_output(path: str | Path, what: str) -> Path:
    """Refuse an output directory that cannot be made or written (creating a probe file in it)."""
    if str(path) == "":
        raise OutputError(f"{what}: an empty path")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{what}: {path} exists and is not a directory")
    if not p.exists():
        if not p.parent.is_dir():
            raise OutputError(f"{what}: directory {p.parent.resolve()} does not exist")
        check_file_output(p, what)  # the directory can be made where a file could
        return p
    try:
        fd, tmp = tempfile.mkstemp(prefix=".shmrss-", suffix=".probe", dir=p)
    except OSError as e:
        raise OutputError(f"{what}: cannot write in {path}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(tmp)
    return p


def make_dir(path: str | Path) -> Path:
    """A directory a command makes inside its output directory (``report``'s ``wis``), checked like its files:
    a symlink planted at the path is replaced by a real directory, never followed; anything else that is not
    a directory is refused (OutputError)."""
    p = Path(path)
    st = _lstat_or_none(p)
    try:
        if st is not None and stat.S_ISLNK(st.st_mode):
            os.unlink(p)
            st = None
        if st is None:
            os.mkdir(p)
        elif not stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{path} exists and is not a directory")
    except FileExistsError:
        raise OutputError(f"{path} appeared while it was being made; refused") from None
    except OSError as e:
        raise OutputError(f"cannot make {path}: {e.strerror or e}") from None
    return p


class InputFileError(ValueError):
    """An input that is not a readable regular file; one line."""


# What read_regular says in each case; a caller words them its own way (wlfile.WORKLOAD_WORDS) by passing
# its own table. Fields: path, strerror, mib (the size, whole MiB), size_mib (exact), max_mib (the cap).
READ_WORDS = {
    "missing": "{path}: no such file",
    "unreadable": "cannot read {path}: {strerror}",
    "directory": "{path} is a directory, not a results file",
    "special": "{path} is not a regular file",
    "too_big": "{path} is {mib} MiB, more than the {max_mib} MiB read",
    "grew": "{path} grew past the {max_mib} MiB read",
}


def _open_checked(path: str | Path, max_bytes: int, words: dict[str, str]) -> int:
    """A descriptor of the regular file ``path`` of at most ``max_bytes``; InputFileError otherwise."""

    def refuse(case: str, **fields) -> InputFileError:
        return InputFileError(words[case].format(path=path, max_mib=max_bytes >> 20, **fields))

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO opens without a writer
    except FileNotFoundError as e:
        raise refuse("missing", strerror=e.strerror) from None
    except OSError as e:
        raise refuse("unreadable", strerror=e.strerror) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise refuse("directory")
        if not stat.S_ISREG(st.st_mode):
            raise refuse("special")
        if st.st_size > max_bytes:
            raise refuse("too_big", mib=st.st_size >> 20, size_mib=st.st_size / 2**20)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: str | Path, max_bytes: int, words: dict[str, str] = READ_WORDS):
    """A binary file object of the regular file ``path`` (at most ``max_bytes`` when opened), to read as a
    stream; the checks and words of ``read_regular``."""
    return os.fdopen(_open_checked(path, max_bytes, words), "rb")


def read_regular(path: str | Path, max_bytes: int, words: dict[str, str] = READ_WORDS) -> bytes:
    """The bytes of a regular file, refusing FIFOs, devices and directories without blocking on them.

    Raises InputFileError with one line, ``words[case]`` filled in (the cases of READ_WORDS)."""

    def refuse(case: str, **fields) -> InputFileError:
        return InputFileError(words[case].format(path=path, max_mib=max_bytes >> 20, **fields))

    fd = _open_checked(path, max_bytes, words)
    try:
        chunks, left = [], max_bytes + 1
        while left > 0:
            b = os.read(fd, min(left, 1 << 20))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise refuse("grew")
        return data
    except OSError as e:
        raise refuse("unreadable", strerror=e.strerror) from None
    finally:
        os.close(fd)
