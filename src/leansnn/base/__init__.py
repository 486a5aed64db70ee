"""Base utilities every other floor of leansnn may use: atomic file writes, the JSON config
codec for model arguments. Nothing here imports another leansnn package (see
docs/architecture.md for the layer order, enforced by import-linter)."""

from .config import decode, encode, register_configurable
from .io import atomic_write, write_json_file, write_text

__all__ = ["atomic_write", "write_text", "write_json_file", "register_configurable", "encode",
           "decode"]
