"""``leansnn train-snn``: direct (BPTT) training of a LIF SNN, optionally with ASA.

Trains a registered SNN (``lif_snn_a``, ``lif_snn_5``, ``sew_resnet18``, ...) on any data set
of :data:`leansnn.data.DATASETS`: event sets (``[T, B, 2, H, W]`` frames: N-MNIST, DVS128
Gesture, CIFAR10-DVS, N-Caltech101, emulated-event Fashion-MNIST) or static images (repeated
over T), the model's channels, classes and input size taken from the data, with the
paper's recipe by default: MSE between the classifier's firing rates and the one-hot label,
Adam, cosine schedule. Prints test accuracy and NASFR (all spikes / (T * all neurons), the
classifier included) after every epoch; writes an atomic checkpoint per epoch
(``--checkpoint``), continues with ``--resume``, and writes a JSON report (``--json``) with
the history and per-layer firing rates. The ASA paper's protocol for event sets read from
folders: with ``--dt-ms`` training draws a random window of T frames per recording and epoch,
and testing votes (``--vote majority|sum``) over windows covering each recording
(:func:`leansnn.evaluation.evaluate_votes`): the test accuracy is per recording, the
per-window accuracy is reported beside it. Under ``torchrun`` it trains data-parallel
(:mod:`leansnn.distributed`): ``--batch-size`` is per process.
"""

from __future__ import annotations

import argparse
import inspect
import os
import time
from typing import Any

from . import _data
from ._common import (
    add_common,
    add_rerun_args,
    check_trainable,
    describe_run,
    log_stream,
    mismatch_text,
    positive,
    progress,
    rerun,
    setup,
    trainable_models,
    write_json,
)

NAME = "train-snn"
HELP = "train a LIF SNN (optionally with ASA) on an event or static data set"
EXAMPLE = ("leansnn train-snn --attention asa --width 8 --noise-hz 5 --epochs 6 "
           "--train-images 3000 --test-images 1000 --out asa.lsnn\n"
           "  # ~8 min on 2 CPU cores (the shipped LIF-SNN + ASA: all 60,000 recordings, 4 "
           "epochs, ~45 min: pretrained/README.md); the "
           "default width 64 takes ~5-10 s per batch of 32 there\n"
           "  leansnn train-snn --model lif_snn_a --attention asa --data dvs_gesture "
           "--root ~/data --T 16 --dt-ms 25 --epochs 5 --out asa.lsnn")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from leansnn import distributed as D

    p.add_argument("--model", default="lif_snn_a",
                   help="registered SNN: lif_snn_a (default), lif_snn_5, sew_resnet18")
    _data.add_data_options(p, ("events", "static"), default="event_fashion_mnist", events=True,
                           augment=("standard", "cutout", "flip_crop", "none"),
                           augment_fallback="none")
    p.add_argument("--T", type=int, default=None,
                   help="time steps = frames per window of event sets (default: the data "
                        "set's, 8 for static images)")
    p.add_argument("--vote", default=None, choices=["majority", "sum"],
                   help="event sets read from folders: combine the windows covering a "
                        "recording by majority vote (default) or summed outputs")
    p.add_argument("--noise-hz", type=float, default=None,
                   help="background-noise events per pixel per second of the emulator "
                        "(default: the emulator's default)")
    p.add_argument("--attention", default="none", choices=["asa", "asa_authors", "none"],
                   help="asa: ASA before each conv stage's LIF (per-sample masks, learnable "
                        "alpha/beta/FC); asa_authors: the authors' code, for comparison only "
                        "(batch-union masks, alpha/beta/FC frozen); none (default)")
    p.add_argument("--lam", type=float, default=None,
                   help="ASA's lambda in (0, 1): the fraction of channels and of steps in "
                        "the top-k masks (default: the model's, 0.5)")
    p.add_argument("--width", type=int, default=None,
                   help="base channel width of the model (default: the model's, 64 for "
                        "lif_snn_a: ~5-10 s per batch of 32 on a 2-core CPU; the shipped "
                        "models used 8: ~1 s per batch)")
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
    p.add_argument("--checkpoint", default=None,
                   help="resumable checkpoint, written every epoch (default <out>.train)")
    add_rerun_args(p)
    p.add_argument("--encoding", default=None, choices=["direct", "rate", "latency"],
                   help="static data sets: how an image becomes T steps of input (default "
                        "direct: the image at every step; rate: Bernoulli spikes; latency: "
                        "one spike per pixel, earlier for brighter)")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also log the per-epoch metrics to TensorBoard in DIR (needs "
                        "pip install 'leansnn[tensorboard]')")
    D.add_distributed_args(p)
    add_common(p, device_auto=True,
               json_help="write history, final metrics and per-layer rates as JSON to PATH "
                         "(no PATH or '-': stdout)")


