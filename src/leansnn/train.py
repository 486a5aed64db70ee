"""The training loop for ANNs (``[B, K]`` outputs) and SNNs (``[T, B, K]``).

One loop serves both: an SNN's prediction is the mean of its per-step outputs over T.
Data is read through :func:`leansnn.base.batching.iter_batches`; spikes are counted and
test sets evaluated with :mod:`leansnn.evaluation` (``evaluate`` is re-exported here).
Checkpoints are written atomically after every epoch and hold model, optimizer,
scheduler, epoch, history and random state, so ``resume=True`` continues an interrupted
run to the same result.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .base.batching import BatchError, iter_batches, num_batches
from .checkpoint import load_checkpoint, save
from .evaluation import SpikeCounter, evaluate, evaluate_votes, rate_output
from .layers import check_finite

__all__ = ["TrainConfig", "fit", "evaluate", "seed_all"]


def seed_all(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainConfig:
    """Training settings (all JSON-able, stored in every checkpoint).

    loss: ``"ce"`` (cross-entropy on the time-mean output) or ``"mse"`` (MSE between the
    time-mean output and the one-hot label, as in the ICCV 2023 paper).
    schedule: ``"cosine"`` (to ``min_lr``) or ``"none"``.
    augment: ``"none"`` or ``"flip_crop"`` (random horizontal flip + 2-pixel shift).
    """

    epochs: int = 1
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    min_lr: float = 0.0
    loss: str = "ce"
    augment: str = "none"
    seed: int = 0
    max_batches: int | None = None  # per epoch (for quick runs)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.loss not in ("ce", "mse"):
            raise ValueError(f"loss must be 'ce' or 'mse', got {self.loss!r}")
        if self.schedule not in ("cosine", "none"):
            raise ValueError(f"schedule must be 'cosine' or 'none', got {self.schedule!r}")
        if self.augment not in ("none", "flip_crop"):
            raise ValueError(f"augment must be 'none' or 'flip_crop', got {self.augment!r}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 2 pixels (zero padded)."""
    B = x.shape[0]
    flip = torch.rand(B, generator=g) < 0.5
    x = torch.where(flip.view(B, *([1] * (x.dim() - 1))), x.flip(-1), x)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
    x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    if dy > 0:
        x[..., :dy, :] = 0
    elif dy < 0:
        x[..., dy:, :] = 0
    if dx > 0:
        x[..., :dx] = 0
    elif dx < 0:
        x[..., dx:] = 0
    return x


def _loss(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    r = rate_output(out)
    if kind == "ce":
        return nn.functional.cross_entropy(r, y)
    return nn.functional.mse_loss(r, nn.functional.one_hot(y, r.shape[-1]).to(r.dtype))


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]) + [random.getstate()[2] or 0],
        "numpy": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": int(np_state[2]),
    }


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    py = st["python"]
    random.setstate((3, tuple(int(v) for v in py[:-1]), None))
    np.random.set_state(("MT19937", st["numpy"].numpy().astype(np.uint32), st["numpy_pos"]))


def _dist_rank() -> int:
    """Rank in the torchrun process group (0 without one); see :mod:`leansnn.distributed`."""
    d = torch.distributed
    return d.get_rank() if d.is_available() and d.is_initialized() else 0


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)


