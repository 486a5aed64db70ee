"""``leansnn bench``: run the committed benchmark scripts of the source repository."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from ._common import log_stream, write_json

NAME = "bench"
HELP = "run a benchmark script from benchmarks/ (needs `make bench-setup` for the peers)"
EXAMPLE = "leansnn bench neurons --no-write"


def _bench_dir() -> Path:
    import leansnn

    return Path(leansnn.__file__).resolve().parents[2] / "benchmarks"


def _available() -> list[str]:
    d = _bench_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.py") if not p.stem.startswith("_"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", default=None,
                   help="benchmark to run (omit to list them): " + ", ".join(_available()))
    p.add_argument("args", nargs=argparse.REMAINDER,
                   help="arguments passed on to the script (e.g. --no-write)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="without NAME: the list of benchmarks as JSON to PATH (no PATH or '-': "
                        "stdout); a script's own results are in its output files")
    p.add_argument("--quiet", action="store_true",
                   help="without NAME: no list on the terminal (with --json: only the JSON)")


def run(args: argparse.Namespace) -> int:
    d = _bench_dir()
    names = _available()
    if not names:
        raise ValueError(f"no benchmark scripts in {d}; they ship with the source repository "
                         "(git clone it and run `make bench-setup`)")
    if args.name is None:
        if not args.quiet or not args.json:
            print("benchmarks: " + ", ".join(names), file=log_stream(args))
        write_json(args, {"benchmarks": names, "folder": str(d)})
        return 0
    if args.name not in names:
        raise ValueError(f"unknown benchmark {args.name!r}; choose one of {', '.join(names)}")
    return subprocess.call([sys.executable, str(d / f"{args.name}.py"), *args.args])
