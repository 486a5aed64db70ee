"""Finding a data set's folder: one root, used whole, with errors that show the layout.

A data set is looked up under ``root`` (the ``--root`` option) or, when that is ``None``,
``$LEANSNN_DATA``; in that folder and in the sub-folders its distribution unpacks to (e.g.
``cifar-10-batches-bin``). The first candidate with the expected layout is the data set's
root and every file is read from it: files are never mixed from two roots, and a split
missing from the chosen root is an error, not a reason to look elsewhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import DataError

__all__ = ["resolve_root", "natural_key", "check_split"]


def natural_key(name: str) -> list:
    """Sort key comparing the numbers in names as numbers (``img2`` before ``img10``)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(name))]


def check_split(dataset: str, split: str, splits: Sequence[str]) -> str:
    """``split`` if it is one of ``splits``, else a :class:`DataError` listing them."""
    if split not in splits:
        raise DataError(f"{dataset}: no split {split!r}; this data set has "
                        f"{', '.join(repr(s) for s in splits)}")
    return split


def resolve_root(root: str | os.PathLike | None, dataset: str, subdirs: Sequence[str],
                 check: Callable[[Path], bool], layout: str) -> Path:
    """The folder holding ``dataset``: ``root`` (else ``$LEANSNN_DATA``) or one of its
    ``subdirs``, the first for which ``check(folder)`` is true. ``layout`` describes what is
    expected, for the error message."""
    base = root if root is not None else os.environ.get("LEANSNN_DATA")
    if not base:
        raise DataError(f"{dataset}: no data folder given; pass root=FOLDER (--root FOLDER) or "
                        f"set LEANSNN_DATA=FOLDER, with the layout {layout}")
    base = Path(base).expanduser()
    if not base.is_dir():
        raise DataError(f"{dataset}: root {base} is not a folder (expected the layout "
                        f"{layout})")
    candidates = [base] + [base / s for s in subdirs]
    for c in candidates:
        if c.is_dir() and check(c):
            return c
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(f"{dataset}: {base} does not have the expected layout {layout} "
                    f"(looked in {looked})")