def _train_epoch(model: nn.Module, data: Any, cfg: TrainConfig, opt: torch.optim.Optimizer,
                 epoch: int, aug_g: torch.Generator, device: Any, progress: bool) -> dict:
    """One pass over the training data: ``{"loss", "train_accuracy", "firing_rate"}`` (summed
    over ranks under DDP); spikes counted by a :class:`SpikeCounter` (no potentials)."""
    model.train()
    tot_loss = correct = n = 0.0
    limits = dict(drop_last=True, max_batches=cfg.max_batches)
    bar = tqdm(iter_batches(data, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch, **limits),
               total=num_batches(data, cfg.batch_size, **limits),
               desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
    with SpikeCounter(model) as sc:
        for i, b in enumerate(bar):
            if b.y is None:
                raise BatchError(f"batch {i} of the training data has no labels; fit needs "
                                 "(inputs, labels) batches, e.g. TensorDataset(x, y)")
            x, y = b.x.to(device), b.y.to(device)
            if cfg.augment == "flip_crop":
                x = _augment(x, aug_g)
            out = model(x)
            loss = _loss(out, y, cfg.loss)
            check_finite(loss.detach(), f"training loss (epoch {epoch + 1}, batch {i})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n_b = y.numel()
            tot_loss += float(loss.detach()) * n_b
            correct += float((rate_output(out).argmax(-1) == y).sum())
            n += n_b
            if progress:
                post = {"loss": f"{tot_loss / n:.4f}", "acc": f"{correct / n:.3f}"}
                if sc.slots:
                    post["rate"] = f"{sc.rate:.3f}"
                bar.set_postfix(post)
    bar.close()
    spikes, slots = sc.spikes, sc.slots
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        tot = torch.tensor([tot_loss, correct, n, spikes, slots], dtype=torch.float64,
                           device=device)
        torch.distributed.all_reduce(tot)
        tot_loss, correct, n, spikes, slots = tot.tolist()
    return {"loss": tot_loss / max(n, 1), "train_accuracy": correct / max(n, 1),
            "firing_rate": spikes / slots if slots else float("nan")}


def fit(
    model: nn.Module,
    train_data: Any,
    test_data: Any | None = None,
    config: TrainConfig | None = None,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    device: str = "cpu",
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
    vote: str | None = None,
) -> dict:
    """Train ``model`` and return ``{"history": [per-epoch dicts], "model": model}``.

    ``train_data`` / ``test_data``: anything :func:`leansnn.base.batching.iter_batches`
    reads; training batches need labels (an ``(x, y)`` pair, ``TensorDataset(x, y)``, a
    labelled data set or loader). ``config.max_batches`` limits the batches per epoch.
    Each epoch's dict holds ``epoch, loss, train_accuracy, firing_rate`` (spikes per neuron
    and step during training), ``test_accuracy, test_firing_rate, test_layer_rates``
    (:func:`leansnn.evaluation.evaluate` on ``test_data``) ``, seconds``. ``vote``
    (``"majority"`` or ``"sum"``; event data sets with ``windows()``) tests with the ASA
    paper's protocol instead (:func:`leansnn.evaluation.evaluate_votes`): ``test_accuracy``
    per recording, ``test_window_accuracy`` per window. With
    ``checkpoint`` a resumable checkpoint is written
    atomically after every epoch; with ``resume=True`` and an existing checkpoint the run
    continues where it stopped (model, optimizer, scheduler, epoch and random state).
    Under DDP (:mod:`leansnn.distributed`) only rank 0 shows progress, evaluates and writes
    the checkpoint; the training figures are summed over ranks.
    """
    cfg = config or TrainConfig()
    main = _dist_rank() == 0
    progress = progress and main
    model.to(device)
    opt = _make_optimizer(model, cfg)
    steps = cfg.epochs
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=cfg.min_lr)
             if cfg.schedule == "cosine" else None)
    history: list[dict] = []
    start = 0
    seed_all(cfg.seed)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        ck = load_checkpoint(checkpoint, map_location=device)
        _unwrap(model).load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        if sched is not None and "scheduler" in ck:
            sched.load_state_dict(ck["scheduler"])
        start = int(ck["epoch"])
        history = list(ck["meta"]["meta"].get("history", []))
        _set_rng_state(ck["rng"])
        if progress:
            print(f"resumed from {checkpoint} after epoch {start}")
    aug_g = torch.Generator().manual_seed(cfg.seed + 1)
    for epoch in range(start, cfg.epochs):
        aug_g.manual_seed(cfg.seed + 1 + 1000 * epoch)
        t0 = time.perf_counter()
        rec = {"epoch": epoch + 1, **_train_epoch(model, train_data, cfg, opt, epoch, aug_g,
                                                  device, progress)}
        if sched is not None:
            sched.step()
        rec["seconds"] = time.perf_counter() - t0
        if test_data is not None and main:
            run = evaluate if vote is None else partial(evaluate_votes, how=vote)
            ev = run(_unwrap(model), test_data, batch_size=max(cfg.batch_size, 256),
                     device=device, progress=progress, desc="test")
            rec["test_accuracy"], rec["test_firing_rate"] = ev["accuracy"], ev["firing_rate"]
            if vote is not None:
                rec["test_window_accuracy"] = ev["window_accuracy"]
            rec["test_layer_rates"] = ev["layer_rates"]
        history.append(rec)
        if checkpoint is not None and main:
            state = {"optimizer": opt.state_dict(), "epoch": epoch + 1, "rng": _rng_state()}
            if sched is not None:
                state["scheduler"] = sched.state_dict()
            save(_unwrap(model), checkpoint,
                 meta={"train_config": asdict(cfg), "history": history}, **state)
        if on_epoch is not None:
            on_epoch(rec)
    return {"history": history, "model": model}
