"""``leansnn train-ann``: train an ANN (ReLU or QCFS) on a static image data set for conversion.

Python API: :func:`train_ann` (builds the model from the registry with the data set's
channels, classes and input size, and calls :func:`leansnn.train.fit`: SGD with momentum or
Adam, cosine schedule, weight decay, augmentation (the data set's random crop + flip, or the
trainer's flip + shift), an atomic resumable checkpoint after every epoch, test accuracy per
epoch). The final weights go to ``out`` without optimizer state (small enough to commit),
with the test accuracy and training settings in the checkpoint's metadata.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import _data
from ._common import (
    add_common,
    add_rerun_args,
    check_trainable,
    describe_run,
    load_model,
    log_stream,
    mismatch_text,
    positive,
    progress,
    rerun,
    setup,
    write_json,
)

NAME = "train-ann"
HELP = ("train an ANN (ReLU or QCFS activations) on a static image data set (Fashion-MNIST, "
        "CIFAR-10/100, image folders), ready for conversion")
EXAMPLE = ("leansnn train-ann --model small_cnn --activation qcfs --levels 4 --epochs 10 "
           "--out pretrained/small_cnn_qcfs4.lsnn")


# the train_ann arguments that define a run (compared when a rerun meets its checkpoint)
RUN_SKIP = ("out", "checkpoint", "resume", "device", "progress", "note", "root", "data",
            "workers", "log", "tensorboard_dir", "metrics_csv")


def train_ann(model: str = "small_cnn", activation: str = "qcfs", levels: int = 4,
              threshold: float = 3.0, out: str | Path = "ann.lsnn", *, epochs: int = 10,
              batch_size: int = 128, optimizer: str = "sgd", lr: float = 0.05,
              weight_decay: float = 5e-4, augment: str | None = None,
              train_images: int | None = None, test_images: int | None = None,
              seed: int = 0, data: str | None = None,
              checkpoint: str | Path | None = None, resume: bool = True, device: str = "cpu",
              progress: bool = True, model_kwargs: dict[str, Any] | None = None,
              note: str = "", init_from: str | Path | None = None,
              dataset: str = "fashion_mnist", root: str | Path | None = None,
              size: tuple[int, ...] | None = None, skip_bad_files: bool = False,
              workers: int | None = None, log: Any = None, sync_bn: bool = False,
              tensorboard_dir: str | Path | None = None,
              metrics_csv: str | Path | None = None) -> dict:
    """Train ``model`` with ``activation`` (``"relu"`` or ``"qcfs"`` with ``levels`` and an
    initial ``threshold``) on the static data set ``dataset`` (a name in
    :data:`leansnn.data.DATASETS`, read from ``root``, else ``$LEANSNN_DATA``; ``data`` is
    an older name of ``root``) and save it to ``out``, with the data set and its settings in
    the metadata (``meta["data"]``). ``augment``: ``"standard"`` / ``"cutout"`` (the data
    set's, CIFAR and image folders), ``"flip_crop"`` (the trainer's flip + 2-pixel shift),
    ``"none"``; default ``standard`` where the data set takes it, else ``flip_crop``.

    The resumable per-epoch checkpoint is ``checkpoint`` (default ``<out>.train``); rerunning
    with ``resume=True`` continues an interrupted run -- the same run only (every argument
    but those in :data:`RUN_SKIP` is stored and compared; another run is a
    :class:`leansnn.train.RunMismatch`). ``init_from`` (a ``.lsnn`` file of the
    same model and activation) starts from its weights instead of a random initialisation
    (a second cosine cycle, "fine-tuning"); its training history is kept in the metadata
    under ``init_from``. Under ``torchrun`` it trains data-parallel
    (:mod:`leansnn.distributed`; ``batch_size`` per process, ``sync_bn`` on CUDA); rank 0
    writes. Logs: ``metrics_csv`` (default beside the checkpoint) and ``tensorboard_dir``.
    Returns ``{"model", "history", "test_accuracy" (fraction), "seconds", "path"}``.
    """
    given = dict(locals())
    from leansnn import distributed as D

    run = describe_run(given, RUN_SKIP)
    if activation not in ("relu", "qcfs"):
        raise ValueError(f"activation must be 'relu' or 'qcfs', got {activation!r}")
    check_trainable(model, "ann", NAME)
    out = Path(out)
    ckpt = Path(checkpoint) if checkpoint is not None else out.with_name(out.name + ".train")
    owned = not D.is_distributed()
    info = D.init(device)
    try:
        return _train(given, run, out, ckpt, info)
    finally:
        if owned:
            D.cleanup()


def _train(given: dict, run: dict, out: Path, ckpt: Path, info: Any) -> dict:
    """:func:`train_ann` (arguments ``given``) after the checks: data, model,
    :func:`leansnn.train.fit`, save (rank 0)."""
    import torch

    import leansnn as ls
    from leansnn import distributed as D
    from leansnn.train import TrainConfig, fit

    r = argparse.Namespace(**given)
    root = r.root if r.root is not None else r.data
    progress, log, resume = r.progress and info.main, r.log, r.resume
    cfg = TrainConfig(epochs=r.epochs, batch_size=r.batch_size, optimizer=r.optimizer,
                      lr=r.lr, weight_decay=r.weight_decay, schedule="cosine", seed=r.seed)
    choice, aug, train, test = _load(r, root, progress, info)
    cfg.augment = "flip_crop" if aug == "flip_crop" else "none"
    net, init_meta = _build(r, choice, train)
    _data.check_resume(net, ckpt, resume)
    model, train = D.prepare(net, train, info, sync_bn=r.sync_bn)
    t0 = time.perf_counter()
    res = fit(model, train, test, cfg, checkpoint=ckpt, resume=resume, device=info.device,
              progress=progress, run=run, tensorboard_dir=r.tensorboard_dir,
              metrics_csv=r.metrics_csv,
              on_epoch=(lambda h: print(
                  f"epoch {h['epoch']}/{r.epochs}: loss {h['loss']:.4f}, train acc "
                  f"{100 * h['train_accuracy']:.2f} %, test acc "
                  f"{100 * h['test_accuracy']:.2f} %, {h['seconds']:.0f} s", file=log,
                  flush=True))
              if progress else None)
    seconds = time.perf_counter() - t0
    hist = res["history"]
    acc = hist[-1].get("test_accuracy")  # rank 0 alone evaluates
    net.eval()
    meta = {"test_accuracy": acc, "history": hist, "train_config": asdict(cfg),
            "torch": torch.__version__, "world_size": info.world_size,
            "data": {**choice.record(), "augment": aug, "train_images": r.train_images,
                     "test_images": r.test_images, "seed": r.seed}}
    if init_meta is not None:
        meta["init_from"] = init_meta
    if info.main:
        levels = r.levels if r.activation == "qcfs" else ""
        ls.save(net, out, note=r.note or f"{r.model} ({r.activation}{levels}) on {choice.name}",
                meta=meta)
    return {"model": net, "history": hist, "test_accuracy": acc, "seconds": seconds,
            "path": out}


def _load(r: argparse.Namespace, root: Any, progress: bool, info: Any) -> tuple:
    """``(data choice, augmentation, train set, test set)``; under torchrun rank 0 reads (and
    caches) first, the others after it."""
    from leansnn import distributed as D

    choice = _data.resolve(argparse.Namespace(data=r.dataset, size=r.size, workers=r.workers,
                                              skip_bad_files=r.skip_bad_files), NAME,
                           ("static",))
    aug = _data.default_augment(choice.spec, r.augment, "flip_crop")
    for turn in (True, False):
        if info.main == turn:
            train = _data.load(choice, "train", root, n=r.train_images, seed=r.seed,
                               augment=aug if aug in ("standard", "cutout") else None,
                               progress=progress)
            test = _data.load(choice, _data.test_split(choice), root, n=r.test_images,
                              seed=r.seed, progress=progress)
        if turn:
            D.barrier()
    return choice, aug, train, test


def _build(r: argparse.Namespace, choice: Any, train: Any) -> tuple[Any, dict | None]:
    """The seeded model (``init_from``: with those weights) and the ``init_from`` summary."""
    import leansnn as ls
    from leansnn.train import seed_all

    seed_all(r.seed)
    act: Any = ls.QCFS(levels=r.levels, threshold=r.threshold) if r.activation == "qcfs" \
        else "relu"
    net = ls.models.create(r.model, activation=act, **_data.model_kwargs(
        r.model, _data.model_io(choice, train)), **(r.model_kwargs or {}))
    if r.init_from is None:
        return net, None
    return _init_weights(net, Path(r.init_from), r.activation, r.levels, train)


def _init_weights(net: Any, path: Path, activation: str = "relu", levels: int = 4,
                  calib: Any = None) -> tuple[Any, dict]:
    """Load the weights of the ``.lsnn`` file ``path`` into ``net`` (same model and activation
    required), or, for ``activation="qcfs"`` and a ReLU network in ``path``, make its QCFS
    twin (``ls.conversion.to_qcfs``, thresholds from ``calib``); return the network and a
    summary of where it came from for the new file's metadata."""
    import leansnn as ls

    src = load_model(path, "train-ann --init-from", ("ann",))
    mine, theirs = getattr(net, "leansnn_config", None), src.leansnn_meta.get("config")
    if mine != theirs and activation == "qcfs" and not any(
            isinstance(m, ls.QCFS) for m in src.modules()):  # ReLU net -> its QCFS twin
        net = ls.conversion.to_qcfs(src.train(), levels, calib_data=calib, max_batches=4)
    elif mine != theirs:
        raise ValueError(f"--init-from {path}: it holds {theirs}, but this run trains {mine}; "
                         "give a checkpoint of the same model, activation and levels (or a "
                         "ReLU checkpoint with --activation qcfs)")
    else:
        net.load_state_dict(src.state_dict())
    m = src.leansnn_meta.get("meta", {})
    return net, {"path": path.name, "note": src.leansnn_meta.get("note", ""),
                 "test_accuracy": m.get("test_accuracy"), "history": m.get("history"),
                 "train_config": m.get("train_config"), "init_from": m.get("init_from")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from leansnn import distributed as D

    p.add_argument("--model", default="small_cnn",
                   help="registry name: small_cnn, resnet20, vgg11, ... (default small_cnn)")
    p.add_argument("--activation", default="qcfs", choices=["qcfs", "relu"])
    p.add_argument("--levels", type=int, default=4, help="QCFS levels L (default 4)")
    p.add_argument("--threshold", type=float, default=3.0, help="initial QCFS threshold")
    p.add_argument("--out", required=True, help="where to write the trained model (.lsnn)")
    p.add_argument("--checkpoint", default=None,
                   help="resumable per-epoch checkpoint (default <out>.train)")
    add_rerun_args(p)
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also log the per-epoch metrics to TensorBoard in DIR (needs "
                        "pip install 'leansnn[tensorboard]')")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--init-from", default=None, metavar="CKPT",
                   help="start from the weights of this .lsnn file (same model, activation and "
                        "levels) instead of a random initialisation: fine-tuning")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--train-images", type=int, default=None, metavar="N",
                   help="use a random subset of N training images")
    p.add_argument("--test-images", type=int, default=None, metavar="N",
                   help="evaluate on a test subset (default: all 10000)")
    _data.add_data_options(p, ("static",), default="fashion_mnist", events=False,
                           augment=("standard", "cutout", "flip_crop", "none"))
    D.add_distributed_args(p)
    add_common(p, json_help="write the training history as JSON to PATH (no PATH or '-': "
                            "stdout)")