def load_data(args: argparse.Namespace, main: bool = True) -> tuple[Any, Any, dict, Any]:
    """Train and test sets, the model arguments they imply (``in_channels``, ``num_classes``,
    ``input_size``) and the :class:`~leansnn.commands._data.DataChoice`."""
    choice = _data.resolve(args, NAME, ("events", "static"))
    aug = getattr(args, "augment", None)
    if aug not in (None, "none") and choice.kind == "events":
        raise ValueError(f"--augment {aug}: static data sets only; {choice.name} is an event "
                         "data set")
    if choice.kind == "static":   # docs/cli.md: the data set's own by default, else none
        aug = _data.default_augment(choice.spec, aug, "none")
    show = main and progress(args)
    train = _data.load(choice, "train", args.root, n=args.train_subset, seed=0,
                       augment=aug if aug in ("standard", "cutout") else None,
                       progress=show)
    test = _data.load(choice, _data.test_split(choice), args.root, n=args.test_subset, seed=0,
                      progress=show)
    return train, test, _data.model_io(choice, train), choice


def _save(args: argparse.Namespace, net: Any, report: dict) -> None:
    """Write the trained model to ``args.out`` with the command line, final metrics, history
    and data set with its settings in its metadata (``meta["data"]``, read by ``analyze``)."""
    import leansnn as ls

    skip = ("out", "json", "quiet", "checkpoint", "resume", "restart", "_run", "command",
            "tensorboard")
    cmd = "leansnn train-snn " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in sorted(vars(args).items())
        if v is not None and v is not False and k not in skip)
    data = report["data"]
    size = data["settings"].get("size")
    ls.save(net, args.out, note=f"{args.model} (attention {args.attention}) "
            f"trained on {data['name']}: {cmd}",
            meta={"final": report["final"], "history": report["history"],
                  "data": {**data, "T": report["T"], "noise_hz": args.noise_hz,
                           "encoding": args.encoding,
                           "size": size[0] if size else None,
                           "train_subset": args.train_subset,
                           "test_subset": args.test_subset}})
    print(f"wrote {args.out}", file=log_stream(args))


def _build(args: argparse.Namespace, io: dict, T: int) -> tuple[Any, dict]:
    """The model (seeded with ``--seed``) and its registry arguments."""
    import torch

    import leansnn as ls

    params = inspect.signature(ls.models.registry.builder(args.model)).parameters
    model_kw: dict[str, Any] = dict(T=T, **_data.model_kwargs(args.model, io))
    if "attention" in params:   # recorded even when None: configs of earlier runs hold it
        model_kw["attention"] = None if args.attention == "none" else args.attention
    elif args.attention != "none":
        raise ValueError(f"--attention {args.attention}: model {args.model} has no attention "
                         "option; use " + ", ".join(n for n in trainable_models("snn") if
                                                    "attention" in inspect.signature(
                                                        ls.models.registry.builder(n)
                                                    ).parameters))
    if args.lam is not None:
        if args.attention == "none":
            raise ValueError("--lam sets ASA's lambda; it needs --attention asa or asa_authors")
        model_kw["lam"] = args.lam
    if args.width is not None:
        model_kw["width"] = args.width
    if args.dropout is not None:
        model_kw["dropout"] = args.dropout
    torch.manual_seed(args.seed)
    if args.width is not None and args.width < 1:
        raise ValueError(f"--width must be >= 1, got {args.width}")
    try:
        return ls.models.create(args.model, **model_kw), model_kw
    except ls.models.registry.ModelArgumentError as e:  # an option this model does not take
        raise ValueError(f"{e} (from the command line options)") from None


