"""Atomic file writes: nothing a user saved is ever half-written.

Every writer goes through :func:`atomic_write`: the content goes to a temporary file in the
target's folder, is flushed to disk, and is renamed over the target, so an interruption (a
crash, Ctrl-C, a full disk) leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_text", "write_json_file"]


def atomic_write(path: str | os.PathLike, write_fn: Callable[[str], Any]) -> Path:
    """Call ``write_fn(tmp_path)`` then atomically rename ``tmp_path`` to ``path``.

    The temporary file lives beside ``path`` (same file system, so the rename is atomic);
    it is removed again if ``write_fn`` raises. Returns ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the result the permissions of a plain open()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_file(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as strict JSON (no NaN/Infinity: a ValueError names the problem)."""
    text = json.dumps(obj, indent=indent, allow_nan=False)
    return write_text(path, text + "\n")
