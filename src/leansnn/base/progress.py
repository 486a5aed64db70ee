"""Progress display for every loop: a tqdm bar on a terminal, periodic plain lines otherwise.

``progress(iterable, total=, desc=, quiet=)`` is a drop-in for the ``tqdm(...)`` calls of
the loops (iteration, ``update(n)``, ``set_postfix(dict)``, ``close()``, ``with``):

* stderr is a terminal: a ``tqdm`` bar (``leave=False`` by default);
* stderr is a file or a pipe (a log, CI, ``nohup``): one plain line
  ``desc: n/total (p %), 12.3 s, loss=0.41`` at most every ``every`` seconds (default 30,
  ``$LEANSNN_PROGRESS_EVERY``) and one when the loop ends -- no ``\\r`` redraws;
* ``quiet=True``: nothing (results are printed by the caller, never here).

``$LEANSNN_PROGRESS`` forces a style: ``bar``, ``lines`` or ``none``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["progress", "style", "PlainProgress"]


def style(quiet: bool = False) -> str:
    """``"none"``, ``"bar"`` or ``"lines"``: what :func:`progress` shows now."""
    if quiet:
        return "none"
    forced = os.environ.get("LEANSNN_PROGRESS", "").strip().lower()
    if forced in ("bar", "lines", "none"):
        return forced
    try:
        return "bar" if sys.stderr.isatty() else "lines"
    except (AttributeError, ValueError):  # closed or replaced stderr
        return "lines"


def _every() -> float:
    try:
        return max(0.0, float(os.environ.get("LEANSNN_PROGRESS_EVERY", "30")))
    except ValueError:
        return 30.0


class PlainProgress:
    """The plain-line form (and, with ``quiet``, the silent one) of a progress display."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None,
                 desc: str = "", quiet: bool = False, every: float | None = None,
                 unit: str = "it", stream: Any = None) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable, self.total, self.desc, self.quiet = iterable, total, desc, quiet
        self.every = _every() if every is None else float(every)
        self.unit, self.stream = unit, stream
        self.n = 0
        self.postfix: dict = {}
        self._t0 = self._last = time.perf_counter()
        self._closed = False

    # tqdm's interface, as far as the loops use it
    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("progress(): no iterable given; call update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if not self.quiet and now - self._last >= self.every:
            self._last = now
            self._print()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kw) -> None:
        self.postfix = {**(ordered_dict or {}), **kw}

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if not self._closed and not self.quiet and self.n:
            self._print()
        self._closed = True

    def line(self) -> str:
        """The line this display prints now."""
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        post = "".join(f", {k}={v}" for k, v in self.postfix.items())
        head = f"{self.desc}: " if self.desc else ""
        return f"{head}{done} {self.unit}{pct}, {time.perf_counter() - self._t0:.1f} s{post}"

    def _print(self) -> None:
        print(self.line(), file=self.stream or sys.stderr, flush=True)


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "",
             quiet: bool = False, *, leave: bool = False, unit: str = "it",
             every: float | None = None) -> Any:
    """A progress display over ``iterable`` (or updated by hand with ``total``); see the
    module docstring. ``quiet`` hides it."""
    how = style(quiet)
    if how == "bar":
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=leave, unit=unit)
    return PlainProgress(iterable, total=total, desc=desc, quiet=how == "none", every=every,
                         unit=unit)
