"""``leansnn analyze``: redundancy and energy report of one or two saved SNNs.

Loads each checkpoint with ``leansnn.load``, runs the test split of a data set of
:data:`leansnn.data.DATASETS` through it once with a Monitor and an operation counter
attached (by default the data set and settings the checkpoint was trained on, as recorded in
its metadata; ``--data``, ``--T``, ``--size``, ``--dt-ms``, ``--by`` override them, and the
command says which it used; event sets read from folders are scored per recording by a vote
over windows, beside the per-window accuracy), and writes ``report.md``, a self-contained
``report.html``, ``metrics.json`` and the PNG figures into ``--out``. ``--json`` also
prints every metric to stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import _data
from ._common import add_common, load_model, log_stream, progress, setup, write_json

NAME = "analyze"
HELP = "firing, redundancy, membrane-potential and energy report of one or two SNN checkpoints"
EXAMPLE = "leansnn analyze base.lsnn asa.lsnn --data event_fashion_mnist --out report/"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", metavar="CKPT",
                   help="one or two .lsnn checkpoints (two are compared side by side)")
    _data.add_data_options(p, ("events", "static"), default=None, events=True,
                           default_help="default: the one recorded in the checkpoint, else "
                                        "fashion_mnist")
    p.add_argument("--vote", default="majority", choices=["majority", "sum"],
                   help="event sets read from folders: combine the windows of a recording by "
                        "majority vote (default) or summed outputs")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    p.add_argument("--test-images", "--max-images", dest="max_images", type=int,
                   default=None, metavar="N",
                   help="analyse a random subset of N test images / recordings (default: all)")
    p.add_argument("--labels", nargs="+", default=None, help="names of the models in the report")
    p.add_argument("--convert", nargs="+", default=None, metavar="METHOD",
                   help="the checkpoints are ANNs: convert them first with this method "
                        "(parallel, serial, ...; one for all or one per checkpoint), e.g. "
                        "`analyze ann.lsnn ann.lsnn --convert serial parallel --T 8`")
    p.add_argument("--T", type=int, default=None,
                   help="time steps for --convert; for an SNN on event data, frames per window "
                        "(default: the checkpoint's)")
    p.add_argument("--calib-images", type=int, default=2048, metavar="N",
                   help="training images for --convert calibrated (default 2048)")
    p.add_argument("--no-report", action="store_true",
                   help="skip the figures and report files; write only DIR/metrics.json")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--noise-hz", type=float, default=None,
                   help="background-noise rate of the event emulator (event data; default: "
                        "the emulator's default)")
    p.add_argument("--e-mac", type=float, default=4.6, help="pJ per MAC (default 4.6)")
    p.add_argument("--e-ac", type=float, default=0.9, help="pJ per accumulate (default 0.9)")
    p.add_argument("--bins", type=int, default=90, help="potential histogram bins")
    add_common(p, json_help="write all metrics as JSON to PATH (no PATH or '-': stdout)")


def _find(cfg: Any, key: str) -> Any:
    """First value of ``key`` anywhere in a nested model config."""
    if isinstance(cfg, dict):
        if key in cfg:
            return cfg[key]
        for v in cfg.values():
            found = _find(v, key)
            if found is not None:
                return found
    elif isinstance(cfg, list):
        for v in cfg:
            found = _find(v, key)
            if found is not None:
                return found
    return None


def _methods(args: argparse.Namespace, n: int) -> list[str] | None:
    if args.convert is None:
        return None
    if args.T is None or args.T < 1:
        raise ValueError("--convert needs --T N (time steps, N >= 1)")
    if len(args.convert) not in (1, n):
        raise ValueError(f"--convert takes one method or one per checkpoint ({n}), got "
                         f"{len(args.convert)}")
    return list(args.convert) * n if len(args.convert) == 1 else list(args.convert)


def _labels(paths: list[Path], given: list[str] | None) -> list[str]:
    if given is not None:
        if len(given) != len(paths):
            raise ValueError(f"--labels needs {len(paths)} names (one per checkpoint), got "
                             f"{len(given)}")
        return list(given)
    stems = [p.stem for p in paths]
    if len(set(stems)) < len(stems):
        stems = [f"{p.parent.name}/{p.stem}" for p in paths]
    if len(set(stems)) < len(stems):  # the same file twice: tell the runs apart
        stems = [f"{s} #{i + 1}" for i, s in enumerate(stems)]
    return stems


def _stored(args: argparse.Namespace, model: Any) -> dict | None:
    """The data record the settings start from: the checkpoint's, or (another data set, or
    an older checkpoint without one) T and input size of the model's config."""
    stored = _data.stored_data(model)
    name = args.data or (stored or {}).get("name")
    if stored is not None and stored["name"] == name:
        return stored
    cfg = getattr(model, "leansnn_config", None) or {}
    io = _data.config_io(cfg) or {}
    settings = {"T": _find(cfg, "T"), "size": io.get("input_size")}
    return {"name": name, "settings": {k: v for k, v in settings.items() if v is not None}}


