"""The training loop for ANNs (``[B, K]`` outputs) and SNNs (``[T, B, K]``).

One loop serves both: an SNN's prediction is the mean of its per-step outputs over T.
Data is read through :func:`leansnn.base.batching.iter_batches`; spikes are counted and
test sets evaluated with :mod:`leansnn.evaluation` (``evaluate`` is re-exported here).
Checkpoints are written atomically after every epoch and hold model, optimizer,
scheduler, epoch, history and random state, so ``resume=True`` continues an interrupted
run to the same result.
"""

from __future__ import annotations

import math
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

from . import distributed as D
from .base.batching import BatchError, iter_batches, num_batches
from .base.io import write_text
from .base.progress import progress as progress_display
from .checkpoint import load_checkpoint, save
from .evaluation import SpikeCounter, evaluate, evaluate_votes, rate_output

__all__ = ["TrainConfig", "fit", "evaluate", "seed_all", "metrics_path", "MetricsLog",
           "TensorBoardMissing", "RunMismatch", "TrainingDiverged", "stored_run",
           "run_differences"]


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
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.max_batches is not None and (not isinstance(self.max_batches, int)
                                             or self.max_batches < 1):
            raise ValueError(f"max_batches must be None or an integer >= 1, got "
                             f"{self.max_batches!r}")
        _check_rates(self)


def _check_rates(cfg: TrainConfig) -> None:
    """Learning-rate settings that train: ``lr`` finite and > 0, ``0 <= min_lr <= lr``,
    ``momentum`` and ``weight_decay`` finite and >= 0."""
    def num(name: str) -> float:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
        return float(v)

    lr, min_lr = num("lr"), num("min_lr")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not 0 <= min_lr <= lr:
        raise ValueError(f"min_lr must lie in [0, lr={lr!r}] (the cosine schedule ends there), "
                         f"got {min_lr!r}")
    for name in ("momentum", "weight_decay"):
        if num(name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)!r}")


class RunMismatch(ValueError):
    """``resume=True``, but the checkpoint holds another run: ``diffs`` lists
    ``(setting, stored value, requested value)``."""

    def __init__(self, checkpoint: Any, diffs: list[tuple[str, Any, Any]],
                 fix: str = "pass resume=False to start over (overwriting it), or resume with "
                            "the stored settings (meta['train_config'] and meta['run'])") -> None:
        self.checkpoint, self.diffs = checkpoint, diffs
        what = "; ".join(f"{k} {_short(a)} there, {_short(b)} here" for k, a, b in diffs)
        super().__init__(f"{checkpoint} holds another run ({what}); {fix}")


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class TrainingDiverged(ValueError):
    """The loss or a weight became NaN or infinite; nothing of the epoch was saved."""


def stored_run(checkpoint: str | Path) -> tuple[dict, dict | None, int]:
    """``(train_config, run description or None, epochs done)`` stored in a checkpoint
    written by :func:`fit`."""
    ck = load_checkpoint(checkpoint)
    meta = ck["meta"].get("meta") or {}
    return dict(meta.get("train_config") or {}), meta.get("run"), int(ck.get("epoch", 0))


def run_differences(stored: dict, requested: dict) -> list[tuple[str, Any, Any]]:
    """The settings (dotted names for nested ones) whose values differ between two run
    descriptions, as ``(name, stored, requested)``; tuples and lists compare equal."""
    import json

    a = D.flat_settings(json.loads(json.dumps(stored, default=str)))
    b = D.flat_settings(json.loads(json.dumps(requested, default=str)))
    return [(k, a.get(k), b.get(k)) for k in list(a) + [k for k in b if k not in a]
            if a.get(k) != b.get(k)]


def _augment(x: torch.Tensor, g: torch.Generator, share: tuple[int, int] = (0, 1)
             ) -> torch.Tensor:
    """Random horizontal flip (per sample) and a random shift of up to 2 pixels (zero
    padded) of images ``[B, C, H, W]`` or time-major frames ``[T, B, C, H, W]`` (a sample is
    flipped at all its steps or at none). ``share=(rank, world_size)`` under DDP: the flips
    are drawn for the global batch and this rank takes its slice (as ``ShardedData``), so
    ranks do not repeat each other's flips and the run draws what one process would."""
    axis = 1 if x.dim() == 5 else 0
    B = x.shape[axis]
    rank, world = share
    flip = torch.rand(B * world, generator=g)[rank * B:(rank + 1) * B] < 0.5
    shape = [1] * x.dim()
    shape[axis] = B
    x = torch.where(flip.view(shape), x.flip(-1), x)
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
    # a checkpoint loaded with map_location=<cuda device> holds these on the GPU; the CPU
    # generators take CPU tensors
    torch.set_rng_state(st["torch"].cpu())
    py = st["python"]
    random.setstate((3, tuple(int(v) for v in py[:-1]), None))
    np.random.set_state(("MT19937", st["numpy"].cpu().numpy().astype(np.uint32),
                         st["numpy_pos"]))


