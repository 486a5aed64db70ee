"""The errors every data reader raises: each names the file, and binary formats the byte offset.

- :class:`DataError` (a ``ValueError``): a data set is missing, incomplete or inconsistent
  (no such split, a root without the expected layout, labels that do not fit a recording).
- :class:`FileFormatError` (a ``DataError``): one file is truncated, corrupt or in another
  format; ``path`` and ``offset`` (bytes from the start of the file) say where.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DataError", "FileFormatError"]


class DataError(ValueError):
    """A data file is missing, truncated or corrupt (the message names the file)."""


class FileFormatError(DataError):
    """A file is truncated, corrupt or not in the expected format; ``path`` and ``offset``
    (bytes) say where reading failed."""

    def __init__(self, path: str | os.PathLike, offset: int, what: str) -> None:
        self.path, self.offset, self.what = Path(path), int(offset), what
        super().__init__(f"{path}: {what} (at byte offset {offset}); the file is truncated, "
                         "corrupt or in another format: re-download or re-extract it")

    def __reduce__(self):  # picklable across a process pool
        return (type(self), (self.path, self.offset, self.what))
