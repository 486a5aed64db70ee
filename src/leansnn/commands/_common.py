"""Options every ``leansnn`` sub-command spells the same way, and their handling.

``--device cpu|cuda`` (``auto`` where a command offers it), ``--seed N``, ``--threads N``,
``--json [PATH]`` (no PATH or ``-``: standard output; strict JSON: no NaN or Infinity, which
become ``null``), ``--quiet`` (no progress bars; results are always printed) and ``--root DIR``
(the data set's folder). ``--data NAME`` and the data settings flags are in :mod:`._data`.
:func:`load_model` loads a checkpoint and checks its kind (ANN, directly trained SNN,
converted SNN) against what a command takes, naming the fix.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
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
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's, all cores)")
    if seed is not None:
        p.add_argument("--seed", type=int, default=seed,
                       help="random seed (data subsets, initialisation; default %(default)s)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH", help=json_help)
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars or per-step lines (the results are still printed)")
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


def progress(args: argparse.Namespace) -> bool:
    """Whether to show progress bars: not with ``--quiet``, nor when JSON goes to stdout."""
    return not getattr(args, "quiet", False) and getattr(args, "json", None) != "-"


def jsonable(obj: Any) -> Any:
    """``obj`` as strict JSON data: non-finite floats become ``None``, tensors and numpy
    values plain numbers/lists, tuples lists, paths strings; keys starting with ``_`` are left
    out. Anything else (a function, a module) is a bug: ``TypeError``."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    tolist = getattr(obj, "tolist", None)   # torch tensors, numpy arrays and scalars
    if callable(tolist) and type(obj).__module__.split(".")[0] in ("torch", "numpy"):
        return jsonable(tolist())
    raise TypeError(f"not JSON data: {type(obj).__name__} {obj!r:.60}")


def dumps(obj: Any) -> str:
    """Strict JSON text of ``obj`` (see :func:`jsonable`)."""
    return json.dumps(jsonable(obj), indent=1, allow_nan=False)


def write_json(args: argparse.Namespace, obj: Any) -> None:
    """Write ``obj`` as strict JSON where ``--json`` says (stdout for ``-``; atomically to a
    file)."""
    target = getattr(args, "json", None)
    if not target:
        return
    text = dumps(obj)
    if target == "-":
        print(text, file=getattr(args, "_stdout", None) or sys.stdout, flush=True)
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
            flag = _flag(name)
            raise ValueError(f"{flag} must be >= 1, got {bad[0] if len(vals) == 1 else bad}")


# -- checkpoint kinds ---------------------------------------------------------------------------
KIND_TEXT = {"ann": "an ANN", "snn": "a directly trained SNN", "converted": "a converted SNN"}
KIND_FIX = {
    "ann": "convert it first (add --convert METHOD --T T)",
    "snn": "it is already an SNN (trained directly): analyze or export it instead",
    "converted": "it is already converted: analyze or export it instead",
}


def model_kind(cfg: Any) -> str | None:
    """``"ann"``, ``"snn"`` (a registry SNN: its builder takes ``T``) or ``"converted"`` for a
    model config; None when the config names no registered model."""
    from leansnn.models import registry

    name = cfg.get("name") if isinstance(cfg, dict) else None
    if name == "converted":
        return "converted"
    if not isinstance(name, str) or name not in registry.available():
        return None
    return "snn" if "T" in inspect.signature(registry.builder(name)).parameters else "ann"


def load_model(path: Any, command: str, expect: tuple[str, ...] | None = None,
               fix: str | None = None) -> Any:
    """``leansnn.load(path)`` for a command: a checkpoint whose metadata cannot rebuild a
    model is a one-line error, and (with ``expect``) so is a checkpoint of another kind,
    naming what it is and what to do (``fix`` for an ANN given where an SNN is expected)."""
    import leansnn as ls
    from leansnn.checkpoint import CheckpointError

    try:  # registers QCFS & co. so converted networks can be rebuilt
        import leansnn.convert  # noqa: F401
    except ImportError:  # pragma: no cover
        pass
    try:
        model = ls.load(path)
    except (TypeError, KeyError, AttributeError, IndexError, RecursionError,
            RuntimeError, OverflowError) as e:   # nonsense metadata in a well-formed archive
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: its metadata does not describe a model leansnn can "
                              f"build ({type(e).__name__}: {msg}); re-create it with "
                              "leansnn.save") from None
    kind = model_kind(getattr(model, "leansnn_config", None))
    if expect and kind is not None and kind not in expect:
        name = model.leansnn_config.get("name")
        want = " or ".join(KIND_TEXT[k] for k in expect)
        raise CheckpointError(f"{path} holds {KIND_TEXT[kind]} ({name}); {command} takes "
                              f"{want} checkpoint; "
                              f"{fix if fix and kind == 'ann' else KIND_FIX[kind]}")
    return model