def _vote(args: argparse.Namespace, test_set: Any) -> str | None:
    """The voting rule of the test evaluation: event sets read from folders (recordings
    split into windows) vote; others are scored per sample."""
    if callable(getattr(test_set, "windows", None)):
        return args.vote or "majority"
    if args.vote is not None:
        raise ValueError(f"--vote {args.vote}: only event data sets read from folders "
                         f"(nmnist, dvs_gesture, cifar10_dvs, ncaltech101) vote; "
                         f"{args.data} is scored per sample")
    return None


def _epoch_printer(args: argparse.Namespace, main: bool, vote: str | None):
    def on_epoch(rec: dict) -> None:
        if main and not args.quiet:
            per_win = (f" (per recording, {vote} vote; per window "
                       f"{100 * rec.get('test_window_accuracy', float('nan')):.2f} %)"
                       if vote else "")
            print(f"epoch {rec['epoch']}/{args.epochs}: loss {rec['loss']:.4f}, train acc "
                  f"{100 * rec['train_accuracy']:.2f} %, test acc "
                  f"{100 * rec.get('test_accuracy', float('nan')):.2f} %{per_win}, NASFR "
                  f"{rec.get('test_firing_rate', float('nan')):.4f}, "
                  f"{rec['seconds']:.1f} s", file=log_stream(args), flush=True)
    return on_epoch


def _final(hist: list[dict], net: Any, vote: str | None) -> dict:
    last = hist[-1]
    out = {"test_accuracy": last.get("test_accuracy"), "nasfr": last.get("test_firing_rate"),
           "layer_rates": last.get("test_layer_rates"),
           "parameters": sum(p.numel() for p in net.parameters())}
    if vote:
        out.update(vote=vote, test_window_accuracy=last.get("test_window_accuracy"))
    return out


# the options that do not define a run (not compared when a rerun meets its checkpoint)
RUN_SKIP = ("out", "json", "quiet", "checkpoint", "resume", "restart", "device", "threads",
            "root", "workers", "tensorboard", "command")


def _checkpoint(args: argparse.Namespace) -> str | None:
    """``--checkpoint``, else ``<out>.train`` beside ``--out`` (None without either)."""
    return args.checkpoint or (f"{args.out}.train" if getattr(args, "out", None) else None)


def train(args: argparse.Namespace) -> dict:
    """Run the training described by ``args`` (see :func:`add_arguments`); return the report.

    The report: ``{"config", "data" (data set and settings), "T", "history" (per epoch:
    loss, train_accuracy, firing_rate, test_accuracy (per recording when voting),
    test_window_accuracy (voting), test_firing_rate = NASFR, test_layer_rates = the test
    set's per-layer rates, seconds), "final"}``; on ranks other than 0 of a distributed run,
    the same with ``"final": None``. A rerun meeting a checkpoint of another run stops
    (``--restart`` / ``--resume``, :func:`leansnn.commands._common.rerun`).
    """
    from leansnn import distributed as D
    from leansnn.train import RunMismatch

    ckpt = _checkpoint(args)
    if args.resume and not ckpt:
        raise ValueError("--resume needs --checkpoint PATH (or --out PATH: the checkpoint is "
                         "then <out>.train)")
    if args.resume and args.restart:
        raise ValueError("--resume and --restart (--no-resume) contradict each other")
    setup(args)
    positive(args, "T", "epochs", "batch_size", "train_subset", "test_subset", "size")
    check_trainable(args.model, "snn", NAME)   # before any data is loaded
    main = os.environ.get("RANK", "0") in ("", "0")  # torchrun: only rank 0 announces
    values = rerun(dict(vars(args)), ckpt, args.restart, args.resume,
                   log_stream(args) if main else None, RUN_SKIP)
    for k, v in values.items():
        setattr(args, k, v)
    info = D.init(args.device)
    try:
        return _train(args, info, ckpt)
    except RunMismatch as e:
        raise ValueError(mismatch_text(e.checkpoint, e.diffs)) from None
    finally:
        D.cleanup()


