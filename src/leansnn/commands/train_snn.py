"""``leansnn train-snn``: direct (BPTT) training of a LIF SNN, optionally with ASA.

Trains a registered SNN (``lif_snn_a``, ``lif_snn_5``, ``sew_resnet18``, ...) on emulated-event
Fashion-MNIST (``[T, B, 2, H, W]`` frames) or on the static images (repeated over T), with the
paper's recipe by default: MSE between the classifier's firing rates and the one-hot label,
Adam, cosine schedule. Prints test accuracy and NASFR (all spikes / (T * all neurons), the
classifier included) after every epoch; writes an atomic checkpoint per epoch
(``--checkpoint``), continues with ``--resume``, and writes a JSON report (``--json``) with
the history and per-layer firing rates. Under ``torchrun`` it trains data-parallel
(:mod:`leansnn.distributed`): ``--batch-size`` is per process.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .. import data as _datasets
from ._common import add_common, log_stream, positive, setup, write_json

NAME = "train-snn"
HELP = "train a LIF SNN (optionally with ASA) on event or static Fashion-MNIST"
EXAMPLE = ("leansnn train-snn --model lif_snn_a --attention asa --data event_fashion_mnist "
           "--T 8 --epochs 5 --train-images 5000 --out asa.lsnn")

DATASETS = tuple(sorted(_datasets.DATASETS))  # names from the data-set registry


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="lif_snn_a",
                   help="registered SNN: lif_snn_a (default), lif_snn_5, sew_resnet18")
    p.add_argument("--data", default="event_fashion_mnist", choices=DATASETS,
                   help="training data set (default event_fashion_mnist)")
    p.add_argument("--T", type=int, default=8, help="time steps (default 8)")
    p.add_argument("--size", type=int, default=32,
                   help="event frames are SIZE x SIZE (default 32; event data only)")
    p.add_argument("--noise-hz", type=float, default=None,
                   help="background-noise events per pixel per second of the emulator "
                        "(default: the emulator's default)")
    p.add_argument("--attention", default="none", choices=["asa", "none"])
    p.add_argument("--width", type=int, default=None, help="base channel width of the model")
    p.add_argument("--dropout", type=float, default=None, help="dropout before the FC layers")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32, help="per process (default 32)")
    p.add_argument("--lr", type=float, default=3e-4,
                   help="Adam learning rate (default 3e-4; the paper uses 1e-4 for long runs)")
    p.add_argument("--min-lr", type=float, default=1e-6, help="cosine schedule end value")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--loss", default="mse", choices=["mse", "ce"],
                   help="mse: output rates vs one-hot, as the paper (default); ce: cross-entropy")
    p.add_argument("--train-images", "--train-subset", dest="train_subset", type=int,
                   default=None, metavar="N", help="use a random subset of N training images")
    p.add_argument("--test-images", "--test-subset", dest="test_subset", type=int,
                   default=None, metavar="N", help="use a random subset of N test images")
    p.add_argument("--max-batches", type=int, default=None, help="per epoch (quick runs)")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="write the trained model (weights, config, final metrics) to PATH "
                        "(.lsnn, loadable with leansnn.load)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file, written every epoch")
    p.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint (the default when the file exists)")
    p.add_argument("--no-resume", action="store_true",
                   help="start over even if --checkpoint exists (it is overwritten)")
    add_common(p, device_auto=True,
               json_help="write history, final metrics and per-layer rates as JSON to PATH "
                         "(no PATH or '-': stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def load_data(args: argparse.Namespace, main: bool = True) -> tuple[Any, Any, dict]:
    """Train and test sets and the model arguments they imply (in_channels, input_size)."""
    import leansnn as ls

    if args.data == "fashion_mnist":
        train = ls.data.fashion_mnist("train", root=args.root).subset(args.train_subset, 0)
        test = ls.data.fashion_mnist("test", root=args.root).subset(args.test_subset, 0)
        return train, test, {"in_channels": 1, "input_size": (28, 28)}
    kw = dict(T=args.T, root=args.root, size=(args.size, args.size),
              noise_rate_hz=args.noise_hz, progress=main and not args.quiet)
    load = ls.data.event_fashion_mnist
    train = load("train", n=args.train_subset, **kw)
    test = load("test", n=args.test_subset, **kw)
    return train, test, {"in_channels": 2, "input_size": (args.size, args.size)}


def _save(args: argparse.Namespace, net: Any, report: dict) -> None:
    """Write the trained model to ``args.out`` with the command line, final metrics, history
    and data settings in its metadata."""
    import leansnn as ls

    skip = ("out", "json", "quiet", "checkpoint", "resume", "_run", "command")
    cmd = "leansnn train-snn " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in sorted(vars(args).items())
        if v is not None and v is not False and k not in skip)
    ls.save(net, args.out, note=f"{args.model} (attention {args.attention}) "
            f"trained on {args.data}: {cmd}",
            meta={"final": report["final"], "history": report["history"],
                  "data": {"name": args.data, "T": args.T, "size": args.size,
                           "noise_hz": args.noise_hz, "train_subset": args.train_subset,
                           "test_subset": args.test_subset}})
    if not args.quiet:
        print(f"wrote {args.out}")


def train(args: argparse.Namespace) -> dict:
    """Run the training described by ``args`` (see :func:`add_arguments`); return the report.

    The report: ``{"config", "history" (per epoch: loss, train_accuracy, firing_rate,
    test_accuracy, test_firing_rate = NASFR, layer_rates = the test set's per-layer rates,
    seconds), "final"}``; on ranks other
    than 0 of a distributed run, the same with ``"final": None``.
    """
    import torch

    import leansnn as ls
    from leansnn import distributed as D
    from leansnn.train import TrainConfig, fit

    if args.resume and not args.checkpoint:
        raise ValueError("--resume needs --checkpoint PATH")
    if args.resume and args.no_resume:
        raise ValueError("--resume and --no-resume contradict each other")
    setup(args)
    positive(args, "T", "epochs", "batch_size", "train_subset", "test_subset", "size")
    info = D.init(args.device)
    try:
        # rank 0 builds any data cache first, the others then read it
        if info.main:
            train_set, test_set, data_kw = load_data(args, True)
        D.barrier()
        if not info.main:
            train_set, test_set, data_kw = load_data(args, False)
        model_kw: dict[str, Any] = dict(num_classes=10, T=args.T, **data_kw,
                                        attention=None if args.attention == "none" else "asa")
        if args.width is not None:
            model_kw["width"] = args.width
        if args.dropout is not None:
            model_kw["dropout"] = args.dropout
        torch.manual_seed(args.seed)
        try:
            net = ls.models.create(args.model, **model_kw)
        except TypeError as e:  # an option this model does not take
            raise ValueError(f"model {args.model!r} does not accept these options: {e}") from None
        model = D.wrap(net, info)
        if info.distributed:
            train_set = D.ShardedData(train_set, info.rank, info.world_size)
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          weight_decay=args.weight_decay, schedule="cosine", min_lr=args.min_lr,
                          loss=args.loss, seed=args.seed, max_batches=args.max_batches,
                          extra={"model": args.model, "data": args.data,
                                 "attention": args.attention, "world_size": info.world_size})

        def on_epoch(rec: dict) -> None:
            # per-layer rates of the test evaluation (leansnn.evaluation), the NASFR's parts
            rec["layer_rates"] = rec.get("test_layer_rates", {})
            if info.main and not args.quiet:
                print(f"epoch {rec['epoch']}/{args.epochs}: loss {rec['loss']:.4f}, train acc "
                      f"{100 * rec['train_accuracy']:.2f} %, test acc "
                      f"{100 * rec.get('test_accuracy', float('nan')):.2f} %, NASFR "
                      f"{rec.get('test_firing_rate', float('nan')):.4f}, "
                      f"{rec['seconds']:.1f} s", flush=True)

        if info.main and not args.quiet:
            print(f"train-snn: {args.model} (attention {args.attention}, T={args.T}) on "
                  f"{args.data}: {len(train_set) * info.world_size} training / {len(test_set)} "
                  f"test items, {info.world_size} process(es), device {info.device}", flush=True)
        t0 = time.perf_counter()
        res = fit(model, train_set, test_set, cfg, checkpoint=args.checkpoint,
                  resume=bool(args.checkpoint) and not args.no_resume, device=info.device,
                  progress=not args.quiet,
                  on_epoch=on_epoch)
        hist = res["history"]
        report: dict[str, Any] = {"config": {**vars(args), "model_kwargs": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in model_kw.items()},
            "world_size": info.world_size}, "history": hist, "final": None,
            "wall_seconds": time.perf_counter() - t0}
        if info.main and hist:
            last = hist[-1]
            report["final"] = {
                "test_accuracy": last.get("test_accuracy"),
                "nasfr": last.get("test_firing_rate"),
                "layer_rates": last.get("layer_rates"),
                "parameters": sum(p.numel() for p in net.parameters()),
            }
            if getattr(args, "out", None):
                _save(args, net, report)
        return report
    finally:
        D.cleanup()


def run(args: argparse.Namespace) -> int:
    report = train(args)
    if report["final"] is None:
        return 0
    f = report["final"]
    if not args.quiet:
        print(f"test accuracy {100 * f['test_accuracy']:.2f} % | NASFR {f['nasfr']:.4f} | "
              f"{f['parameters']} parameters", file=log_stream(args))
    write_json(args, report)
    return 0
