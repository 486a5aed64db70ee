"""``leansnn demo``: the main job (foundation version).

Trains a small directly encoded LIF SNN for one epoch on a subset of the real
Fashion-MNIST, then prints its test accuracy and mean firing rate.
"""

from __future__ import annotations

import argparse
import time

NAME = "demo"
HELP = "train a small LIF SNN on real Fashion-MNIST and report accuracy and firing rate"
EXAMPLE = "leansnn demo --train-images 12000 --T 4"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="folder with the Fashion-MNIST idx files "
                   "(default: $LEANSNN_DATA, then /usr/share/datasets/fashion-mnist)")
    p.add_argument("--train-images", type=int, default=12000,
                   help="training subset size (default 12000)")
    p.add_argument("--T", type=int, default=4, help="time steps (default 4)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import torch

    import leansnn as ls
    from leansnn.train import TrainConfig, evaluate, fit

    if args.T < 1:
        raise ValueError(f"--T must be >= 1, got {args.T}")
    if args.threads:
        torch.set_num_threads(args.threads)
    train = ls.data.fashion_mnist("train", root=args.data).subset(args.train_images, args.seed)
    test = ls.data.fashion_mnist("test", root=args.data)
    torch.manual_seed(args.seed)
    model = ls.models.create("lif_cnn", num_classes=10, in_channels=1, T=args.T)
    print(f"leansnn demo: LIF SNN (lif_cnn, T={args.T}, direct encoding) on "
          f"{len(train)} Fashion-MNIST training images, {args.epochs} epoch(s)")
    t0 = time.perf_counter()
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=2e-3, seed=args.seed)
    fit(model, train, None, cfg, device=args.device)
    train_s = time.perf_counter() - t0
    ev = evaluate(model, test, device=args.device, progress=True, desc="test")
    print(f"test accuracy {100 * ev['accuracy']:.2f} % on {ev['n']} images | mean firing rate "
          f"{ev['firing_rate']:.4f} spikes/neuron/step | training {train_s:.0f} s")
    return 0
