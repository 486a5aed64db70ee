"""The ``leansnn`` command. Sub-commands live in :mod:`leansnn.commands`, one module each.

A command module defines ``NAME``, ``HELP``, ``EXAMPLE``, ``add_arguments(parser)`` and
``run(args) -> int``. Errors a user can fix (missing files, bad names, missing data) are
``ValueError``/``OSError`` subclasses (leansnn's ``CheckpointError``, ``DataError``,
``BatchError``, ``ConversionError``, ``NIRExportError``, ...): :func:`main` prints them as
one line ``leansnn COMMAND: error: ...`` and returns 2, as it does for running out of memory
(naming ``--T`` and ``--batch-size``) and for torch's shape and dtype errors raised while a
model runs on the data. Anything else is a bug: a traceback and exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the example's layout and shows every option's default (unless its help text
    already says it, or there is none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default in (None, False, argparse.SUPPRESS)
                or action.option_strings == [] or action.nargs == 0):
            return text
        return text + " (default: %(default)s)"


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
            formatter_class=HelpFormatter,
        )
        mod.add_arguments(p)
        for action in p._actions:   # options without a help text still show their default
            if action.help is None and action.default not in (None, False, argparse.SUPPRESS):
                action.help = "(default: %(default)s)"
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        if getattr(args, "json", None) == "-":   # stdout is for the JSON alone
            args._stdout = sys.stdout
            with contextlib.redirect_stdout(sys.stderr):
                return int(args._run(args) or 0)
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("leansnn: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - user mistakes become one line, bugs re-raise
        msg = user_error(e)
        if msg is None:
            raise
        print(f"leansnn {args.command}: error: {msg}", file=sys.stderr)
        return 2


_MEMORY = ("not enough memory", "DefaultCPUAllocator", "out of memory", "CUDA out of memory",
           "can't allocate memory")
_TORCH_INPUT = ("size mismatch", "shapes cannot be multiplied", "Expected input", "expected input",
                "Given groups", "must match the size", "expected scalar type", "Input type",
                "should be the same", "Expected 3D", "Expected 4D", "Expected 5D",
                "Kernel size can't be greater", "Calculated padded input size",
                "output size is too small", "invalid for input of size",
                "must have the same dtype", "doesn't match the broadcast shape")
_OS_HINT = {errno.ENOSPC: "the disk is full; free space or write elsewhere (--out)",
            errno.EDQUOT: "disk quota exceeded; free space or write elsewhere (--out)",
            errno.EACCES: "permission denied", errno.EROFS: "read-only file system"}


def user_error(e: BaseException) -> str | None:
    """The one-line message for an exception a user can fix, None for a bug."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError)
                                      and any(m in text for m in _MEMORY)):
        return ("out of memory (" + first[:160] + "); use a smaller --T or --batch-size "
                "(or fewer --test-images)")
    if isinstance(e, OSError) and not isinstance(e, (ValueError,)):
        where = e.filename if getattr(e, "filename", None) else None
        hint = _OS_HINT.get(e.errno or -1)
        if hint:
            return f"{where}: {hint}" if where else f"{hint} ({first})"
        return first if e.errno is None or where is None else \
            f"{where}: {e.strerror or first}"
    if isinstance(e, ImportError) and "install" in text:   # an optional extra is missing
        return first
    if isinstance(e, ValueError):
        # leansnn's messages are one line, or a list (a headline, then one item per line)
        return text or type(e).__name__
    if isinstance(e, RuntimeError) and any(m in text for m in _TORCH_INPUT):
        return (f"the model cannot run on this input ({first[:200]}); check that --data, "
                "--size and --T match what the model was trained on")
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