def registry_kind(name: str) -> str | None:
    """The kind of registry model ``name`` (see :func:`model_kind`)."""
    return model_kind({"name": name})


def trainable_models(kind: str) -> list[str]:
    """Registry models of ``kind`` (``"ann"`` or ``"snn"``) a training command can build from
    a data set: their builder takes ``num_classes`` and ``in_channels``. Wrappers rebuilt from
    another model's config (``encoded``, ``qcfs_of``, ``converted``) are not among them."""
    from leansnn.models import registry

    out = []
    for name in registry.available():
        if registry_kind(name) != kind:
            continue
        params = inspect.signature(registry.builder(name)).parameters
        if "num_classes" in params and "in_channels" in params:
            out.append(name)
    return out


def check_trainable(model: str, kind: str, command: str) -> None:
    """A one-line error unless registry model ``model`` is one ``command`` can train
    (:func:`trainable_models` of ``kind``), naming the ones it can."""
    from leansnn.models import registry

    registry.builder(model)   # an unknown name: ValueError listing the registered ones
    if model in trainable_models(kind):
        return
    other = registry_kind(model)
    what = {"ann": "an ANN", "snn": "an SNN", "converted": "a converted SNN"}.get(
        other or "", "not a network")
    if other in ("ann", "snn") and other != kind and model in trainable_models(other):
        fix = ("train it with leansnn train-ann (and convert it)" if other == "ann" else
               "train it with leansnn train-snn")
    else:
        fix = "it is rebuilt from another model's config, not trained from data"
    names = ", ".join(trainable_models(kind))
    raise ValueError(f"--model {model} is {what}; {fix}, or give one of the models "
                     f"{command} trains: {names}")


# -- reruns of a training command: resume only the same run ---------------------------------------
def add_rerun_args(p: argparse.ArgumentParser) -> None:
    """``--restart`` (alias ``--no-resume``) and ``--resume`` of the training commands."""
    p.add_argument("--restart", "--no-resume", dest="restart", action="store_true",
                   help="start over even if the checkpoint exists (it is overwritten)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run stored in the checkpoint as stored, ignoring the "
                        "settings given here where they differ (they are listed). Without "
                        "--restart or --resume a rerun continues the checkpoint only when it "
                        "holds the same run, and stops naming the differences otherwise")


def _flag(name: str) -> str:
    return "--" + {"dataset": "data", "train_subset": "train-images",
                   "test_subset": "test-images"}.get(name, name).replace("_", "-")


def mismatch_text(checkpoint: Any, diffs: list) -> str:
    """The one-line error of a rerun whose settings differ from the stored run's."""
    what = "; ".join(f"{_flag(k)}: {_val(a)} there, {_val(b)} here" for k, a, b in diffs)
    return (f"{checkpoint} holds another run ({what}); pass --restart to start over "
            "(overwriting it) or --resume to continue the stored run as stored (ignoring the "
            "new settings)")


def _val(v: Any) -> str:
    text = "unset" if v is None else json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_run(values: dict, skip: tuple[str, ...] = ()) -> dict:
    """The JSON-able settings that define a training run (``values`` without ``skip`` and
    ``_private`` keys)."""
    return jsonable({k: v for k, v in values.items() if k not in skip})


def rerun(values: dict, checkpoint: Any, restart: bool, resume: bool, log: Any,
          skip: tuple[str, ...] = ()) -> dict:
    """The settings a training command runs with: ``values``, unless ``checkpoint`` holds a
    run with other settings -- then a one-line error offering ``--restart`` / ``--resume``,
    or (``resume``) the stored settings, announced with the ignored ones on ``log`` (None:
    silently, e.g. on torchrun's other ranks)."""
    from leansnn.train import run_differences, stored_run

    if restart and resume:
        raise ValueError("--resume and --restart (--no-resume) contradict each other")
    if restart or checkpoint is None or not Path(checkpoint).exists():
        return values
    _, stored, done = stored_run(checkpoint)
    if stored is None:  # an older checkpoint: fit compares its train_config
        return values
    diffs = run_differences(stored, describe_run(values, skip))
    if not diffs:
        return values
    if not resume:
        raise ValueError(mismatch_text(checkpoint, diffs))
    ignored = ", ".join(f"{_flag(k)} {_val(b)} (stored: {_val(a)})" for k, a, b in diffs)
    if log is not None:
        print(f"--resume: continuing the run stored in {checkpoint} (after epoch {done}) as "
              f"stored; ignoring {ignored}", file=log, flush=True)
    return {**values, **stored}
