"""Train the shipped Fashion-MNIST ANNs (QCFS L=4, L=8 and ReLU) and write pretrained/*.lsnn.

Usage (each run is resumable; rerun the same command after an interruption)::

    nice -n 10 .venv/bin/python scripts/train_pretrained.py --models small_cnn
    nice -n 10 .venv/bin/python scripts/train_pretrained.py --models resnet20 --epochs 30
    nice -n 10 .venv/bin/python scripts/train_pretrained.py --only qcfs4 --models small_cnn

    # a second cosine cycle from the shipped weights (fine-tuning; the new file keeps the
    # first run's history under meta["init_from"]):
    nice -n 10 .venv/bin/python scripts/train_pretrained.py --models resnet20 --only qcfs4 \
        --init-from pretrained --epochs 9 --lr 0.02 --out-dir OUT

Writes ``pretrained/<model>_<variant>.lsnn`` (weights + config + test accuracy, loadable with
``leansnn.load``) and appends one line per model to ``pretrained/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"qcfs4": ("qcfs", 4), "qcfs8": ("qcfs", 8), "relu": ("relu", 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["small_cnn"],
                   choices=["small_cnn", "resnet20"])
    p.add_argument("--only", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--epochs", type=int, default=None,
                   help="default: 12 for small_cnn, 30 for resnet20")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.05, help="peak SGD learning rate (default 0.05)")
    p.add_argument("--init-from", default=None, metavar="DIR",
                   help="start each net from DIR/<model>_<variant>.lsnn (fine-tuning) instead "
                        "of a random initialisation")
    p.add_argument("--out-dir", default=str(ROOT / "pretrained"))
    p.add_argument("--state-dir", default=None,
                   help="folder for the resumable per-epoch training state "
                        "(default: OUT_DIR/.train)")
    args = p.parse_args(argv)

    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from leansnn.commands.train_ann import train_ann

    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    state_dir = Path(args.state_dir) if args.state_dir else out_dir / ".train"
    for model in args.models:
        epochs = args.epochs or (12 if model == "small_cnn" else 30)
        for variant in args.only:
            act, levels = VARIANTS[variant]
            out = out_dir / f"{model}_{variant}.lsnn"
            cmd = (f"scripts/train_pretrained.py --models {model} --only {variant} "
                   f"--epochs {epochs}")
            init, suffix = None, ""
            if args.init_from:
                suffix = "_ft"
                init = Path(args.init_from) / f"{model}_{variant}.lsnn"
                cmd += f" --init-from {args.init_from}"
            if args.lr != 0.05:
                cmd += f" --lr {args.lr:g}"
            print(f"== {model} {variant}: {epochs} epochs -> {out}", flush=True)
            res = train_ann(model, act, levels, 3.0, out, epochs=epochs, batch_size=128,
                            optimizer="sgd", lr=args.lr, weight_decay=5e-4,
                            augment="flip_crop", init_from=init,
                            checkpoint=state_dir / f"{model}_{variant}{suffix}.train",
                            note=f"{model} {variant} on Fashion-MNIST ({cmd})")
            line = (f"| {model} | {variant} | {100 * res['test_accuracy']:.2f} % | {epochs} | "
                    f"{res['seconds'] / 60:.0f} min | `{cmd}` |\n")
            with open(out_dir / "RESULTS.md", "a") as fh:
                fh.write(line)
            print(line, end="", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
