"""Wall time and accuracy of one calibrated conversion with output-matching refinement.

``ls.convert(ann, T, method="calibrated", max_samples=1024, refine_steps=N)`` of a ReLU net
(default: the shipped ResNet-20), timed on its own (run it on an otherwise idle machine), then
evaluated on the full Fashion-MNIST test set. Prints one line per T; writes nothing.

Run::

    .venv/bin/python benchmarks/calibration_time.py --refine-steps 100 --T 8 4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import leansnn as ls  # noqa: E402
from leansnn.convert import evaluate_snn  # noqa: E402
from leansnn.train import evaluate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", default=str(ROOT / "pretrained/resnet20_relu.lsnn"))
    p.add_argument("--T", type=int, nargs="+", default=[8, 4])
    p.add_argument("--refine-steps", type=int, default=100)
    p.add_argument("--calib-images", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ann = ls.load(args.net).eval()
    train, test = ls.data.fashion_mnist("train"), ls.data.fashion_mnist("test")
    ann_acc = evaluate(ann, test, batch_size=256)["accuracy"]
    print(f"{Path(args.net).name}: ANN {100 * ann_acc:.2f} %, {args.threads} threads", flush=True)
    for T in args.T:
        t0 = time.perf_counter()
        snn = ls.convert(ann, T=T, method="calibrated", calib_data=train,
                         max_samples=args.calib_images, refine_steps=args.refine_steps,
                         progress=False)
        secs = time.perf_counter() - t0
        acc = evaluate_snn(snn, test, firing_rate=False)["accuracy"]
        print(f"T={T} refine_steps={args.refine_steps}: {100 * acc:.2f} % "
              f"({100 * (acc - ann_acc):+.2f}) in {secs:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
