"""Conversion of standard architectures: fast path, bit identity, speed, SpikingJelly.

Six architectures written here (not torchvision), CIFAR-like 3x32x32 input, random weights
with realistic batch-norm statistics (running statistics of random images in train mode):
VGG-11-BN (max pooling), ResNet-18 (max-pool stem), a DenseNet-style block net
(BN-ReLU-conv order, concatenation), an Inception-style net (parallel branches, max-pool
branch and max pooling between stages), MobileNet-V2 (ReLU6, inverted residuals) and a
ShuffleNet-V2-style net (chunk, channel shuffle by view/transpose/reshape/contiguous).
Each ReLU net becomes a QCFS net with ``ls.conversion.to_qcfs(relu, 4, calib_data=...)``,
which is converted with ``ls.convert(qann, T)``.

Reported per architecture: the fast path status, whether ``y.mean(0)`` equals the QCFS
ANN's output bit for bit at T = L = 4 (float32) and the count of elements that do not,
prediction agreement with the QCFS ANN at each T, parallel SNN / ANN time at T = 4, 8, 16,
32, the simulate engine's float32 deviation, and SpikingJelly 2.0's converter on the ReLU
net (where it converts) at T = 32, with its time.

    nice -n 10 .venv/bin/python benchmarks/architectures.py [--batch 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import interleaved, machine_line, md_table, write_section  # noqa: E402

import leansnn as ls  # noqa: E402


def cbr(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1, act=nn.ReLU):
    return [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), act(inplace=True)]


def vgg11_bn(nc: int = 10) -> nn.Module:
    layers, c = [], 3
    for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += cbr(c, v)
            c = v
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512, 512), nn.ReLU(True),
                         nn.Dropout(0.5), nn.Linear(512, nc))


class Basic(nn.Module):
    def __init__(self, cin: int, cout: int, s: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, s, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)  # shared by both activations, as torchvision's
        self.down = nn.Sequential() if s == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.b1(self.c1(x)))
        out = self.b2(self.c2(out))
        out += self.down(x)
        return self.relu(out)


def resnet18(nc: int = 10) -> nn.Module:
    blocks, c = [], 64
    for cout, s in [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                    (512, 1)]:
        blocks.append(Basic(c, cout, s))
        c = cout
    return nn.Sequential(*cbr(3, 64), nn.MaxPool2d(3, 2, 1), *blocks,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, nc))


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.b1, self.c1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.b2 = nn.BatchNorm2d(4 * growth)
        self.c2 = nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        h = self.c1(F.relu(self.b1(x)))
        return torch.cat([x, self.c2(F.relu(self.b2(h)))], 1)


def densenet(nc: int = 10, growth: int = 16, layers=(4, 4, 4)) -> nn.Module:
    mods, c = [nn.Conv2d(3, 2 * growth, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * growth),
               nn.ReLU(), nn.MaxPool2d(3, 2, 1)], 2 * growth
    for i, n in enumerate(layers):
        for _ in range(n):
            mods.append(DenseLayer(c, growth))
            c += growth
        if i < len(layers) - 1:
            mods += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False),
                     nn.AvgPool2d(2)]
            c //= 2
    return nn.Sequential(*mods, nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(c, nc))


class Inception(nn.Module):
    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, cp: int):
        super().__init__()
        self.b1 = nn.Sequential(*cbr(cin, c1, 1))
        self.b3 = nn.Sequential(*cbr(cin, c3r, 1), *cbr(c3r, c3))
        self.b5 = nn.Sequential(*cbr(cin, c5r, 1), *cbr(c5r, c5), *cbr(c5, c5))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), *cbr(cin, cp, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


def inception(nc: int = 10) -> nn.Module:
    return nn.Sequential(
        *cbr(3, 64), Inception(64, 32, 48, 64, 8, 16, 16), Inception(128, 64, 64, 96, 16, 48,
                                                                     32),
        nn.MaxPool2d(3, 2, 1), Inception(240, 96, 48, 104, 8, 24, 32),
        Inception(256, 80, 56, 112, 12, 32, 32), nn.MaxPool2d(3, 2, 1),
        Inception(256, 128, 80, 160, 16, 64, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Dropout(0.2), nn.Linear(416, nc))


class InvRes(nn.Module):
    def __init__(self, cin: int, cout: int, s: int, t: int) -> None:
        super().__init__()
        h = cin * t
        layers = (cbr(cin, h, 1, act=nn.ReLU6) if t != 1 else []) + cbr(h, h, 3, s, h,
                                                                        act=nn.ReLU6)
        self.conv = nn.Sequential(*layers, nn.Conv2d(h, cout, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.res = s == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.res else self.conv(x)


def mobilenet_v2(nc: int = 10) -> nn.Module:
    cfg = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1)]
    mods, c = cbr(3, 32, act=nn.ReLU6), 32
    for t, cout, n, s in cfg:
        for i in range(n):
            mods.append(InvRes(c, cout, s if i == 0 else 1, t))
            c = cout
    return nn.Sequential(*mods, *cbr(c, 1280, 1, act=nn.ReLU6), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(0.2), nn.Linear(1280, nc))


def shuffle(x, groups: int = 2):
    b, c, h, w = x.size()
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, s: int) -> None:
        super().__init__()
        self.s, h = s, cout // 2
        c = cin if s > 1 else h
        self.b2 = nn.Sequential(*cbr(c, h, 1), nn.Conv2d(h, h, 3, s, 1, groups=h, bias=False),
                                nn.BatchNorm2d(h), *cbr(h, h, 1))
        self.b1 = nn.Sequential(nn.Conv2d(cin, cin, 3, s, 1, groups=cin, bias=False),
                                nn.BatchNorm2d(cin), *cbr(cin, h, 1)) if s > 1 else None

    def forward(self, x):
        if self.s == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat((a, self.b2(b)), 1)
        else:
            out = torch.cat((self.b1(x), self.b2(x)), 1)
        return shuffle(out)


def shufflenet_v2(nc: int = 10) -> nn.Module:
    mods, c = cbr(3, 24), 24
    mods.append(nn.MaxPool2d(3, 2, 1))
    for cout, n in [(116, 4), (232, 8), (464, 4)]:
        for i in range(n):
            mods.append(ShuffleUnit(c, cout, 2 if i == 0 else 1))
            c = cout
    return nn.Sequential(*mods, *cbr(c, 1024, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(1024, nc))


ARCHS = {"VGG-11-BN": vgg11_bn, "ResNet-18": resnet18, "DenseNet-style": densenet,
         "Inception-style": inception, "MobileNet-V2": mobilenet_v2,
         "ShuffleNet-V2-style": shufflenet_v2}


def realistic(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Random weights, BN running statistics of the images (cumulative average)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    model.train()
    with torch.no_grad():
        for chunk in images.split(32):
            model(chunk)
    return model.eval()


def sj_time(relu: nn.Module, calib: torch.Tensor, x: torch.Tensor, T: int, rounds: int):
    try:
        from conversion import SJRunner, sj_convert

        sj = SJRunner(sj_convert(relu, [(c, torch.zeros(len(c))) for c in calib.split(32)]),
                      T)
        with torch.no_grad():
            t = interleaved({"sj": lambda: sj(x)}, rounds=rounds, warmup=1)["sj"]
        return t, None
    except Exception as e:  # noqa: BLE001 - report why SpikingJelly refused
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"


def unreachable(y: torch.Tensor, ref: torch.Tensor, span: int = 256) -> int:
    """How many elements of ``y.mean(0)`` that differ from ``ref`` cannot equal it whatever
    the last step's value within ``span`` ulps (the other steps as they are): there the
    per-step values cancel, so the float sum is too coarse to hold the ANN's value."""
    off = y.mean(0) != ref
    if not bool(off.any()):
        return 0
    cols, z, T = y[:, off], ref[off], y.shape[0]
    up = dn = cols[T - 1]
    cands = [cols[T - 1]]
    for _ in range(span):
        up = torch.nextafter(up, torch.full_like(up, float("inf")))
        dn = torch.nextafter(dn, torch.full_like(dn, float("-inf")))
        cands += [up, dn]
    trial = cols.unsqueeze(1).repeat(1, len(cands), 1)  # [T, candidates, elements]
    trial[T - 1] = torch.stack(cands)
    return int((~(trial.mean(0) == z).any(0)).sum())


