"""Atomic file writes: nothing a user saved is ever half-written.

Every writer goes through :func:`atomic_write`: the content goes to a temporary file in the
target's folder, is flushed to disk, and is renamed over the target, so an interruption (a
crash, Ctrl-C, a full disk) leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_text", "write_json_file", "remove_stale_temporaries",
           "DiskFullError"]


class DiskFullError(OSError):
    """A write ran out of space (or quota); the previous file at the target is intact."""


_NAME_ROOM = 200  # bytes of a target's name kept in its temporaries' names (limit 255)
_STALE_AGE = 3600.0  # seconds after which a temporary file of a live process counts as stale
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _tmp_stem(name: str) -> str:
    """The part of a temporary's name ``.<stem>.<pid>-<random>.tmp`` that stands for the
    target ``name``: the name itself, or, when the temporary's name would pass the 255-byte
    limit of file names, its start plus a digest of the whole."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= _NAME_ROOM:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return raw[:_NAME_ROOM - 13].decode("utf-8", "ignore") + "~" + digest


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove ``.<name>.<pid>-<random>.tmp`` files beside ``path`` left by killed writes;
    return them.

    A temporary file is stale when the process that wrote it (its pid is in the name) is
    gone, when its name records no pid (older writers), or when it has not changed for an
    hour; the temporaries of live writers are kept, and so are those of other files whose
    names start with this one's (``model.csv`` beside ``model``).
    """
    path = Path(path)
    stem = _tmp_stem(path.name)
    mine = re.compile(rf"\.{re.escape(stem)}\.(?:(\d+)-)?[A-Za-z0-9_]+\.tmp")
    removed = []
    now = time.time()
    try:
        siblings = list(path.parent.glob(f".{glob.escape(stem)}.*.tmp"))
    except OSError:
        return removed
    for p in siblings:
        match = mine.fullmatch(p.name)
        if match is None:
            continue  # the temporary of another file (``.model.csv.<pid>-x.tmp``)
        pid = int(match.group(1)) if match.group(1) else None
        try:
            age = now - p.stat().st_mtime
        except OSError:
            continue
        writing = pid is not None and (pid == os.getpid() or _pid_alive(pid))
        if writing and age < _STALE_AGE:
            continue  # another writer (thread or process) is still at work
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def _write_error(e: BaseException, path: Path) -> BaseException:
    """A clear error for a write that failed for lack of space, else ``e`` itself."""
    full = isinstance(e, OSError) and e.errno in _FULL
    text = str(e)
    if isinstance(e, RuntimeError) and ("write failed" in text or "No space" in text):
        full = True
    if not full:
        return e
    try:
        free = f" ({shutil.disk_usage(path.parent).free / 1e6:.1f} MB free)"
    except OSError:
        free = ""
    err = DiskFullError(errno.ENOSPC, f"cannot write {path}: no space left on the device"
                        f"{free}; the previous file (if any) is intact; free some space or "
                        "write elsewhere")
    return err


def _check_target(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` whose folder exists (created if needed), or a clear
    ``ValueError`` / ``OSError`` when it cannot name a file: empty, an existing folder, or a
    folder part that is a file."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"output path must be a str or os.PathLike, got {type(path).__name__}")
    text = os.fspath(path)
    if not str(text).strip():
        raise ValueError("output path is empty; give a file name such as 'out/model.lsnn'")
    path = Path(path)
    if path.is_dir() or str(text).endswith(("/", os.sep)) or path.name in ("", ".", ".."):
        raise IsADirectoryError(
            errno.EISDIR, f"cannot write {path}: it is a folder, not a file; give a file "
            f"name inside it (e.g. {path / 'out.lsnn'})")
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(
                errno.ENOTDIR, f"cannot write {path}: {parent} is a file, not a folder; "
                "choose another output path or move that file away")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _existing_mode(path: Path) -> int | None:
    """Permission bits of the file at ``path`` if there is one (kept by the rewrite)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None


def atomic_write(path: str | os.PathLike, write_fn: Callable[[str], Any]) -> Path:
    """Call ``write_fn(tmp_path)`` then atomically rename ``tmp_path`` to ``path``.

    The temporary file ``.<name>.<pid>-<random>.tmp`` lives beside ``path`` (same file
    system, so the rename is atomic); it is removed again if ``write_fn`` raises, and the
    temporaries of earlier writes that were killed are removed before writing. A full disk
    raises :class:`DiskFullError` (an ``OSError``) and leaves the old file intact. Returns
    ``path`` as a ``Path``.
    """
    path = _check_target(path)
    mode = _existing_mode(path)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{_tmp_stem(path.name)}.{os.getpid()}-", suffix=".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the result the permissions of a plain open():
        # an existing file keeps its own, a new one gets 0666 less the umask
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        err = _write_error(e, path)
        if err is e:
            raise
        raise err from None
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_file(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as strict JSON (no NaN/Infinity: a ValueError names the problem)."""
    text = json.dumps(obj, indent=indent, allow_nan=False)
    return write_text(path, text + "\n")
