"""Where compiled code is kept: a directory only this user can write, so nobody can plant code in it.

``cache_dir()`` holds the specialised modules ``shmrss.specialise`` writes and
numba's pickled machine code beside them (both imported, so run as us). See
docs/segment-security.md.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from loguru import logger


def cache_dir() -> Path:
    """The directory of the generated engine modules and numba's pickled caches (imported, so run as us).

    ``$SHMRSS_CACHE_DIR``, else ``$XDG_CACHE_HOME/shmrss`` (``~/.cache/shmrss``), used only when it and its
    ``__pycache__`` are owned by this user and writable by no one else (checked with lstat, no symlink
    followed); otherwise a warning and ``$TMPDIR/shmrss-cache-<uid>[-N]``, the first such directory that is
    private, so later runs reuse it. The same fallback, for the rest of the process, once a write into the
    directory failed for want of space (``fall_back``). See docs/segment-security.md."""
    base = os.environ.get("SHMRSS_CACHE_DIR")
    if base:
        d = Path(base)
    else:
        try:
            home_cache = Path.home() / ".cache"
        except RuntimeError:  # no HOME and no passwd entry
            home_cache = Path("/nonexistent")
        d = Path(os.environ.get("XDG_CACHE_HOME") or home_cache) / "shmrss"
    if d in _full:
        return _fallback_dir()
    why = _make_private(d)
    if why is None:
        return d
    if why != "cannot create" and d not in _warned:
        _warned.add(d)
        logger.warning("cache directory {} {}: another user could plant code there; not used", d, why)
    return _fallback_dir()


_warned: set[Path] = set()
_full: set[Path] = set()  # cache directories a write failed in for want of space, this process
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def no_space(e: BaseException) -> bool:
    """True for the OSError of a full file system or an exhausted quota."""
    return isinstance(e, OSError) and e.errno in NO_SPACE


def fall_back(failed: Path, e: OSError) -> Path:
    """After a write into the compile cache ``failed`` ran out of space: warn (once, naming the path) and use the
    private temporary cache from now on, as for an unusable directory. Raises OSError with one line naming
    both when the temporary cache is that same directory (or is as full)."""
    fb = _fallback_dir()
    if failed == fb or failed in _full and fb in _full:
        raise OSError(e.errno, f"no space for the compile cache in {failed} ({e.strerror})") from None
    if failed not in _full:
        _full.add(failed)
        logger.warning("compile cache {}: {}; compiling into {} instead", failed, e.strerror or e, fb)
    return fb
_fallback: Path | None = None
_FALLBACK_TRIES = 8


def _fallback_dir() -> Path:
    """The first private ``shmrss-cache-<uid>[-N]`` in the temporary directory, made if missing; a fresh
    one for this process only when all are taken (planted by someone else)."""
    global _fallback
    if _fallback is not None and _private_tree(_fallback):
        return _fallback
    tmp = Path(tempfile.gettempdir())
    for i in range(_FALLBACK_TRIES):
        d = tmp / (f"shmrss-cache-{os.geteuid()}" + (f"-{i}" if i else ""))
        if _make_private(d) is None:
            _fallback = d
            return d
    try:
        _fallback = Path(tempfile.mkdtemp(prefix="shmrss-cache-"))
    except OSError as e:
        raise OSError(f"no private directory for the compile cache ({tmp}: {e.strerror})") from None
    logger.warning("every shmrss-cache-{}* in {} belongs to someone else; compiling into {}", os.geteuid(), tmp,
                   _fallback)
    return _fallback


def _make_private(d: Path) -> str | None:
    """Make ``d`` and ``d/__pycache__`` (mode 0700) if missing; None if both are private, else why not."""
    for sub in (d, d / "__pycache__"):
        try:
            sub.mkdir(mode=0o700, parents=sub is d)
        except FileExistsError:
            pass
        except OSError:
            return "cannot create"
        why = _not_private(sub)
        if why:
            return why if sub is d else f"has a __pycache__ that {why}"
    try:
        fd, probe = tempfile.mkstemp(dir=d, prefix=".w")
        os.close(fd)
        os.unlink(probe)
    except OSError:
        return "cannot create"
    return None


def _not_private(d: Path) -> str | None:
    try:
        st = os.lstat(d)
    except OSError as e:
        return f"cannot be looked at ({e.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.geteuid():
        return f"belongs to uid {st.st_uid}"
    if st.st_mode & 0o022:
        return f"is group- or world-writable (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _private_tree(d: Path) -> bool:
    return _not_private(d) is None and _not_private(d / "__pycache__") is None