def run(args: argparse.Namespace) -> int:
    from leansnn.train import RunMismatch

    setup(args)
    positive(args, "levels", "epochs", "batch_size", "train_images", "test_images")
    out = Path(args.out)
    ckpt = Path(args.checkpoint) if args.checkpoint else out.with_name(out.name + ".train")
    kw = dict(model=args.model, activation=args.activation, levels=args.levels,
              threshold=args.threshold, epochs=args.epochs, batch_size=args.batch_size,
              optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
              augment=args.augment, train_images=args.train_images,
              test_images=args.test_images, seed=args.seed, dataset=args.data, size=args.size,
              skip_bad_files=args.skip_bad_files, init_from=args.init_from,
              model_kwargs=None, sync_bn=args.sync_bn)
    main = os.environ.get("RANK", "0") in ("", "0")  # torchrun: only rank 0 announces
    kw = rerun(kw, ckpt, args.restart, args.resume, log_stream(args) if main else None,
               RUN_SKIP)
    try:
        res = train_ann(out=out, root=args.root, workers=args.workers, checkpoint=ckpt,
                        resume=not args.restart, device=args.device,
                        progress=progress(args), log=log_stream(args),
                        tensorboard_dir=args.tensorboard,
                        metrics_csv=None if args.checkpoint else _metrics(out), **kw)
    except RunMismatch as e:
        raise ValueError(mismatch_text(e.checkpoint, e.diffs)) from None
    if not main:
        return 0
    print(f"test accuracy {100 * res['test_accuracy']:.2f} % after {len(res['history'])} "
          f"epochs ({res['seconds']:.0f} s); saved {res['path']}", file=log_stream(args))
    write_json(args, {"test_accuracy": res["test_accuracy"], "history": res["history"],
                      "seconds": res["seconds"], "path": str(res["path"])})
    return 0


def _metrics(out: Path) -> Path:
    from leansnn.train import metrics_path

    return metrics_path(out)
