"""The leansnn version (one place; the package root and checkpoints read it)."""

__version__ = "0.1.0"
