"""``leansnn convert``: convert a trained ANN checkpoint and report accuracy, speed, firing.

For every T and method: test accuracy (after all T steps), inference time per image and the
mean firing rate (spikes per neuron per step), next to the ANN's own accuracy.
"""

from __future__ import annotations

import argparse

from . import _data
from ._common import add_common, load_model, log_stream, positive, progress, setup, write_json

NAME = "convert"
HELP = "convert a trained ANN (.lsnn) to an SNN and report accuracy, time and firing rate per T"
EXAMPLE = ("leansnn convert pretrained/small_cnn_qcfs4.lsnn --T 1 2 4 8 16 "
           "--method parallel serial  # ReLU nets: --method calibrated --calib-images 1024")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="ANN checkpoint written by leansnn train-ann / ls.save")
    p.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8, 16],
                   help="time steps to try (default 1 2 4 8 16)")
    p.add_argument("--method", nargs="+", default=["parallel", "serial"],
                   help="conversion methods (default parallel serial)")
    p.add_argument("--engine", default="auto", choices=["auto", "fast", "simulate"],
                   help="engine of parallel networks (default auto: the exact fast path)")
    p.add_argument("--test-images", type=int, default=None, metavar="N",
                   help="evaluate on a subset of the test set (default: all 10000)")
    p.add_argument("--calib-images", type=int, default=1024, metavar="N",
                   help="unlabeled training images for --method calibrated (default 1024)")
    p.add_argument("--refine-steps", type=int, default=0, metavar="N",
                   help="--method calibrated: N output-matching refinement steps of the "
                        "per-channel thresholds, shifts and amplitudes (default 0; deep ReLU "
                        "nets at T >= 4 gain most, e.g. 300)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--no-firing-rate", action="store_true",
                   help="skip the firing-rate pass (faster)")
    _data.add_data_options(p, ("static",), default=None, events=False,
                           default_help="default: the one recorded in the checkpoint, else "
                                        "fashion_mnist; its settings too unless overridden")
    add_common(p, json_help="write the table as JSON to PATH (no PATH or '-': stdout)")


def run(args: argparse.Namespace) -> int:
    import leansnn as ls
    from leansnn.convert import evaluate_snn, methods
    from leansnn.train import evaluate

    setup(args)
    positive(args, "T", "calib_images", "batch_size", "test_images")
    if args.refine_steps < 0:
        raise ValueError(f"--refine-steps must be >= 0, got {args.refine_steps}")
    log = log_stream(args)
    unknown = [m for m in args.method if m not in methods()]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; available: {methods()}")
    ann = load_model(args.checkpoint, NAME, ("ann",)).eval().to(args.device)
    choice = _data.resolve(args, NAME, ("static",), _data.stored_data(ann))
    test = _data.load(choice, _data.test_split(choice), args.root, n=args.test_images,
                      seed=args.seed, log=log, progress=progress(args))
    _data.check_model(ann, _data.model_io(choice, test), str(args.checkpoint), choice)
    print(f"data: {choice.describe()}, {_data.test_split(choice)} split", file=log)
    # timed like the SNNs (evaluate_snn): the forward pass alone, in the same loop
    ev = evaluate(ann, test, batch_size=args.batch_size, device=args.device,
                  progress=progress(args), desc="ANN", timing=True)
    ann_s = ev["seconds_per_image"]
    print(f"{args.checkpoint}: ANN test accuracy {100 * ev['accuracy']:.2f} % on {ev['n']} "
          f"images, {1e3 * ann_s:.3f} ms/image", file=log)
    print(f"{'method':<10} {'T':>4} {'accuracy':>9} {'vs ANN':>8} {'ms/image':>9} "
          f"{'x ANN':>6} {'firing rate':>11}", file=log)
    table = {"checkpoint": str(args.checkpoint), "test_images": ev["n"],
             "data": choice.record(),
             "ann": {"accuracy": ev["accuracy"], "seconds_per_image": ann_s}, "rows": []}
    calib = {}
    if "calibrated" in args.method:  # training-free conversion: calibrate on training images
        calib = dict(calib_data=_data.load(choice, "train", args.root, n=args.calib_images,
                                           seed=args.seed, log=log, progress=progress(args)),
                     max_samples=args.calib_images, refine_steps=args.refine_steps,
                     progress=progress(args))
    for method in args.method:
        for T in args.T:
            opts = calib if method == "calibrated" else {}
            snn = ls.convert(ann, T=T, method=method, engine=args.engine, **opts).to(
                args.device)
            r = evaluate_snn(snn, test, batch_size=args.batch_size, device=args.device,
                             progress=progress(args), firing_rate=not args.no_firing_rate,
                             desc=f"{method} T={T}")
            print(f"{method:<10} {T:>4} {100 * r['accuracy']:>8.2f}% "
                  f"{100 * (r['accuracy'] - ev['accuracy']):>+7.2f} "
                  f"{1e3 * r['seconds_per_image']:>9.3f} "
                  f"{r['seconds_per_image'] / ann_s:>6.2f} {r['firing_rate']:>11.4f}",
                  file=log, flush=True)
            table["rows"].append({"method": method, "T": T, **r})
    write_json(args, table)
    return 0
