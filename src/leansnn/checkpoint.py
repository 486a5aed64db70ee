"""Checkpoints that carry their config and never execute pickled code.

A ``.lsnn`` file is a ``torch.save`` archive holding only tensors, numbers, strings, lists
and dicts: ``{"magic", "format_version", "meta_json", "state_dict", ...}``. It is read with
``torch.load(weights_only=True)``, which refuses arbitrary Python objects. ``meta_json`` is
JSON text with the model config (registry name and arguments), the leansnn version, a note,
and whatever the caller adds (training configuration, metrics).

Writes are atomic: the archive goes to a temporary file in the same folder, is flushed to
disk, then renamed over the target, so an interruption never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base.io import atomic_write
from .base.version import __version__

__all__ = ["save", "load", "load_checkpoint", "FORMAT_VERSION", "CheckpointError"]

MAGIC = "leansnn-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file could not be read as a leansnn checkpoint (the message says why)."""


def save(
    model: nn.Module,
    path: str | os.PathLike,
    note: str = "",
    *,
    meta: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    **state: Any,
) -> Path:
    """Save ``model``'s weights and the config needed to rebuild it, atomically.

    ``config`` defaults to ``model.checkpoint_config()`` if the model defines it (a converted
    SNN records its result this way, and raises a ``ValueError`` saying why when it cannot be
    saved), else ``model.leansnn_config`` (set by ``leansnn.models.create``).
    ``meta`` is extra JSON-able metadata (training settings, metrics). Further keyword
    arguments (``optimizer=opt.state_dict()``, ``epoch=3``, ...) are stored as they are and
    must be tensors, numbers, strings, lists or dicts. Returns the path written.
    """
    cfg = config
    if cfg is None:
        hook = getattr(model, "checkpoint_config", None)
        cfg = hook() if callable(hook) else getattr(model, "leansnn_config", None)
    info = {
        "config": cfg,
        "leansnn_version": __version__,
        "note": note,
        "meta": meta or {},
    }
    try:
        meta_json = json.dumps(info)
    except TypeError as e:
        raise ValueError(f"checkpoint metadata must be JSON-serialisable: {e}") from None
    payload = {
        "magic": MAGIC,
        "format_version": FORMAT_VERSION,
        "meta_json": meta_json,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **state,
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely; return its payload with ``meta`` (parsed JSON) added."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a leansnn checkpoint: not a torch archive (truncated, corrupt or "
            "another format); re-create it with leansnn.save"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for damaged or foreign archives
        raise CheckpointError(
            f"{path} could not be read as a leansnn checkpoint (truncated or corrupt, or it "
            f"contains Python objects that leansnn refuses to unpickle): {e}"
        ) from None
    if not isinstance(payload, dict) or payload.get("magic") != MAGIC:
        raise CheckpointError(
            f"{path} is a torch file but not a leansnn checkpoint (no leansnn header); load "
            "plain state_dicts with model.load_state_dict(torch.load(path, weights_only=True))"
        )
    ver = payload.get("format_version")
    if not isinstance(ver, int) or ver > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {ver!r}, newer than this leansnn ({__version__}, "
            f"format {FORMAT_VERSION}) can read; upgrade leansnn"
        )
    try:
        payload["meta"] = json.loads(payload["meta_json"])
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: damaged metadata ({e})") from None
    return payload


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved by :func:`save` and load its weights (never unpickles code)."""
    from .models import from_config

    payload = load_checkpoint(path, map_location)
    cfg = payload["meta"].get("config")
    if cfg is None:
        raise CheckpointError(
            f"{path} has no model config (saved from a model not built by "
            "leansnn.models.create); rebuild the model yourself and call "
            "model.load_state_dict(leansnn.load_checkpoint(path)['state_dict'])"
        )
    model = from_config(cfg)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        name = cfg.get("name")
        raise CheckpointError(f"{path}: weights do not fit model {name!r}: {e}") from None
    model.leansnn_meta = payload["meta"]
    return model
