"""Checkpoints that carry their config, prove their integrity and never execute pickled code.

A ``.lsnn`` file is a ``torch.save`` archive holding only tensors, numbers, strings, lists
and dicts: ``{"magic", "format_version", "meta_json", "meta_sha256", "state_dict", ...}``.
It is read with ``torch.load(weights_only=True)``, which refuses arbitrary Python objects.
``meta_json`` is JSON text with the model config (registry name and arguments), the kind of
network (``"ann"``, ``"snn"`` for a directly trained SNN, ``"converted"``), the leansnn
version, a note, whatever the caller adds (training configuration, metrics), and a SHA-256
digest of every stored tensor (state dict, optimizer state, ...). ``meta_sha256`` is the
digest of ``meta_json`` itself.

Loading verifies, before any model is built: the archive, the header, the metadata (JSON
of bounded nesting, a config whose arguments the model's builder accepts with the right
types), the digests (a flipped bit is an error naming the tensor; files written before
digests existed load without this check), and that the config describes exactly the
tensors in the file (built on the ``meta`` device, so a config asking for petabytes
allocates nothing). Every problem is one :class:`CheckpointError` (a ``ValueError``).

Writes are atomic (:func:`leansnn.base.io.atomic_write`): the archive goes to a temporary
file in the same folder, is flushed to disk, then renamed over the target, so an
interruption or a full disk never leaves a half-written file.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import types
import typing
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .base.io import atomic_write
from .base.version import __version__

__all__ = ["save", "load", "load_checkpoint", "checkpoint_kind", "require_kind",
           "model_kind", "validate_config", "tensor_digest", "FORMAT_VERSION", "KINDS",
           "CheckpointError"]

MAGIC = "leansnn-checkpoint"
FORMAT_VERSION = 1
KINDS = ("ann", "snn", "converted")
MAX_DEPTH = 32  # nesting of metadata and extra state (optimizer state is about 4 deep)
_KIND_NAMES = {"ann": "an ANN", "snn": "a directly trained SNN", "converted": "a converted SNN"}


class CheckpointError(ValueError):
    """A file could not be read as a leansnn checkpoint (the message says why)."""


# --- saving ---------------------------------------------------------------------------------

def tensor_digest(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (hex)."""
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(memoryview(t.view(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def _plain(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` if it is plain data (tensors, numbers, strings, lists, dicts), tensors moved
    to the CPU; else ``ValueError`` naming where the offending object sits."""
    if depth > MAX_DEPTH:
        raise ValueError(f"checkpoint entry {where}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            raise ValueError(f"checkpoint entry {where}: {value.layout} tensors are not "
                             "supported; store value.to_dense()")
        return value.detach().cpu()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        out = [_plain(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        return out if isinstance(value, list) else tuple(out)
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise ValueError(f"checkpoint entry {where}: key {k!r} of type "
                                 f"{type(k).__name__}; keys must be strings or ints")
        return {k: _plain(v, f"{where}[{k!r}]", depth + 1) for k, v in value.items()}
    raise ValueError(
        f"checkpoint entry {where} is a {type(value).__name__}; a checkpoint stores only "
        "tensors, numbers, strings, lists and dicts (leansnn.load never unpickles objects), "
        "so convert it (e.g. obj.state_dict(), a list, a number) before saving")


def _walk_tensors(value: Any, where: str, out: dict[str, torch.Tensor]) -> None:
    if isinstance(value, torch.Tensor):
        out[where] = value
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _walk_tensors(v, f"{where}[{i}]", out)
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk_tensors(v, f"{where}[{k!r}]", out)


def model_kind(model: nn.Module, config: dict | None = None) -> str:
    """``"converted"``, ``"snn"`` (spiking neurons inside) or ``"ann"``."""
    from .neuron import SpikingNeuron

    name = config.get("name") if isinstance(config, dict) else None
    if name == "converted" or type(model).__name__ == "ConvertedSNN":
        return "converted"
    return "snn" if any(isinstance(m, SpikingNeuron) for m in model.modules()) else "ann"


def _digests(state_dict: dict, extras: dict) -> dict[str, dict[str, str]]:
    tensors: dict[str, torch.Tensor] = {}
    for k, v in extras.items():
        _walk_tensors(v, k, tensors)
    return {"algorithm": "sha256",
            "state_dict": {k: tensor_digest(v) for k, v in state_dict.items()},
            "extra": {k: tensor_digest(v) for k, v in tensors.items()}}


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
    must be tensors, numbers, strings, lists or dicts: anything else is a ``ValueError``
    here, never a file that cannot be loaded. Every tensor's SHA-256 goes into the metadata.
    Returns the path written.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"leansnn.save needs an nn.Module, got {type(model).__name__}")
    reserved = {"magic", "format_version", "meta_json", "meta_sha256", "state_dict", "meta"}
    clash = sorted(reserved & set(state))
    if clash:
        raise ValueError(f"leansnn.save: {clash} are reserved checkpoint entries")
    extras = {k: _plain(v, k) for k, v in state.items()}
    cfg = config
    if cfg is None:
        hook = getattr(model, "checkpoint_config", None)
        cfg = hook() if callable(hook) else getattr(model, "leansnn_config", None)
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    info = {
        "config": cfg,
        "kind": model_kind(model, cfg),
        "leansnn_version": __version__,
        "note": note,
        "meta": meta or {},
        "digests": _digests(state_dict, extras),
    }
    try:
        meta_json = json.dumps(info)
    except (TypeError, ValueError, RecursionError) as e:
        raise ValueError(f"checkpoint metadata must be JSON-serialisable: {e}") from None
    payload = {
        "magic": MAGIC,
        "format_version": FORMAT_VERSION,
        "meta_json": meta_json,
        "meta_sha256": hashlib.sha256(meta_json.encode()).hexdigest(),
        "state_dict": state_dict,
        **extras,
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


# --- reading and verifying ------------------------------------------------------------------

def _first_line(e: BaseException, limit: int = 200) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= limit else text[:limit] + " ..."


def _device(map_location: Any) -> torch.device | None:
    """The device ``map_location`` names (a string or ``torch.device``), checked to be usable
    here; ``None`` for a dict or callable (passed to ``torch.load`` as it is)."""
    if not isinstance(map_location, (str, torch.device)):
        if map_location is None or isinstance(map_location, dict) or (
                callable(map_location) and not isinstance(map_location, torch.dtype)):
            return None
        raise CheckpointError(
            f"map_location={map_location!r} is not a device (e.g. 'cpu', 'cuda:0'), a dict or "
            "a function; to change the dtype, call model.to(dtype) after loading")
    try:
        dev = torch.device(map_location)
    except (RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"map_location={map_location!r} is not a device (e.g. 'cpu', "
                              f"'cuda', 'cuda:1'): {_first_line(e, 120)}") from None
    if dev.type != "meta":
        try:
            torch.empty(0, device=dev)
        except Exception as e:  # not compiled in, no such GPU, ...
            raise CheckpointError(
                f"map_location={map_location!r}: this machine cannot hold tensors on {dev} "
                f"({_first_line(e, 120)}); load with map_location='cpu'") from None
    return dev


def _to_device(value: Any, dev: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(dev)
    if isinstance(value, list):
        return [_to_device(v, dev) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_device(v, dev) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v, dev) for k, v in value.items()}
    return value


def _match_dtypes(model: nn.Module, sd: dict) -> None:
    """Give ``model``'s floating tensors the dtypes of the stored ones (a float64 or float16
    model comes back as it was saved, not rounded into the builder's float32)."""
    for mname, mod in model.named_modules(remove_duplicate=False):
        prefix = f"{mname}." if mname else ""
        for store in (mod._parameters, mod._buffers):
            for n, t in store.items():
                s = sd.get(prefix + n)
                if (t is not None and isinstance(s, torch.Tensor) and t.dtype != s.dtype
                        and t.is_floating_point() and s.is_floating_point()):
                    t.data = t.data.to(s.dtype)


def _read_archive(path: Path, map_location) -> dict:
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
            f"contains Python objects that leansnn refuses to unpickle): {_first_line(e)}"
        ) from None
    if not isinstance(payload, dict) or payload.get("magic") != MAGIC:
        raise CheckpointError(
            f"{path} is a torch file but not a leansnn checkpoint (no leansnn header); load "
            "plain state_dicts with model.load_state_dict(torch.load(path, weights_only=True))"
        )
    return payload


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of parsed JSON, stopping once it exceeds ``limit``."""
    stack, deepest = [(value, 1)], 0
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def _parse_meta(path: Path, payload: dict) -> dict:
    text = payload.get("meta_json")
    if not isinstance(text, str):
        raise CheckpointError(f"{path}: damaged checkpoint: no metadata text (meta_json is "
                              f"{type(text).__name__})")
    want = payload.get("meta_sha256")
    if want is not None and hashlib.sha256(text.encode()).hexdigest() != want:
        raise CheckpointError(f"{path}: the metadata fails its SHA-256 check: the file is "
                              "corrupt (a changed byte); restore it from a copy")
    try:
        meta = json.loads(text)
    except RecursionError:
        raise CheckpointError(f"{path}: damaged metadata: JSON nested too deeply") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: damaged metadata ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: damaged metadata: a JSON {type(meta).__name__}, "
                              "expected an object")
    if _depth(meta, MAX_DEPTH + 8) > MAX_DEPTH + 8:
        raise CheckpointError(f"{path}: damaged metadata: JSON nested more than "
                              f"{MAX_DEPTH + 8} levels deep")
    return meta


def _check_version(path: Path, payload: dict) -> None:
    ver = payload.get("format_version")
    if isinstance(ver, bool) or not isinstance(ver, int) or ver < 1:
        raise CheckpointError(
            f"{path}: damaged checkpoint header: format_version is {ver!r}, not a format "
            f"number (leansnn writes {FORMAT_VERSION}); the file is corrupt or was not "
            "written by leansnn.save")
    if ver > FORMAT_VERSION:
        wrote = "a newer leansnn"
        try:
            v = json.loads(payload.get("meta_json", "")).get("leansnn_version")
            wrote = f"leansnn {v}" if isinstance(v, str) else wrote
        except (ValueError, AttributeError, TypeError, RecursionError):
            pass
        raise CheckpointError(
            f"{path} has checkpoint format {ver} (written by {wrote}), newer than this leansnn "
            f"({__version__}, formats up to {FORMAT_VERSION}) reads: upgrade leansnn to load it")


def _check_state_dict(path: Path, payload: dict) -> None:
    sd = payload.get("state_dict")
    if not isinstance(sd, dict):
        what = "missing" if sd is None else f"a {type(sd).__name__}, not a dict"
        raise CheckpointError(f"{path}: damaged checkpoint: the state dict is {what}")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: damaged checkpoint: state dict entries {bad[:5]} are "
                              "not named tensors")


def _verify_digests(path: Path, payload: dict, meta: dict) -> None:
    """Compare every tensor with its recorded SHA-256 (files without digests pass)."""
    dig = meta.get("digests")
    if dig is None:
        return
    if not isinstance(dig, dict) or not isinstance(dig.get("state_dict"), dict):
        raise CheckpointError(f"{path}: damaged metadata: the tensor digests are malformed")
    groups = [("state_dict", payload["state_dict"], dig["state_dict"], "state dict")]
    extra: dict[str, torch.Tensor] = {}
    for k, v in payload.items():
        if k not in ("magic", "format_version", "meta_json", "meta_sha256", "state_dict",
                     "meta"):
            _walk_tensors(v, k, extra)
    groups.append(("extra", extra, dig.get("extra") or {}, "stored"))
    for _, tensors, want, label in groups:
        missing = sorted(set(want) - set(tensors))
        unlisted = sorted(set(tensors) - set(want))
        if missing or unlisted:
            raise CheckpointError(
                f"{path}: the {label} tensors differ from those recorded at save time "
                f"(missing {missing[:5]}, not recorded {unlisted[:5]}); the file was altered")
        for name, t in tensors.items():
            if tensor_digest(t) != want[name]:
                raise CheckpointError(
                    f"{path}: tensor {name!r} fails its SHA-256 check: the file is corrupt "
                    "(a changed bit or byte); restore it from a copy or retrain")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely and verify it; return its payload with ``meta`` added.

    Checks the header, the metadata and every tensor's digest (when recorded). The model
    config is checked by :func:`load` (or :func:`validate_config`).
    """
    path = Path(path)
    dev = _device(map_location)
    on_meta = dev is not None and dev.type == "meta"  # no data there: verify on the CPU
    payload = _read_archive(path, "cpu" if on_meta else map_location)
    _check_version(path, payload)
    meta = _parse_meta(path, payload)
    _check_state_dict(path, payload)
    _verify_digests(path, payload, meta)
    if on_meta:
        payload = _to_device(payload, dev)
    payload["meta"] = meta
    return payload


# --- the config against the builder ---------------------------------------------------------

def _type_ok(value: Any, ann: Any) -> bool:
    """Does decoded JSON ``value`` fit the annotation ``ann`` (unknown annotations pass)?"""
    if ann is inspect.Parameter.empty or ann is Any or isinstance(ann, str):
        return True
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(ann))
    if ann is None or ann is type(None):
        return value is None
    if ann is bool:
        return isinstance(value, bool)
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if ann is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ann is str:
        return isinstance(value, str)
    if ann in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(ann)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_type_ok, value, args))
        return not args or all(_type_ok(v, args[0]) for v in value)
    if ann is dict or origin is dict:
        return isinstance(value, dict)
    return True


def _signature(fn) -> inspect.Signature:
    try:
        return inspect.signature(fn, eval_str=True)
    except Exception:  # an annotation that does not evaluate: check names only
        return inspect.signature(fn)


def validate_config(cfg: Any, where: str = "checkpoint") -> tuple[Any, dict]:
    """Check a model config against its builder's signature; return ``(builder, kwargs)``.

    Unknown or missing model names, unknown arguments, arguments of the wrong type and
    arguments the builder needs but the config lacks are one :class:`CheckpointError`.
    Nested model configs (a converted SNN's ``ann``) are checked too. Nothing is built.
    """
    from .models.registry import builder, decode

    if not isinstance(cfg, dict) or not isinstance(cfg.get("name"), str):
        raise CheckpointError(f"{where}: the model config is not {{'name': str, 'kwargs': "
                              f"dict}} but {str(cfg)[:120]}")
    kwargs = cfg.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{where}: the model arguments are a {type(kwargs).__name__}, "
                              "not a dict")
    try:
        fn = builder(cfg["name"])
    except ValueError as e:
        raise CheckpointError(f"{where}: {e}") from None
    sig = _signature(fn)
    params = sig.parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise CheckpointError(
                f"{where}: model {cfg['name']!r} has no argument(s) {unknown}; it accepts "
                f"{sorted(params)}")
    need = [n for n, p in params.items() if p.default is p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in kwargs]
    if need:
        raise CheckpointError(f"{where}: model {cfg['name']!r} needs argument(s) {need}")
    try:
        decoded = decode(kwargs)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{where}: model {cfg['name']!r}: {e}") from None
    for name, value in kwargs.items():
        p = params.get(name)
        if p is None:
            continue
        if isinstance(value, dict) and "name" in value and "kwargs" in value:
            validate_config(value, f"{where}: argument {name!r}")
        elif isinstance(value, dict) and "__class__" in value:
            continue  # a registered class, rebuilt (and checked) by decode above
        elif not _type_ok(value, p.annotation):
            raise CheckpointError(
                f"{where}: model {cfg['name']!r} argument {name}={str(value)[:60]} has the "
                f"wrong type (expected {_ann_name(p.annotation)})")
    return fn, decoded


def _ann_name(ann: Any) -> str:
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")


class _LargeOnMeta(TorchFunctionMode):
    """Tensor factories asked for more than a few thousand values without a device make
    ``meta`` tensors (shapes, no memory); small ones (neuron constants checked at build
    time) stay real."""

    LIMIT = 4096
    FACTORIES = frozenset({torch.empty, torch.zeros, torch.ones, torch.full, torch.rand,
                           torch.randn, torch.randint, torch.empty_strided})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self.FACTORIES and kwargs.get("device") is None:
            dims = args[0] if args and isinstance(args[0], (tuple, list, torch.Size)) else [
                a for a in args if isinstance(a, int) and not isinstance(a, bool)]
            if func is torch.randint:
                dims = next((a for a in args if isinstance(a, (tuple, list, torch.Size))), ())
            n = 1
            for d in dims:
                n *= int(d)
            if n > self.LIMIT:
                kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _meta_model(path: Path, fn, kwargs: dict, name: str) -> nn.Module | None:
    """Build the model with its large tensors on the ``meta`` device (no memory); ``None``
    if the builder cannot be run that way."""
    try:
        with _LargeOnMeta():
            return fn(**kwargs)
    except (ValueError, TypeError, OverflowError) as e:
        raise CheckpointError(f"{path}: the recorded config of model {name!r} is invalid: "
                              f"{e}") from None
    except (RuntimeError, MemoryError) as e:
        text = str(e)
        if isinstance(e, MemoryError) or "overflow" in text or "allocate" in text:
            raise CheckpointError(f"{path}: the recorded config of model {name!r} asks for "
                                  f"absurd sizes ({_first_line(e)}); the file is damaged or "
                                  "was edited") from None
        return None  # a builder doing real arithmetic at build time: checked when built
    except Exception:
        return None


def _check_shapes(path: Path, ghost: nn.Module, sd: dict, name: str) -> None:
    """The config describes exactly the stored tensors (names and shapes)."""
    want = {k: tuple(v.shape) for k, v in ghost.state_dict().items()}
    missing = sorted(set(want) - set(sd))
    extra = sorted(set(sd) - set(want))
    wrong = [k for k in want if k in sd and tuple(sd[k].shape) != want[k]]
    if not (missing or extra or wrong):
        return
    n_cfg = sum(int(torch.Size(s).numel()) for s in want.values())
    n_file = sum(int(v.numel()) for v in sd.values())
    parts = []
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} tensor(s) of another shape, e.g. {k!r}: config "
                     f"{list(want[k])}, file {list(sd[k].shape)}")
    if missing:
        parts.append(f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    if extra:
        parts.append(f"unexpected {extra[:3]}{' ...' if len(extra) > 3 else ''}")
    raise CheckpointError(
        f"{path}: the recorded config of model {name!r} ({n_cfg:,} values) does not describe "
        f"the stored weights ({n_file:,} values): {'; '.join(parts)}")


def checkpoint_kind(path_or_payload: str | os.PathLike | dict) -> str:
    """``"ann"``, ``"snn"`` or ``"converted"``: what network a checkpoint holds.

    Read from the metadata (recorded since checkpoints carry it); older files are
    classified from their config (a ``converted`` config, else an SNN builder if the model
    built on the ``meta`` device has spiking neurons).
    """
    payload = path_or_payload
    if not isinstance(payload, dict):
        payload = load_checkpoint(path_or_payload)
    meta = payload.get("meta", {})
    kind = meta.get("kind")
    if kind in KINDS:
        return kind
    cfg = meta.get("config")
    if isinstance(cfg, dict) and cfg.get("name") == "converted":
        return "converted"
    fn, kwargs = validate_config(cfg)
    ghost = _meta_model(Path("checkpoint"), fn, kwargs, str(cfg.get("name")))
    if ghost is None:
        ghost = fn(**kwargs)
    return model_kind(ghost, cfg)


def _kind_message(path, got: str, expect: tuple[str, ...], command: str | None) -> str:
    who = command or "this"
    wanted = " or ".join(_KIND_NAMES[k] for k in expect)
    if got == "ann" and "converted" in expect or got == "ann" and expect == ("snn",):
        fix = "convert it with `leansnn convert` first"
    elif got == "ann":
        fix = "train an SNN with `leansnn train-snn`"
    elif "ann" in expect and got == "converted":
        fix = ("give the ANN checkpoint it was converted from (a converted SNN is used as it "
               "is: `leansnn analyze`)")
    elif "ann" in expect:
        fix = ("give an ANN checkpoint (train one with `leansnn train-ann`); a directly "
               "trained SNN is used as it is (`leansnn analyze`)")
    else:
        fix = "give a checkpoint written by `leansnn train-snn`"
    return (f"{path}: this is {_KIND_NAMES[got]} checkpoint; {who} needs {wanted}; {fix}")


def require_kind(path_or_payload: str | os.PathLike | dict, expect: str | tuple[str, ...],
                 command: str | None = None, path: str | os.PathLike | None = None) -> str:
    """Check what a checkpoint holds against ``expect`` (a kind or a tuple of kinds).

    Returns the kind; raises :class:`CheckpointError` naming both and the fix (e.g.
    ``"this is an ANN checkpoint; train-snn needs a directly trained SNN; convert it with
    `leansnn convert` first"``). ``command`` names who needs it in the message.
    """
    want = (expect,) if isinstance(expect, str) else tuple(expect)
    bad = [k for k in want if k not in KINDS]
    if bad or not want:
        raise ValueError(f"expect must be one of {KINDS} (or a tuple of them), got {expect!r}")
    got = checkpoint_kind(path_or_payload)
    if got not in want:
        shown = path if path is not None else (
            path_or_payload if not isinstance(path_or_payload, dict) else "checkpoint")
        raise CheckpointError(_kind_message(shown, got, want, command))
    return got


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
         expect: str | tuple[str, ...] | None = None, command: str | None = None) -> nn.Module:
    """Rebuild the model saved by :func:`save` and load its weights (never unpickles code).

    Everything is verified before the model is allocated (see the module docstring).
    ``expect`` (``"ann"``, ``"snn"``, ``"converted"`` or a tuple of them) refuses another
    kind of checkpoint with the fix in the message; ``command`` names the caller there.
    """
    from .models import from_config

    payload = load_checkpoint(path, map_location)
    cfg = payload["meta"].get("config")
    if cfg is None:
        raise CheckpointError(
            f"{path} has no model config (saved from a model not built by "
            "leansnn.models.create); rebuild the model yourself and call "
            "model.load_state_dict(leansnn.load_checkpoint(path)['state_dict'])"
        )
    fn, kwargs = validate_config(cfg, str(path))
    name = cfg["name"]
    if name != "converted":  # converted SNNs are checked when their sites are rebuilt
        ghost = _meta_model(Path(path), fn, kwargs, name)
        if ghost is not None:
            _check_shapes(Path(path), ghost, payload["state_dict"], name)
            if expect is not None and "kind" not in payload["meta"]:
                payload["meta"]["kind"] = model_kind(ghost, cfg)
    if expect is not None:
        require_kind(payload, expect, command, path)
    try:
        model = from_config(cfg)
    except (ValueError, TypeError, RuntimeError, MemoryError) as e:
        raise CheckpointError(f"{path}: the recorded config of model {name!r} does not "
                              f"build: {_first_line(e)}") from None
    _match_dtypes(model, payload["state_dict"])
    dev = _device(map_location)
    if dev is not None:
        model.to(dev)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit model {name!r}: {e}") from None
    model.leansnn_meta = payload["meta"]
    return model