def _test_data(args: argparse.Namespace, model: Any, label: str, converted: bool
               ) -> tuple[Any, dict, str | None]:
    """The test set for ``model`` (the checkpoint's data set and settings unless overridden),
    the record of what was used (data set, settings, where each came from, a description)
    and the voting rule (event sets read from folders)."""
    kinds = ("static",) if converted else ("events", "static")   # --T: static sets ignore it
    choice = _data.resolve(args, NAME, kinds, _stored(args, model))
    split = _data.test_split(choice)
    test = _data.load(choice, split, args.root, n=args.max_images, seed=args.seed,
                      progress=progress(args), log=log_stream(args))
    if len(test) == 0:
        raise ValueError(f"the {split} split of {choice.describe()} is empty: nothing to "
                         "analyse")
    _data.check_model(model, _data.model_io(choice, test), label, choice)
    vote = args.vote if callable(getattr(test, "windows", None)) else None
    kind = "recordings" if choice.kind == "events" else "images"
    how = f", scored per recording by {vote} vote over windows" if vote else ""
    desc = f"{choice.describe()}: {split} split, {len(test)} {kind}{how}"
    record = {**choice.record(), "split": split, "size_of_split": len(test),
              "from": dict(choice.origin), "description": desc}
    return test, record, vote


def _analyze_one(args: argparse.Namespace, path: Path, label: str, method: str | None,
                 log: Any) -> tuple[dict, str]:
    """Load (and with ``method`` convert) one checkpoint, analyse it on its test data."""
    import leansnn as ls
    from leansnn.analysis.report import analyze

    model = load_model(path, NAME, ("ann",) if method else ("snn", "converted"))
    data, record, vote = _test_data(args, model, label, converted=method is not None)
    desc = record["description"]
    if method is not None:
        opts = {}
        if method == "calibrated":  # training-free conversion: calibrate on training images
            choice = _data.resolve(args, NAME, ("static",), _stored(args, model))
            opts = dict(calib_data=_data.load(choice, "train", args.root, n=args.calib_images,
                                              seed=args.seed, progress=progress(args),
                                              log=log), progress=progress(args))
        model = ls.convert(model, T=args.T, method=method, **opts)
    print(f"analyze: {label} ({path}) on {desc}", file=log, flush=True)
    try:
        res = analyze(model, data, label, batch_size=args.batch_size, bins=args.bins,
                      e_mac=args.e_mac, e_ac=args.e_ac, device=args.device,
                      progress=progress(args), vote=vote)
    except (ValueError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "memory" in str(e):
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{label} could not run on this data: {msg}") from None
    win = (f" per recording ({vote} vote; {100 * res['window_accuracy']:.2f} % per window)"
           if vote else "")
    print(f"  accuracy {100 * res['accuracy']:.2f} %{win} | NASFR "
          f"{res['monitor']['nasfr']:.4f} | energy {res['energy']['energy_pj'] / 1e6:.4g} "
          f"µJ/input (ANN {res['energy']['ann_energy_pj'] / 1e6:.4g} µJ)", file=log, flush=True)
    res["data"] = record
    res["checkpoint"] = str(path)
    res["converted"] = None if method is None else {"method": method, "T": args.T}
    return res, desc


def run(args: argparse.Namespace) -> int:
    import torch

    from leansnn.analysis.report import check_out_dir, to_json, write_report

    if not 1 <= len(args.checkpoints) <= 2:
        raise ValueError(f"give one or two checkpoints, got {len(args.checkpoints)}")
    if args.max_images is not None and args.max_images < 1:
        raise ValueError(f"--test-images must be >= 1, got {args.max_images}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_out_dir(Path(args.out) if args.no_report else Path(args.out) / "figures")
    setup(args)
    torch.manual_seed(args.seed)
    paths = [Path(c) for c in args.checkpoints]
    labels = _labels(paths, args.labels)
    log = log_stream(args)
    results, descs = [], []
    methods = _methods(args, len(paths))
    if args.labels is None and methods:
        conv = [f"{p.stem} ({m}, T={args.T})" for p, m in zip(paths, methods)]
        if len(set(conv)) == len(conv):
            labels = conv
    for i, (path, label) in enumerate(zip(paths, labels)):
        res, desc = _analyze_one(args, path, label, methods[i] if methods else None, log)
        results.append(res)
        descs.append(desc)
    title = "leansnn analysis: " + " vs ".join(labels)
    desc = "; ".join(dict.fromkeys(descs)) + "."
    if args.no_report:
        from leansnn.analysis.report import write_metrics

        print(f"metrics: {write_metrics(results, args.out)}", file=log)
    else:
        paths_out = write_report(results, args.out, title=title, data_desc=desc)
        print(f"report: {paths_out['report_md']} and {paths_out['report_html']} "
              f"(figures in {Path(args.out) / 'figures'})", file=log)
    if args.json:
        write_json(args, json.loads(to_json(results)))
    return 0
