"""Options every ``leansnn`` sub-command spells the same way, and their handling.

``--device cpu|cuda`` (``auto`` where a command offers it), ``--seed N``, ``--threads N``,
``--json [PATH]`` (no PATH or ``-``: standard output) and ``--root DIR`` (the data set's
folder). ``--data NAME`` and the data settings flags are in :mod:`._data`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT_HELP = ("folder of the --data set, in its own layout (default: $LEANSNN_DATA; "
             "Fashion-MNIST also /usr/share/datasets/fashion-mnist)")


def add_common(p: argparse.ArgumentParser, *, device_auto: bool = False, seed: int | None = 0,
               json_help: str = "write the results as JSON to PATH (no PATH or '-': stdout)",
               root: bool = True) -> None:
    """Add ``--device``, ``--threads``, ``--seed`` (unless ``seed`` is None), ``--json`` and
    ``--root``."""
    choices = ["auto", "cpu", "cuda"] if device_auto else ["cpu", "cuda"]
    p.add_argument("--device", default=choices[0], choices=choices,
                   help="where to compute (default %(default)s" +
                        (": cuda when available)" if device_auto else ")"))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    if seed is not None:
        p.add_argument("--seed", type=int, default=seed,
                       help="random seed (data subsets, initialisation; default %(default)s)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH", help=json_help)
    if root:
        p.add_argument("--root", default=None, metavar="DIR", help=ROOT_HELP)


def setup(args: argparse.Namespace) -> None:
    """Apply ``--threads`` and check ``--device`` (a clear error when CUDA is missing)."""
    import torch

    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if getattr(args, "device", None) == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here; use --device cpu")


def log_stream(args: argparse.Namespace):
    """Where human-readable output goes: stderr when JSON goes to stdout."""
    return sys.stderr if getattr(args, "json", None) == "-" else sys.stdout


def write_json(args: argparse.Namespace, obj: Any) -> None:
    """Write ``obj`` as JSON where ``--json`` says (stdout for ``-``; atomically to a file)."""
    target = getattr(args, "json", None)
    if not target:
        return
    text = json.dumps(obj, indent=1, default=str)
    if target == "-":
        print(text)
        return
    from leansnn.base.io import atomic_write

    atomic_write(Path(target), lambda tmp: Path(tmp).write_text(text + "\n"))


def positive(args: argparse.Namespace, *names: str) -> None:
    """Raise a one-line error for any of ``names`` (attribute names) that is below 1."""
    for name in names:
        v = getattr(args, name, None)
        vals = v if isinstance(v, list) else [v]
        bad = [x for x in vals if x is not None and x < 1]
        if bad:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} must be >= 1, got {bad[0] if len(vals) == 1 else bad}")