def _encoder(args: argparse.Namespace, choice: Any, T: int) -> dict | None:
    """The ``--encoding`` of static images as ``with_encoding`` arguments (None: the model's
    own direct encoding)."""
    if args.encoding is None:
        return None
    if choice.kind == "events":
        raise ValueError(f"--encoding {args.encoding}: static data sets only; {choice.name} is "
                         "an event data set (its frames are the input)")
    return {"encoding": args.encoding, "T": T,
            "seed": args.seed if args.encoding == "rate" else None}


def _train(args: argparse.Namespace, info: Any, ckpt: str | None) -> dict:
    from leansnn import distributed as D
    from leansnn.train import TrainConfig, fit, metrics_path

    # rank 0 builds any data cache first, the others then read it
    if info.main:
        train_set, test_set, io, choice = load_data(args, True)
    D.barrier()
    if not info.main:
        train_set, test_set, io, choice = load_data(args, False)
    T = int(choice.settings.get("T") or args.T or 8)
    vote = _vote(args, test_set)
    enc = _encoder(args, choice, T)
    net, model_kw = _build(args, io, T)
    if enc is not None:  # the encoder is part of the model: saved, loaded, analysed with it
        from leansnn.models.encoded import with_encoding

        net = with_encoding(net, **enc)
    resume = bool(ckpt) and not args.restart
    _data.check_resume(net, ckpt, resume)
    model, train_set = D.prepare(net, train_set, info, sync_bn=args.sync_bn)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, schedule="cosine", min_lr=args.min_lr,
                      loss=args.loss, seed=args.seed, max_batches=args.max_batches,
                      augment="flip_crop" if args.augment == "flip_crop" else "none",
                      extra={"model": args.model, "data": choice.record(), "vote": vote,
                             "attention": args.attention, "world_size": info.world_size,
                             "encoding": args.encoding})
    if info.main and not args.quiet:
        enc_text = f", {args.encoding} encoding" if enc is not None else ""
        print(f"train-snn: {args.model} (attention {args.attention}, T={T}{enc_text}) on "
              f"{choice.describe()}: {len(train_set) * info.world_size} training / "
              f"{len(test_set)} test recordings, {info.world_size} process(es), device "
              f"{info.device}", file=log_stream(args), flush=True)
    t0 = time.perf_counter()
    res = fit(model, train_set, test_set, cfg, checkpoint=ckpt, resume=resume,
              device=info.device, progress=progress(args), vote=vote,
              on_epoch=_epoch_printer(args, info.main, vote),
              run=describe_run(vars(args), RUN_SKIP), tensorboard_dir=args.tensorboard,
              metrics_csv=metrics_path(args.checkpoint or args.out) if ckpt else None)
    hist = res["history"]
    given = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    report: dict[str, Any] = {"config": {**given, "model_kwargs": {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in model_kw.items()},
        "world_size": info.world_size}, "data": choice.record(), "T": T,
        "history": hist, "final": None, "wall_seconds": time.perf_counter() - t0}
    if info.main and hist:
        report["final"] = _final(hist, net, vote)
        if getattr(args, "out", None):
            _save(args, net, report)
    return report


def run(args: argparse.Namespace) -> int:
    report = train(args)
    if report["final"] is None:
        return 0
    f = report["final"]
    per_win = (f" per recording ({f['vote']} vote; {100 * f['test_window_accuracy']:.2f} "
               "% per window)" if f.get("vote") else "")
    print(f"test accuracy {100 * f['test_accuracy']:.2f} %{per_win} | NASFR "
          f"{f['nasfr']:.4f} | {f['parameters']} parameters", file=log_stream(args))
    write_json(args, report)
    return 0
