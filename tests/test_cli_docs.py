"""docs/cli.md documents every sub-command and every option of the real parser."""

import argparse
from pathlib import Path

from leansnn.cli import build_parser

DOC = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_command_and_option_is_documented():
    missing = []
    for name, sub in _subparsers().items():
        if f"`leansnn {name}" not in DOC:
            missing.append(f"command {name}")
        for action in sub._actions:
            for opt in action.option_strings:
                if opt.startswith("--") and opt != "--help" and f"`{opt}" not in DOC:
                    missing.append(f"{name} {opt}")
    assert not missing, f"not in docs/cli.md: {missing}"


def test_every_command_has_an_example_in_its_help():
    for name, sub in _subparsers().items():
        assert sub.epilog and f"leansnn {name}" in sub.epilog, name