def run_arch(name: str, args, calib: torch.Tensor, x: torch.Tensor) -> tuple[list, dict]:
    torch.manual_seed(0)
    relu = realistic(ARCHS[name](), calib)
    qann = ls.conversion.to_qcfs(relu, 4, calib_data=calib).eval()
    with torch.no_grad():
        ref = qann(x)
        ref64 = copy.deepcopy(qann).double()(x.double())
    res: dict = {"T": {}}
    fns = {"ann": lambda: qann(x)}
    snns = {T: ls.convert(qann, T=T) for T in args.T}
    ok, reasons = snns[args.T[0]].fast_path_status()
    with torch.no_grad():
        for T, snn in snns.items():
            fns[f"snn{T}"] = (lambda s=snn: s(x))
            y = snn(x)
            res["T"][T] = float((y.mean(0).argmax(-1) == ref.argmax(-1)).float().mean())
        y4 = snns[4](x)
        res["bit_identical"] = bool(torch.equal(y4.mean(0), ref))
        res["off_elems"] = int((y4.mean(0) != ref).sum())
        res["unreachable"] = unreachable(y4, ref)
        sim = snns[4](x, engine="simulate").mean(0)
        res["sim_dev"] = float((sim - ref).abs().max())
        s64 = ls.convert(copy.deepcopy(qann).double(), T=4)
        res["sim64_dev"] = float((s64(x.double(), engine="simulate").mean(0) - ref64)
                                 .abs().max())
        times = interleaved(fns, rounds=args.rounds, warmup=1)
        # the step-by-step engine (what runs where the fast path cannot: sequence inputs,
        # observed neurons) at the largest T, against SpikingJelly's step-by-step SNN
        big = snns[max(args.T)]
        sim_t = interleaved({"sim": lambda: big(x, engine="simulate")}, rounds=args.rounds,
                            warmup=1)["sim"]
    sj_t, sj_err = sj_time(relu, calib, x, max(args.T), args.rounds) if args.sj else (
        None, "skipped")
    ratios = [f"{times[f'snn{T}'] / times['ann']:.2f}x" for T in args.T]
    row = [name, "exact" if ok else "no: " + reasons[0][:60],
           "yes" if res["bit_identical"] else (
               f"no ({res['off_elems']} of {ref.numel()}, {res['unreachable']} unreachable)"),
           f"{res['sim_dev']:.1e}", f"{res['sim64_dev']:.0e}", f"{1e3 * times['ann']:.1f}",
           *ratios, " / ".join(f"{100 * res['T'][T]:.0f}" for T in args.T),
           f"{1e3 * sim_t:.0f} ms",
           (f"{1e3 * sj_t:.0f} ms ({sj_t / times[f'snn{max(args.T)}']:.1f}x fast, "
            f"{sj_t / sim_t:.1f}x simulate)" if sj_t else f"refused ({sj_err})")]
    print(row, flush=True)
    return row, res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--T", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--archs", nargs="+", default=list(ARCHS))
    p.add_argument("--no-sj", dest="sj", action="store_false")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    calib = torch.rand(64, 3, 32, 32) * 2 - 1
    x = torch.rand(args.batch, 3, 32, 32) * 2 - 1
    rows = [run_arch(n, args, calib, x)[0] for n in args.archs]
    headers = ["architecture", "fast path", "y.mean(0) == QCFS ANN (T=L=4)",
               "simulate f32 max dev", "simulate f64 max dev", "ANN ms",
               *[f"SNN/ANN T={T}" for T in args.T],
               "agreement % T=" + "/".join(map(str, args.T)),
               f"simulate engine T={max(args.T)}",
               f"SpikingJelly T={max(args.T)} (its time / ours)"]
    md = ("## Conversion of standard architectures (fast path, bit identity, SpikingJelly)\n\n"
          f"`nice -n 10 .venv/bin/python benchmarks/architectures.py --batch {args.batch} "
          f"--rounds {args.rounds}" + (f" --threads {args.threads}" if args.threads else "")
          + f"` — {machine_line()}. Random weights, BN statistics of "
          "random images, ReLU nets made QCFS (L = 4) by `ls.conversion.to_qcfs` calibrated "
          f"on 64 random images; batch {args.batch} of 3x32x32; times are medians of "
          "interleaved rounds; agreement = argmax of `y.mean(0)` vs the QCFS ANN.\n\n"
          + md_table(headers, rows) + "\n")
    if not args.no_write:
        write_section("architectures", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
