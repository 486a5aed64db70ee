"""The data options of the commands and their handling, generic over :data:`leansnn.data.DATASETS`.

Every command that reads data (``train-ann``, ``train-snn``, ``convert``, ``analyze``) takes
``--data NAME`` (a registered data set of a kind the command accepts; a wrong kind is a
one-line error naming the kinds it takes) with ``--root DIR`` (else ``$LEANSNN_DATA``), and
the settings flags below, forwarded only to data sets that take them (a flag a data set does
not take is an error, never silently ignored):

* ``--size S`` or ``--size H W`` (event frames; ``image_folder`` images),
* ``--dt-ms D``, ``--by time|count`` (event sets), ``--T`` (the command's own: frames per
  window of event sets),
* ``--test-fraction F`` (sets without an official split),
* ``--skip-bad-files``, ``--workers N`` (sets read from folders of files),
* ``--augment standard|cutout|flip_crop|none`` (training commands, static sets).

:class:`DataChoice` is the resolved choice: the spec, the representation ``settings``
(recorded in checkpoints under ``meta["data"]``) and where each came from (command line,
checkpoint, the data set's default). :func:`model_io` gives the model arguments the data
imply (``in_channels``, ``num_classes``, ``input_size``); :func:`check_model` compares them
with a loaded model's config.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

KIND_NAMES = {"static": "static image", "events": "event"}
# command-line attribute -> loader setting (representation settings, recorded in checkpoints)
_SETTING_FLAGS = {"T": ("T", "--T"), "size": ("size", "--size"), "dt_ms": ("dt_ms", "--dt-ms"),
                  "by": ("by", "--by"), "noise_hz": ("noise_rate_hz", "--noise-hz"),
                  "test_fraction": ("test_fraction", "--test-fraction")}
# run-time options (not recorded: they do not change what the data are)
_RUNTIME_FLAGS = {"workers": ("workers", "--workers"),
                  "skip_bad_files": ("skip_bad_files", "--skip-bad-files")}
RECORDED = ("T", "size", "dt_ms", "by", "noise_rate_hz", "test_fraction")


def names(kinds: tuple[str, ...]) -> list[str]:
    from leansnn.data import DATASETS

    return sorted(n for n, s in DATASETS.items() if s.kind in kinds)


def add_data_options(p: argparse.ArgumentParser, kinds: tuple[str, ...], *,
                     default: str | None, events: bool, augment: tuple[str, ...] = (),
                     default_help: str = "", augment_fallback: str = "flip_crop") -> None:
    """``--data`` (data sets of ``kinds``), ``--size``, ``--skip-bad-files``, ``--workers``;
    with ``events`` also ``--dt-ms`` and ``--by``; with ``augment`` choices, ``--augment``
    (whose default is ``standard`` where the data set takes it, else ``augment_fallback``:
    what the command applies, :func:`default_augment`)."""
    kinds_txt = " or ".join(KIND_NAMES[k] for k in kinds)
    p.add_argument("--data", default=default, metavar="NAME",
                   help=f"{kinds_txt} data set: {', '.join(names(kinds))} "
                        f"({default_help or f'default {default}'})")
    p.add_argument("--size", type=int, nargs="+", default=None, metavar="S",
                   help="frame / image size: S (square) or H W (default: the data set's; "
                        "event sets and image_folder)")
    if events:
        p.add_argument("--dt-ms", type=float, default=None, metavar="D",
                       help="event sets: frames of D ms; training draws a random window of "
                            "T frames per recording and epoch, testing votes over windows "
                            "covering each recording (default: T frames per whole recording)")
        p.add_argument("--by", default=None, choices=["time", "count"],
                       help="event sets: frames of equal time spans (default) or equal "
                            "event counts")
    p.add_argument("--test-fraction", type=float, default=None, metavar="F",
                   help="data sets without an official split (ncaltech101, cifar10_dvs, a flat "
                        "image_folder): the last fraction F of each class is the test split "
                        "(default 0.1)")
    p.add_argument("--skip-bad-files", action="store_true",
                   help="leave out files that fail to decode (listed in a warning) instead "
                        "of stopping with an error")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes decoding raw files (default: the data set's)")
    if augment:
        p.add_argument("--augment", default=None, choices=list(augment),
                       help="training augmentation of static sets: standard (random crop with "
                            "4-pixel padding + flip), cutout (+ Cutout), flip_crop (flip + "
                            "2-pixel shift), none (default: standard where the data set "
                            f"takes it, else {augment_fallback})")


def default_augment(spec: Any, given: str | None, fallback: str) -> str:
    """The training augmentation a command applies: ``given`` (``--augment``), else the
    data set's own ``standard`` where its loader takes one, else ``fallback``."""
    if given is not None:
        return given
    return "standard" if "augment" in spec.settings else fallback


