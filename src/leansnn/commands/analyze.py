"""``leansnn analyze``: redundancy and energy report of one or two saved SNNs.

Loads each checkpoint with ``leansnn.load``, runs the Fashion-MNIST (or emulated-event
Fashion-MNIST) test set through it once with a Monitor and an operation counter attached,
and writes ``report.md``, a self-contained ``report.html``, ``metrics.json`` and the PNG
figures into ``--out``. ``--json`` also prints every metric to stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .. import data as _datasets
from ._common import add_common, log_stream, setup, write_json

NAME = "analyze"
HELP = "firing, redundancy, membrane-potential and energy report of one or two SNN checkpoints"
EXAMPLE = "leansnn analyze base.lsnn asa.lsnn --data event_fashion_mnist --out report/"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", metavar="CKPT",
                   help="one or two .lsnn checkpoints (two are compared side by side)")
    p.add_argument("--data", default="fashion_mnist",
                   choices=sorted(_datasets.DATASETS),
                   help="test set to analyse on (default fashion_mnist)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    p.add_argument("--test-images", "--max-images", dest="max_images", type=int,
                   default=None, metavar="N",
                   help="analyse a random subset of N test images (default: all 10,000)")
    p.add_argument("--labels", nargs="+", default=None, help="names of the models in the report")
    p.add_argument("--convert", nargs="+", default=None, metavar="METHOD",
                   help="the checkpoints are ANNs: convert them first with this method "
                        "(parallel, serial, ...; one for all or one per checkpoint), e.g. "
                        "`analyze ann.lsnn ann.lsnn --convert serial parallel --T 8`")
    p.add_argument("--T", type=int, default=None, help="time steps for --convert")
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
        if args.T is not None:
            raise ValueError("--T is only used with --convert")
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
    return stems


def _data(args: argparse.Namespace, model: Any, label: str) -> tuple[Any, str]:
    import leansnn as ls

    cfg = getattr(model, "leansnn_config", None) or {}
    in_ch = _find(cfg, "in_channels")
    if in_ch is None:  # default argument: read it off the first convolution
        import torch

        conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
        in_ch = conv.in_channels if conv is not None else None
    if args.data == "fashion_mnist":
        if in_ch not in (None, 1):
            raise ValueError(f"{label} takes {in_ch} input channels (event frames?); use "
                             "--data event_fashion_mnist")
        test = ls.data.fashion_mnist("test", root=args.root).subset(args.max_images, args.seed)
        return test, f"Fashion-MNIST test set, {len(test)} images (static, direct encoding)"
    if not hasattr(ls.data, "event_fashion_mnist"):
        raise ValueError("--data event_fashion_mnist needs leansnn.data.event_fashion_mnist, "
                         "which this installation does not have")
    if in_ch not in (None, 2):
        raise ValueError(f"{label} takes {in_ch} input channel(s), event frames have 2; use "
                         "--data fashion_mnist")
    T = _find(cfg, "T")
    size = _find(cfg, "input_size") or (32, 32)
    if T is None:
        raise ValueError(f"{label}: the checkpoint does not record T; cannot bin events")
    kw: dict[str, Any] = dict(T=int(T), root=args.root, size=tuple(int(v) for v in size),
                              n=args.max_images, subset_seed=args.seed,
                              progress=not args.json)
    if args.noise_hz is not None:
        kw["noise_rate_hz"] = args.noise_hz
    test = ls.data.event_fashion_mnist("test", **kw)
    return test, (f"Emulated-event Fashion-MNIST test set, {len(test)} recordings binned into "
                  f"T = {T} frames of {size[0]}×{size[1]}")


def run(args: argparse.Namespace) -> int:
    import torch

    import leansnn as ls
    from leansnn.analysis.report import analyze, to_json, write_report

    if not 1 <= len(args.checkpoints) <= 2:
        raise ValueError(f"give one or two checkpoints, got {len(args.checkpoints)}")
    if args.max_images is not None and args.max_images < 1:
        raise ValueError(f"--test-images must be >= 1, got {args.max_images}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
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
        model = ls.load(path)
        if methods:
            opts = {}
            if methods[i] == "calibrated":  # training-free conversion: calibrate on train data
                opts = dict(calib_data=ls.data.fashion_mnist("train", root=args.root).subset(
                    args.calib_images, args.seed), progress=not args.json)
            model = ls.convert(model, T=args.T, method=methods[i], **opts)
        data, desc = _data(args, model, label)
        print(f"analyze: {label} ({path}) on {desc}", file=log, flush=True)
        try:
            res = analyze(model, data, label, batch_size=args.batch_size, bins=args.bins,
                          e_mac=args.e_mac, e_ac=args.e_ac, device=args.device,
                          progress=not args.json)
        except (ValueError, RuntimeError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"{label} could not run on {args.data}: {msg}") from None
        results.append(res)
        descs.append(desc)
        acc = res["accuracy"]
        print(f"  accuracy {100 * acc:.2f} % | NASFR {res['monitor']['nasfr']:.4f} | energy "
              f"{res['energy']['energy_pj'] / 1e6:.4g} µJ/input (ANN "
              f"{res['energy']['ann_energy_pj'] / 1e6:.4g} µJ)", file=log, flush=True)
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
