"""The ``leansnn`` command. Sub-commands live in :mod:`leansnn.commands`, one module each.

A command module defines ``NAME``, ``HELP``, ``EXAMPLE``, ``add_arguments(parser)`` and
``run(args) -> int``. Errors a user can fix (missing files, bad names, missing data) are
``ValueError``/``OSError`` subclasses: they are printed as one line, exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

__all__ = ["main", "build_parser"]


def _command_modules() -> list:
    from . import commands

    mods = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            mods.append(importlib.import_module(f"{commands.__name__}.{info.name}"))
    return mods


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="leansnn",
        description="Lean spiking neural networks: train, convert, analyse.",
    )
    parser.add_argument("--version", action="version", version=f"leansnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(
            mod.NAME, help=mod.HELP, description=mod.HELP,
            epilog=f"example:\n  {mod.EXAMPLE}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("leansnn: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        print(f"leansnn {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