_unwrap = D.unwrap


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
    params = [p for p in model.parameters() if p.is_floating_point()]
    tot_loss = correct = n = 0.0
    limits = dict(drop_last=True, max_batches=cfg.max_batches)
    bar = progress_display(
        iter_batches(data, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch, **limits),
        total=num_batches(data, cfg.batch_size, **limits), desc=f"epoch {epoch + 1}/{cfg.epochs}",
        quiet=not progress, unit="batch")
    with SpikeCounter(_unwrap(model)) as sc:  # layer names without DDP's "module."
        for i, b in enumerate(bar):
            if b.y is None:
                raise BatchError(f"batch {i} of the training data has no labels; fit needs "
                                 "(inputs, labels) batches, e.g. TensorDataset(x, y)")
            x, y = b.x.to(device), b.y.to(device)
            if cfg.augment == "flip_crop":
                x = _augment(x, aug_g, (D.rank(), D.world_size()))
            out = model(x)
            loss = _loss(out, y, cfg.loss)
            if not bool(torch.isfinite(loss.detach())):
                _diverged("the training loss", float(loss.detach()), epoch, i, opt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            try:
                opt.step()
            except RuntimeError as e:  # e.g. Adam's lr / bias correction beyond float range
                if "overflow" not in str(e):
                    raise
                _diverged("the optimizer step", None, epoch, i, opt)
            if not _finite(params):
                _diverged("a weight", None, epoch, i, opt)
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
    if n == 0:
        _no_steps(data, cfg)
    names = list(sc.layers)
    tot = [tot_loss, correct, n, sc.spikes, sc.slots]
    tot += [v for k in names for v in (sc.layers[k].spikes, sc.layers[k].slots)]
    if D.is_distributed():
        t = torch.tensor(tot, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        tot = t.tolist()
        D.average_buffers(model)  # batch-norm running statistics: the mean over ranks
    tot_loss, correct, n, spikes, slots = tot[:5]
    per = tot[5:]
    return {"loss": tot_loss / max(n, 1), "train_accuracy": correct / max(n, 1),
            "firing_rate": spikes / slots if slots else float("nan"),
            "train_layer_rates": {k: per[2 * i] / per[2 * i + 1] if per[2 * i + 1] else None
                                  for i, k in enumerate(names)}}


def _finite(params: list[torch.Tensor]) -> bool:
    """All weights finite: one ``isfinite().all()`` per tensor and one device sync."""
    if not params:
        return True
    with torch.no_grad():
        return bool(torch.stack([torch.isfinite(p).all() for p in params]).all())


def _diverged(what: str, value: float | None, epoch: int, batch: int,
              opt: torch.optim.Optimizer) -> None:
    lr = float(opt.param_groups[0]["lr"])
    got = f" ({value})" if value is not None else ""
    raise TrainingDiverged(
        f"training diverged: {what} became NaN or infinite{got} at epoch {epoch + 1}, batch "
        f"{batch} (training loss (epoch {epoch + 1}, batch {batch}); learning rate {lr:g}); "
        f"nothing of this epoch was saved; try a lower learning rate (e.g. --lr {lr / 10:g})")


def _no_steps(data: Any, cfg: TrainConfig) -> None:
    """Raise: training on ``data`` with ``cfg`` would make no optimizer step."""
    first = data[0] if isinstance(data, (tuple, list)) and data and \
        isinstance(data[0], torch.Tensor) else data
    try:
        n: Any = int(first.shape[0]) if isinstance(first, torch.Tensor) else len(data)
    except TypeError:
        n = "too few"
    per = " per process" if D.is_distributed() else ""
    raise ValueError(
        f"training would make no optimizer step: {n} training "
        f"{'image' if n == 1 else 'images'}{per}, fewer than one "
        f"batch of {cfg.batch_size} (an incomplete last batch is dropped); use more images "
        "or a smaller batch size")


class TensorBoardMissing(ValueError, ImportError):
    """``tensorboard_dir`` was given but the ``tensorboard`` package is not installed."""


def metrics_path(path: str | Path) -> Path:
    """The per-epoch CSV beside a checkpoint (or model) file: ``run.lsnn`` ->
    ``run.metrics.csv``, ``ann.lsnn.train`` -> ``ann.lsnn.metrics.csv``."""
    p = Path(path)
    return p.with_suffix(".metrics.csv") if p.suffix else p.with_name(p.name + ".metrics.csv")


def _flat(rec: dict) -> dict:
    """One epoch's record as flat scalar columns: nested per-layer rates become
    ``train_rate/<layer>`` and ``test_rate/<layer>``; NaN and None become empty cells."""
    out: dict = {}
    for k, v in rec.items():
        if isinstance(v, dict):
            prefix = {"train_layer_rates": "train_rate", "test_layer_rates": "test_rate"}.get(
                k, k)
            for name, r in v.items():
                out[f"{prefix}/{name}"] = r
        elif isinstance(v, (int, float)) or v is None:
            out[k] = v
    return out


class MetricsLog:
    """Per-epoch metrics to a CSV (rewritten atomically from the whole history every epoch,
    so a resumed run never duplicates rows) and, with ``tensorboard_dir``, to TensorBoard
    (scalars under the same names; a resumed run purges the events after its last epoch)."""

    def __init__(self, csv_path: str | Path | None, tensorboard_dir: str | Path | None = None,
                 start_epoch: int = 0) -> None:
        self.csv_path = Path(csv_path) if csv_path is not None else None
        self.writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise TensorBoardMissing(
                    "TensorBoard logging needs the tensorboard package: "
                    "pip install 'leansnn[tensorboard]' (or pip install tensorboard)") from None
            self.writer = SummaryWriter(str(tensorboard_dir), purge_step=start_epoch + 1)

    def write(self, history: list[dict], tensorboard: bool = True) -> None:
        """Rewrite the CSV from ``history``; log its last epoch to TensorBoard."""
        rows = [_flat(r) for r in history]
        if self.csv_path is not None and rows:
            cols: list[str] = []
            for r in rows:
                cols += [k for k in r if k not in cols]
            lines = [",".join(cols)] + [",".join(_cell(r.get(c)) for c in cols) for r in rows]
            write_text(self.csv_path, "\n".join(lines) + "\n")
        if self.writer is not None and rows and tensorboard:
            last = rows[-1]
            for k, v in last.items():
                if k != "epoch" and isinstance(v, (int, float)) and v == v:
                    self.writer.add_scalar(k, v, int(last["epoch"]))
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return repr(v) if isinstance(v, float) else str(v)


def _resume(checkpoint: str | Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
            device: Any) -> tuple[int, list[dict]]:
    ck = load_checkpoint(checkpoint, map_location=device)
    _unwrap(model).load_state_dict(ck["state_dict"])
    opt.load_state_dict(ck["optimizer"])
    if sched is not None and "scheduler" in ck:
        sched.load_state_dict(ck["scheduler"])
    _set_rng_state(ck["rng"])
    return int(ck["epoch"]), list(ck["meta"]["meta"].get("history", []))


def _same_run(checkpoint: str | Path, cfg: TrainConfig, run: dict | None) -> None:
    """Raise :class:`RunMismatch` unless ``checkpoint`` holds the run ``cfg`` + ``run``."""
    stored_cfg, stored_desc, _ = stored_run(checkpoint)
    diffs = run_differences(stored_cfg, asdict(cfg)) if stored_cfg else []
    if run is not None and stored_desc is not None:
        diffs += run_differences(stored_desc, run)
    if diffs:
        raise RunMismatch(checkpoint, diffs)


def _test(model: nn.Module, test_data: Any, cfg: TrainConfig, device: Any, progress: bool,
          vote: str | None) -> dict:
    run = evaluate if vote is None else partial(evaluate_votes, how=vote)
    ev = run(_unwrap(model), test_data, batch_size=max(cfg.batch_size, 256), device=device,
             progress=progress, desc="test")
    rec = {"test_accuracy": ev["accuracy"], "test_firing_rate": ev["firing_rate"]}
    if vote is not None:
        rec["test_window_accuracy"] = ev["window_accuracy"]
    rec["test_layer_rates"] = ev["layer_rates"]
    return rec


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
    metrics_csv: str | Path | bool | None = None,
    tensorboard_dir: str | Path | None = None,
    run: dict | None = None,
) -> dict:
    """Train ``model`` and return ``{"history": [per-epoch dicts], "model": model}``.

    ``train_data`` / ``test_data``: anything :func:`leansnn.base.batching.iter_batches`
    reads; training batches need labels (an ``(x, y)`` pair, ``TensorDataset(x, y)``, a
    labelled data set or loader). ``config.max_batches`` limits the batches per epoch.
    Each epoch's dict holds ``epoch, loss, train_accuracy, firing_rate`` (spikes per neuron
    and step during training), ``train_layer_rates`` (per spiking layer), ``lr`` (the
    learning rate of the epoch), ``test_accuracy, test_firing_rate, test_layer_rates``
    (:func:`leansnn.evaluation.evaluate` on ``test_data``) ``, seconds`` (training) and
    ``test_seconds``. ``vote`` (``"majority"`` or ``"sum"``; event data sets with ``windows()``)
    tests with the ASA paper's protocol instead (:func:`leansnn.evaluation.evaluate_votes`):
    ``test_accuracy`` per recording, ``test_window_accuracy`` per window. With
    ``checkpoint`` a resumable checkpoint is written atomically after every epoch; with
    ``resume=True`` and an existing checkpoint the run continues where it stopped (model,
    optimizer, scheduler, epoch and random state) -- only when the checkpoint holds the same
    run: its ``train_config`` and ``run`` (a JSON-able description of everything else that
    defines the run, e.g. model and data settings, stored in the checkpoint) must equal
    ``config`` and ``run``, else :class:`RunMismatch` names the differing settings.

    Refused before anything is trained: a run that would make no optimizer step (fewer
    training samples than one batch; the incomplete last batch is dropped). Training stops
    with :class:`TrainingDiverged` (naming epoch and batch) at the first non-finite loss or
    weight (checked after every optimizer step); no checkpoint of that epoch is written.

    Logs: the history goes to the CSV ``metrics_csv`` after every epoch (default
    :func:`metrics_path` of ``checkpoint`` when there is one; ``False``: none), and to
    TensorBoard under ``tensorboard_dir`` (needs ``pip install 'leansnn[tensorboard]'``).
    ``progress=False`` hides the progress display (:mod:`leansnn.base.progress`: a bar on a
    terminal, plain lines otherwise). Under DDP (:mod:`leansnn.distributed`) only rank 0
    shows progress, evaluates and writes checkpoint and logs; the training figures are
    summed over ranks and batch-norm running statistics averaged over ranks every epoch.
    """
    cfg = config or TrainConfig()
    main = D.rank() == 0
    progress = progress and main
    model.to(device)
    opt = _make_optimizer(model, cfg)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.min_lr)
             if cfg.schedule == "cosine" else None)
    history: list[dict] = []
    start = 0
    seed_all(cfg.seed)
    steps = num_batches(train_data, cfg.batch_size, drop_last=True, max_batches=cfg.max_batches)
    resuming = resume and checkpoint is not None and Path(checkpoint).exists()
    D.check_same({"train_config": asdict(cfg), "run": run, "batches": steps,  # DDP: all ranks
                  "resume": resuming}, "fit")
    if steps == 0:
        _no_steps(train_data, cfg)
    if resuming:
        _same_run(checkpoint, cfg, run)
        start, history = _resume(checkpoint, model, opt, sched, device)
        if progress:
            print(f"resumed from {checkpoint} after epoch {start}")
    if metrics_csv is None or metrics_csv is True:
        metrics_csv = metrics_path(checkpoint) if checkpoint is not None else None
    log = MetricsLog(metrics_csv or None, tensorboard_dir, start) if main else None
    aug_g = torch.Generator().manual_seed(cfg.seed + 1)
    if log is not None and history:  # stopped after its checkpoint, before its CSV row
        log.write(history, tensorboard=False)
    try:
        for epoch in range(start, cfg.epochs):
            aug_g.manual_seed(cfg.seed + 1 + 1000 * epoch)
            D.seed_rank(cfg.seed, epoch)  # DDP: dropout etc. draw differently on each rank
            t0 = time.perf_counter()
            lr = float(opt.param_groups[0]["lr"])
            rec = {"epoch": epoch + 1, **_train_epoch(model, train_data, cfg, opt, epoch, aug_g,
                                                      device, progress), "lr": lr}
            if sched is not None:
                sched.step()
            rec["seconds"] = time.perf_counter() - t0
            if test_data is not None and main:
                t1 = time.perf_counter()
                rec.update(_test(model, test_data, cfg, device, progress, vote))
                rec["test_seconds"] = time.perf_counter() - t1
            history.append(rec)
            if checkpoint is not None and main:
                state = {"optimizer": opt.state_dict(), "epoch": epoch + 1, "rng": _rng_state()}
                if sched is not None:
                    state["scheduler"] = sched.state_dict()
                save(_unwrap(model), checkpoint,
                     meta={"train_config": asdict(cfg), "history": history,
                           **({"run": run} if run is not None else {})}, **state)
            if on_epoch is not None:
                on_epoch(rec)
            if log is not None:
                log.write(history)
    finally:
        if log is not None:
            log.close()
    return {"history": history, "model": model}
