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
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import _data
from ._common import (
    add_common,
    load_model,
    log_stream,
    positive,
    progress,
    registry_kind,
    setup,
    write_json,
)

NAME = "train-ann"
HELP = ("train an ANN (ReLU or QCFS activations) on a static image data set (Fashion-MNIST, "
        "CIFAR-10/100, image folders), ready for conversion")
EXAMPLE = ("leansnn train-ann --model small_cnn --activation qcfs --levels 4 --epochs 10 "
           "--out pretrained/small_cnn_qcfs4.lsnn")


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
              workers: int | None = None, log: Any = None) -> dict:
    """Train ``model`` with ``activation`` (``"relu"`` or ``"qcfs"`` with ``levels`` and an
    initial ``threshold``) on the static data set ``dataset`` (a name in
    :data:`leansnn.data.DATASETS`, read from ``root``, else ``$LEANSNN_DATA``; ``data`` is
    an older name of ``root``) and save it to ``out``, with the data set and its settings in
    the metadata (``meta["data"]``). ``augment``: ``"standard"`` / ``"cutout"`` (the data
    set's, CIFAR and image folders), ``"flip_crop"`` (the trainer's flip + 2-pixel shift),
    ``"none"``; default ``standard`` where the data set takes it, else ``flip_crop``.

    The resumable per-epoch checkpoint is ``checkpoint`` (default ``<out>.train``); rerunning
    with ``resume=True`` continues an interrupted run. ``init_from`` (a ``.lsnn`` file of the
    same model and activation) starts from its weights instead of a random initialisation
    (a second cosine cycle, "fine-tuning"); its training history is kept in the metadata
    under ``init_from``. Returns ``{"model", "history",
    "test_accuracy" (fraction), "seconds", "path"}``.
    """
    import torch

    import leansnn as ls
    from leansnn.train import TrainConfig, fit, seed_all

    if activation not in ("relu", "qcfs"):
        raise ValueError(f"activation must be 'relu' or 'qcfs', got {activation!r}")
    if registry_kind(model) in ("snn", "converted"):
        raise ValueError(f"--model {model} is an SNN; train it with leansnn train-snn, or give "
                         "an ANN: " + ", ".join(n for n in ls.models.available()
                                                if registry_kind(n) == "ann"))
    out = Path(out)
    ckpt = Path(checkpoint) if checkpoint is not None else out.with_name(out.name + ".train")
    choice = _data.resolve(argparse.Namespace(data=dataset, size=size, workers=workers,
                                              skip_bad_files=skip_bad_files), NAME, ("static",))
    aug = augment or ("standard" if "augment" in choice.spec.settings else "flip_crop")
    train = _data.load(choice, "train", root if root is not None else data, n=train_images,
                       seed=seed, augment=aug if aug in ("standard", "cutout") else None,
                       progress=progress)
    test = _data.load(choice, _data.test_split(choice), root if root is not None else data,
                      n=test_images, seed=seed, progress=progress)
    seed_all(seed)
    act: Any = ls.QCFS(levels=levels, threshold=threshold) if activation == "qcfs" else "relu"
    net = ls.models.create(model, activation=act, **_data.model_kwargs(
        model, _data.model_io(choice, train)), **(model_kwargs or {}))
    init_meta = None
    if init_from is not None:
        net, init_meta = _init_weights(net, Path(init_from), activation, levels, train)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                      weight_decay=weight_decay, schedule="cosine", seed=seed,
                      augment="flip_crop" if aug == "flip_crop" else "none")
    _data.check_resume(net, ckpt, resume)
    t0 = time.perf_counter()
    res = fit(net, train, test, cfg, checkpoint=ckpt, resume=resume, device=device,
              progress=progress,
              on_epoch=(lambda r: print(
                  f"epoch {r['epoch']}/{epochs}: loss {r['loss']:.4f}, train acc "
                  f"{100 * r['train_accuracy']:.2f} %, test acc "
                  f"{100 * r['test_accuracy']:.2f} %, {r['seconds']:.0f} s", file=log,
                  flush=True))
              if progress else None)
    seconds = time.perf_counter() - t0
    hist = res["history"]
    acc = hist[-1]["test_accuracy"]
    net.eval()
    meta = {"test_accuracy": acc, "history": hist, "train_config": asdict(cfg),
            "torch": torch.__version__,
            "data": {**choice.record(), "augment": aug, "train_images": train_images,
                     "test_images": test_images, "seed": seed}}
    if init_meta is not None:
        meta["init_from"] = init_meta
    ls.save(net, out, note=note or f"{model} ({activation}{levels if activation == 'qcfs' else ''})"
            f" on {choice.name}", meta=meta)
    return {"model": net, "history": hist, "test_accuracy": acc, "seconds": seconds,
            "path": out}


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
    p.add_argument("--model", default="small_cnn",
                   help="registry name: small_cnn, resnet20, vgg11, ... (default small_cnn)")
    p.add_argument("--activation", default="qcfs", choices=["qcfs", "relu"])
    p.add_argument("--levels", type=int, default=4, help="QCFS levels L (default 4)")
    p.add_argument("--threshold", type=float, default=3.0, help="initial QCFS threshold")
    p.add_argument("--out", required=True, help="where to write the trained model (.lsnn)")
    p.add_argument("--checkpoint", default=None,
                   help="resumable per-epoch checkpoint (default <out>.train)")
    p.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint (the default when the file exists)")
    p.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint "
                   "exists")
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
    add_common(p, json_help="write the training history as JSON to PATH (no PATH or '-': "
                            "stdout)")


def run(args: argparse.Namespace) -> int:
    setup(args)
    if args.resume and args.no_resume:
        raise ValueError("--resume and --no-resume contradict each other")
    positive(args, "levels", "epochs", "batch_size", "train_images", "test_images")
    res = train_ann(args.model, args.activation, args.levels, args.threshold, args.out,
                    epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                    lr=args.lr, weight_decay=args.weight_decay, augment=args.augment,
                    train_images=args.train_images, test_images=args.test_images,
                    seed=args.seed, root=args.root, dataset=args.data, size=args.size,
                    skip_bad_files=args.skip_bad_files, workers=args.workers,
                    checkpoint=args.checkpoint, resume=not args.no_resume, device=args.device,
                    init_from=args.init_from, progress=progress(args), log=log_stream(args))
    print(f"test accuracy {100 * res['test_accuracy']:.2f} % after {len(res['history'])} "
          f"epochs ({res['seconds']:.0f} s); saved {res['path']}", file=log_stream(args))
    write_json(args, {"test_accuracy": res["test_accuracy"], "history": res["history"],
                      "seconds": res["seconds"], "path": str(res["path"])})
    return 0
