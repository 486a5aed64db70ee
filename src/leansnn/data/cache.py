"""One checked, atomic on-disk cache for every data set that converts raw files once.

A cache entry is a *stem* (a path prefix) holding named numpy arrays, ``<stem>.<name>.npy``,
and a JSON header ``<stem>.json`` written last. The header records

- ``format``: :data:`CACHE_FORMAT` (bumped whenever the layout of any cached data changes);
- ``key``: a hash of every setting that shaped the data (:func:`settings_key`: the data set,
  split, binning settings, the reader's version and :func:`source_fingerprint` of the raw
  files), also part of the file name, so changing anything selects another entry;
- per array: shape, dtype and a checksum (:func:`file_digest`).

:func:`open_cache` returns the arrays (memory-mapped, read-only) only when the header is
readable, the key and format match and every file's checksum agrees; a damaged entry gives a
warning and ``None`` (the caller converts again and overwrites it). :func:`write_cache`
writes each array atomically (temporary file + rename, :func:`leansnn.base.io.atomic_write`)
and the header last, so an interrupted conversion never leaves an entry that looks valid.
Arrays can be *streamed* (:class:`Stream`): chunks are appended as they are produced and
the row count is filled into the ``.npy`` header at the end, so a data set larger than memory
is converted in one pass.

For files larger than 8 MiB the checksum covers the size and 128 evenly spaced 64 KiB blocks,
including the first and last (a spot check that keeps opening fast; writes are atomic, so
damage in practice means a truncated or overwritten file).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..base.io import atomic_write

__all__ = ["CACHE_FORMAT", "CacheError", "Stream", "default_cache_dir", "file_digest",
           "array_digest", "settings_key", "source_fingerprint", "read_cache", "open_cache",
           "write_cache"]

CACHE_FORMAT = 2
_NPY_HEADER = 128   # bytes reserved for the .npy header of a streamed array


class CacheError(ValueError):
    """A cache entry is missing, damaged or was made with other settings."""


def default_cache_dir() -> Path:
    """``$LEANSNN_CACHE`` if set, else ``~/.cache/leansnn``."""
    env = os.environ.get("LEANSNN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "leansnn"


def file_digest(path: str | os.PathLike, block: int = 1 << 16, blocks: int = 128) -> str:
    """Checksum of a file: all of it up to ``block * blocks`` bytes, else its size and
    ``blocks`` evenly spaced blocks including the first and the last."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as fh:
        if size <= block * blocks:
            h.update(fh.read())
        else:
            for off in np.linspace(0, size - block, blocks).astype(np.int64):
                fh.seek(int(off))
                h.update(fh.read(block))
    return h.hexdigest()