@dataclass
class DataChoice:
    """A data set and its settings as one command uses them."""

    spec: Any
    settings: dict                       # representation settings (recorded)
    runtime: dict = field(default_factory=dict)
    origin: dict = field(default_factory=dict)   # setting -> "command line" | "checkpoint"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    def record(self) -> dict:
        """The JSON-able ``meta["data"]`` entry of a checkpoint."""
        full = {**self.spec.defaults, **self.settings}
        return {"name": self.name, "kind": self.kind,
                "settings": {k: list(v) if isinstance(v, tuple) else v
                             for k, v in full.items() if k in RECORDED}}

    def describe(self) -> str:
        """``name (k=v, ...; from the checkpoint: ...; from the command line: ...)``."""
        full = {**self.spec.defaults, **self.settings}
        parts = [f"{k}={_fmt(v)}" for k, v in full.items()]
        srcs = {}
        for k, o in self.origin.items():
            srcs.setdefault(o, []).append(k)
        src = "; ".join(f"{', '.join(v)} from the {o}" for o, v in srcs.items())
        return f"{self.name} ({', '.join(parts) or 'no settings'}" + \
            (f"; {src})" if src else ")")


def _fmt(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return "x".join(str(int(s)) for s in v)
    return str(v)


def stored_data(model: Any) -> dict | None:
    """The data record of a loaded checkpoint (``meta["data"]``), older layouts converted."""
    meta = (getattr(model, "leansnn_meta", None) or {}).get("meta") or {}
    d = meta.get("data")
    if not isinstance(d, dict) or "name" not in d:
        return None
    if "settings" not in d:   # train-snn before the registry: T, size, noise_hz at top level
        s = {"T": d.get("T"), "noise_rate_hz": d.get("noise_hz")}
        if d.get("size") is not None:
            s["size"] = (int(d["size"]),) * 2 if isinstance(d["size"], int) else d["size"]
        d = {**d, "settings": {k: v for k, v in s.items() if v is not None}}
    return d


def _size(v: list[int] | None) -> tuple[int, int] | None:
    if v is None:
        return None
    if len(v) not in (1, 2) or min(v) < 1:
        raise ValueError(f"--size takes S or H W (positive), got {' '.join(map(str, v))}")
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def resolve(args: argparse.Namespace, command: str, kinds: tuple[str, ...],
            stored: dict | None = None) -> DataChoice:
    """The data set of ``args.data`` (else the checkpoint's, else fashion_mnist) with its
    settings: the checkpoint's (when it names the same data set), overridden by flags."""
    from leansnn.data import DATASETS

    name = args.data or (stored or {}).get("name") or "fashion_mnist"
    if name not in DATASETS:
        raise ValueError(f"--data {name}: unknown data set; available: "
                         f"{', '.join(sorted(DATASETS))}")
    spec = DATASETS[name]
    if spec.kind not in kinds:
        raise ValueError(f"--data {name} is an {KIND_NAMES[spec.kind]} data set; {command} "
                         f"takes {' or '.join(KIND_NAMES[k] for k in kinds)} data sets: "
                         f"{', '.join(names(kinds))}")
    settings: dict = {}
    origin: dict = {}
    if stored and stored.get("name") == name:
        for k, v in (stored.get("settings") or {}).items():
            if k in spec.settings and k in RECORDED and v is not None:
                settings[k], origin[k] = (tuple(v) if isinstance(v, list) else v), "checkpoint"
    given = {"size": _size(getattr(args, "size", None))}
    for attr, (key, flag) in {**_SETTING_FLAGS, **_RUNTIME_FLAGS}.items():
        v = given.get(attr, getattr(args, attr, None))
        if v is None or v is False:
            continue
        if attr == "T" and key not in spec.settings:
            continue   # static sets: T is the model's time steps only
        if key not in spec.settings:
            raise ValueError(f"{flag}: data set {name} does not take it (its settings: "
                             f"{', '.join(s for s in spec.settings if s in RECORDED) or 'none'})")
        if attr in _RUNTIME_FLAGS:
            continue
        settings[key], origin[key] = v, "command line"
    runtime = {key: getattr(args, attr) for attr, (key, _) in _RUNTIME_FLAGS.items()
               if getattr(args, attr, None) not in (None, False)}
    if "workers" in runtime and runtime["workers"] < 1:
        raise ValueError(f"--workers must be >= 1, got {runtime['workers']}")
    if spec.kind == "events" and "T" not in settings:
        settings["T"] = spec.defaults.get("T", 8)
    return DataChoice(spec, settings, runtime, origin)


def load(choice: DataChoice, split: str, root: Any, *, n: int | None = None, seed: int = 0,
         augment: str | None = None, progress: bool = True, log: Any = None) -> Any:
    """Load ``split`` (``n``: a random subset chosen with ``seed``; ``augment``: a training
    augmentation of the data set's own) with the choice's settings; warnings (skipped files)
    are printed as ``warning: ...`` lines."""
    spec = choice.spec
    kw = {**choice.settings, **choice.runtime}
    if "progress" in spec.settings:
        kw["progress"] = progress
    if n is not None and "n" in spec.settings:   # emulated events: convert only the subset
        kw.update(n=n, subset_seed=seed)
    if augment is not None:
        if "augment" not in spec.settings:
            raise ValueError(f"--augment {augment}: data set {spec.name} does not take it; "
                             "use flip_crop or none")
        kw["augment"] = augment
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        ds = spec.load(split, root=root, **kw)
    for w in caught:
        print(f"warning: {w.message}", file=log or sys.stderr, flush=True)
    if n is not None and "n" not in spec.settings:
        ds = ds.subset(n, seed)
    return ds


def test_split(choice: DataChoice) -> str:
    return "test" if "test" in choice.spec.splits else choice.spec.splits[-1]


def model_io(choice: DataChoice, ds: Any) -> dict:
    """``in_channels``, ``num_classes``, ``input_size`` (H, W) of the data set ``ds``."""
    shape = choice.spec.input_shape(**choice.settings)
    if choice.kind == "events":
        shape = shape[1:]
    classes = getattr(ds, "classes", None)
    k = len(classes) if classes else choice.spec.num_classes
    if k is None:
        raise ValueError(f"{choice.name}: the data set lists no classes")
    return {"in_channels": int(shape[0]), "num_classes": int(k),
            "input_size": (int(shape[1]), int(shape[2]))}


def model_kwargs(model: str, io: dict) -> dict:
    """The arguments of registry model ``model`` that ``io`` fills (``input_size`` only if
    the builder takes it: a tuple, or an int for square-input builders like small_cnn)."""
    from leansnn.models.registry import builder

    params = inspect.signature(builder(model)).parameters
    kw: dict[str, Any] = {"in_channels": io["in_channels"], "num_classes": io["num_classes"]}
    if "input_size" in params:   # left out when it is the builder's default (older configs)
        h, w = io["input_size"]
        default = params["input_size"].default
        if isinstance(default, int):
            if h != w:
                raise ValueError(f"model {model} takes square inputs; the data are {h}x{w} "
                                 "(use --size S)")
            if h != default:
                kw["input_size"] = h
        elif _as_list(default) != [h, w]:
            kw["input_size"] = (h, w)
    return kw


def config_io(cfg: Any) -> dict | None:
    """``in_channels``, ``num_classes``, ``input_size`` of the first registry model in a
    (possibly nested) config, defaults filled in from its builder."""
    from leansnn.models.registry import builder

    if isinstance(cfg, dict):
        if "name" in cfg and isinstance(cfg.get("kwargs"), dict):
            try:
                params = inspect.signature(builder(cfg["name"])).parameters
            except (ValueError, KeyError):
                params = {}
            if "in_channels" in params:
                full = {k: p.default for k, p in params.items()} | cfg["kwargs"]
                out = {k: full.get(k) for k in ("in_channels", "num_classes", "input_size")}
                s = out["input_size"]
                out["input_size"] = None if s is None else (
                    (int(s), int(s)) if isinstance(s, int) else tuple(int(v) for v in s))
                return out
        children = list(cfg.values())
    elif isinstance(cfg, list):
        children = cfg
    else:
        return None
    for v in children:
        got = config_io(v)
        if got is not None:
            return got
    return None


def check_model(model: Any, io: dict, label: str, choice: DataChoice) -> None:
    """A one-line error when the model's config disagrees with the data set's shape."""
    got = config_io(getattr(model, "leansnn_config", None))
    if got is None:
        return
    bad = [k for k in ("in_channels", "num_classes", "input_size")
           if got.get(k) is not None and io.get(k) is not None
           and _as_list(got[k]) != _as_list(io[k])]
    if bad:
        mine = ", ".join(f"{k}={_fmt(got[k])}" for k in bad)
        theirs = ", ".join(f"{k}={_fmt(io[k])}" for k in bad)
        raise ValueError(f"{label} was built for {mine}, but --data {choice.name} gives "
                         f"{theirs}; {_hint(model, got)}")


def _hint(model: Any, got: dict) -> str:
    """Which ``--data`` to use: the recorded one, else the sets with the model's channels."""
    from leansnn.data import DATASETS

    stored = stored_data(model)
    if stored is not None:
        return f"it was trained on --data {stored['name']} (give that, and its --size)"
    fit = [n for n, s in sorted(DATASETS.items())
           if s.input_shape()[1 if s.kind == "events" else 0] == got.get("in_channels")]
    return ("data sets with its input channels: " + ", ".join(f"--data {n}" for n in fit)
            if fit else "give the data set (and --size) it was trained on")


def _as_list(v: Any) -> list:
    return list(v) if isinstance(v, (tuple, list)) else [v]


def check_resume(net: Any, checkpoint: Any, resume: bool) -> None:
    """Before resuming from ``checkpoint``: a one-line error when it holds another model (a
    different data set's channels, classes or input size, or other options)."""
    from pathlib import Path

    from leansnn.checkpoint import load_checkpoint

    if not (resume and checkpoint is not None and Path(checkpoint).exists()):
        return
    from ._common import KIND_TEXT, model_kind

    theirs = load_checkpoint(checkpoint)["meta"].get("config")
    mine = getattr(net, "leansnn_config", None)
    k_theirs, k_mine = model_kind(theirs), model_kind(mine)
    if k_theirs and k_mine and k_theirs != k_mine:
        raise ValueError(f"--checkpoint {checkpoint} holds {KIND_TEXT[k_theirs]} "
                         f"({theirs.get('name')}), but this run trains {KIND_TEXT[k_mine]} "
                         f"({mine.get('name')}); pass another --checkpoint, or --no-resume to "
                         "overwrite it")
    if theirs is not None and mine is not None and theirs != mine:
        a, b = config_io(theirs) or {}, config_io(mine) or {}
        diff = [k for k in a if _as_list(a[k]) != _as_list(b.get(k))]
        what = (", ".join(f"{k}={_fmt(a[k])} there, {_fmt(b.get(k))} here" for k in diff)
                or f"{theirs} there, {mine} here")
        raise ValueError(f"--checkpoint {checkpoint} holds another model ({what}); pass "
                         "--no-resume to start over or another --checkpoint")