def array_digest(*arrays: np.ndarray) -> str:
    """Checksum of the dtype, shape and content of arrays."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def settings_key(settings: dict) -> str:
    """A 20-hex-digit key of a JSON-able settings dict (order of keys does not matter)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def source_fingerprint(paths: Sequence[str | os.PathLike], root: str | os.PathLike) -> str:
    """Fingerprint of the raw files a cache entry was made from: each file's path relative to
    ``root``, its size and a spot checksum of 16 blocks of 4 KiB (the whole file up to
    64 KiB). Moving the root keeps the fingerprint; replacing, truncating or editing a file
    (at the checked places) changes it."""
    root = Path(root)
    h = hashlib.blake2b(digest_size=16)
    for p in paths:
        p = Path(p)
        try:
            rel = p.relative_to(root).as_posix()
        except ValueError:
            rel = p.as_posix()
        h.update(rel.encode() + b"\0")
        try:
            h.update(file_digest(p, block=4096, blocks=16).encode())
        except OSError as e:
            h.update(f"unreadable {e.errno}".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Stream:
    """An array written chunk by chunk: ``chunks`` yields arrays of shape ``[n_i, *tail]``
    (any ``n_i``), concatenated along dim 0 into one ``.npy`` file of ``dtype``."""

    dtype: Any
    tail: tuple[int, ...]
    chunks: Iterable[np.ndarray]


def _paths(stem: Path, names: Iterable[str]) -> tuple[Path, dict[str, Path]]:
    stem = Path(stem)
    return (stem.with_name(stem.name + ".json"),
            {n: stem.with_name(f"{stem.name}.{n}.npy") for n in names})


def read_cache(stem: str | os.PathLike, key: str, names: Sequence[str]
               ) -> tuple[dict[str, np.ndarray], dict]:
    """Return ``(arrays, header)`` of the entry at ``stem`` or raise :class:`CacheError`
    saying what is wrong. Arrays are read-only memory maps."""
    meta_p, files = _paths(Path(stem), names)
    try:
        meta = json.loads(meta_p.read_text())
    except (OSError, ValueError) as e:
        raise CacheError(f"{meta_p}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("key") != key \
            or meta.get("format") != CACHE_FORMAT:
        raise CacheError(f"{meta_p}: key or format mismatch")
    out = {}
    for name, p in files.items():
        info = meta.get("arrays", {}).get(name)
        if not isinstance(info, dict):
            raise CacheError(f"{meta_p}: no entry for array {name!r}")
        try:
            digest = file_digest(p)
        except OSError as e:
            raise CacheError(f"{p}: unreadable ({e})") from None
        if digest != info.get("digest"):
            raise CacheError(f"{p}: checksum mismatch (truncated or modified)")
        try:
            arr = _load(p)
        except (OSError, ValueError) as e:
            raise CacheError(f"{p}: cannot load ({type(e).__name__}: {e})") from None
        if list(arr.shape) != info.get("shape") or arr.dtype.str != info.get("dtype"):
            raise CacheError(f"{p}: shape {arr.shape} / dtype {arr.dtype} differ from the "
                             "header")
        out[name] = arr
    return out, meta


def open_cache(stem: str | os.PathLike, key: str, names: Sequence[str]
               ) -> tuple[dict[str, np.ndarray], dict] | None:
    """:func:`read_cache` if the entry exists and is intact; ``None`` when there is none; a
    damaged entry warns (saying what is wrong) and gives ``None`` so the caller rebuilds it."""
    meta_p, _ = _paths(Path(stem), names)
    if not meta_p.exists():
        return None
    try:
        return read_cache(stem, key, names)
    except CacheError as e:
        warnings.warn(f"cache entry is damaged, not using it (converting again): {e}",
                      stacklevel=3)
        return None


def _load(p: Path) -> np.ndarray:
    """A read-only memory map of a ``.npy`` file (an empty array is read normally: it cannot
    be memory-mapped)."""
    try:
        return np.load(p, mmap_mode="r")
    except ValueError:
        arr = np.load(p)
        if arr.size:
            raise
        return arr


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 ``.npy`` header padded to exactly :data:`_NPY_HEADER` bytes."""
    d = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(int(s) for s in shape)})
    body_len = _NPY_HEADER - 10
    if len(d) + 1 > body_len:
        raise ValueError(f"npy header for shape {shape} does not fit in {_NPY_HEADER} bytes")
    body = d.ljust(body_len - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little") + body.encode("latin1")


def _write_stream(tmp: str, s: Stream) -> None:
    dtype, tail = np.dtype(s.dtype), tuple(int(t) for t in s.tail)
    rows = 0
    with open(tmp, "wb") as fh:
        fh.write(b"\0" * _NPY_HEADER)
        for chunk in s.chunks:
            c = np.ascontiguousarray(chunk, dtype=dtype)
            if c.shape[1:] != tail:
                raise ValueError(f"streamed chunk of shape {c.shape}, expected [n, *{tail}]")
            fh.write(memoryview(c).cast("B"))
            rows += c.shape[0]
        fh.seek(0)
        fh.write(_npy_header(dtype, (rows, *tail)))


def write_cache(stem: str | os.PathLike, key: str, settings: dict,
                arrays: dict[str, np.ndarray | Stream | Callable[[], np.ndarray]],
                extra: dict | Callable[[], dict] | None = None) -> Path:
    """Write ``arrays`` (in the order given; streams are consumed, callables are called when
    their turn comes, so they can use what producing earlier streams found) and then the
    header of the entry at ``stem``; every file is written atomically. ``settings`` (what
    ``key`` hashes) and ``extra`` (a dict, or a callable returning one after the arrays are
    written) are stored in the header for people reading it. Returns ``stem``."""
    stem = Path(stem)
    meta_p, files = _paths(stem, arrays)
    info = {}
    for name, a in arrays.items():
        if callable(a) and not isinstance(a, np.ndarray):
            a = a()
        if isinstance(a, Stream):
            atomic_write(files[name], lambda tmp, a=a: _write_stream(tmp, a))
        else:
            def save(tmp: str, a=a) -> None:
                with open(tmp, "wb") as fh:
                    np.save(fh, np.ascontiguousarray(a))
            atomic_write(files[name], save)
        arr = _load(files[name])
        info[name] = {"shape": list(arr.shape), "dtype": arr.dtype.str,
                      "digest": file_digest(files[name])}
        del arr
    if callable(extra):
        extra = extra()
    meta = {"format": CACHE_FORMAT, "key": key, "settings": settings, "arrays": info,
            **(extra or {})}
    atomic_write(meta_p, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1,
                                                                     default=str)))
    return stem
