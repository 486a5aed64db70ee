"""Multi-process data-parallel training (PyTorch DDP) for ``torchrun``.

Start any training script or ``leansnn train-snn`` / ``train-ann`` under torchrun::

    torchrun --standalone --nproc-per-node 2 -m leansnn train-snn --model lif_snn_a ...

(several machines: the same on each with ``--nnodes N --node-rank I --master-addr HOST
--master-port PORT`` or ``--rdzv-backend c10d --rdzv-endpoint HOST:PORT --rdzv-id ID``
instead of ``--standalone``; see docs/cli.md).

:func:`init` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and joins the process group: gloo on CPU, NCCL on GPU
(one GPU per process, ``cuda:LOCAL_RANK``). Without torchrun (no ``WORLD_SIZE`` or
``WORLD_SIZE=1``) it does nothing and everything runs in one process.

Data: :class:`ShardedData` splits every *global* batch of ``batch_size * world_size`` items
(same shuffled order on every rank, as ``DistributedSampler``) into ``world_size`` equal
slices, one per rank. Gradients are averaged over ranks by DDP, so ``world_size`` processes
with per-rank batch ``b`` take the same optimizer steps as one process with batch
``b * world_size`` -- exactly, for models without batch norm; batch norm normalises with
per-rank statistics (the usual DDP behaviour; ``wrap(..., sync_bn=True)`` synchronises them on
GPU, where ``torch.nn.SyncBatchNorm`` is supported). Running statistics are averaged over
ranks after every epoch (:func:`average_buffers`), so every rank ends with the same
parameters and buffers and the checkpoint holds the mean, not rank 0's share.

:func:`leansnn.train.fit` is DDP-aware: only rank 0 shows progress, evaluates the test set and
writes checkpoints; per-epoch training loss, accuracy and firing rate are summed over ranks.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "init", "cleanup", "is_distributed", "rank", "world_size", "is_main",
           "wrap", "unwrap", "ShardedData", "barrier", "average_buffers", "add_distributed_args",
           "prepare", "seed_rank", "check_same", "flat_settings"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` processes, its ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: str = "cpu"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the process that prints and writes."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def seed_rank(seed: int, epoch: int) -> None:
    """Under DDP: seed torch's global generator (dropout, unseeded rate encoding, ...) from
    ``(seed, epoch, rank)``, so ranks draw different numbers for their different samples and a
    resumed run draws the same as an uninterrupted one. No-op in one process."""
    if not is_distributed():
        return
    digest = hashlib.sha256(f"leansnn/{int(seed)}/{int(epoch)}/{rank()}".encode()).digest()
    torch.manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def check_same(settings: dict, what: str = "this run") -> None:
    """Under DDP: raise ``ValueError`` on every rank unless all ranks pass equal ``settings``
    (a JSON-able dict; nested dicts are compared key by key), naming each differing setting
    and its value per rank. Ranks started with different seeds shard different shuffles
    (samples seen twice or never), with different learning rates drift apart, with different
    batch sizes or epochs stop in mismatched collectives. No-op in one process."""
    if not is_distributed():
        return
    mine = flat_settings(json.loads(json.dumps(settings, sort_keys=True, default=str)))
    every: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    keys = sorted({k for d in every for k in d})
    diffs = [f"{k}: " + ", ".join(f"rank {r} {d.get(k)!r}" for r, d in enumerate(every))
             for k in keys if any(d.get(k) != every[0].get(k) for d in every)]
    if diffs:
        raise ValueError(f"{what}: the {len(every)} processes were started with different "
                         f"settings ({'; '.join(diffs)}); start every rank with the same "
                         "arguments")


def flat_settings(d: Any, prefix: str = "") -> dict:
    """Nested settings as ``{"a.b.c": value}`` (what :func:`check_same` and a resumed run's
    comparison report differences by)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict = {}
    for k, v in d.items():
        out.update(flat_settings(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"environment variable {name}={v!r} is not an integer") from None


def init(device: str = "auto", backend: str | None = None) -> DistInfo:
    """Join the torchrun process group if there is one; return this process's :class:`DistInfo`.

    device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda"``.
    backend: default ``"nccl"`` on CUDA, ``"gloo"`` on CPU.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False; "
                         "use --device cpu")
    ws, rk, lrk = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if ws <= 1:
        return DistInfo(0, 1, 0, None, device)
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ValueError(f"WORLD_SIZE={ws} but {var} is not set; start the processes with "
                             "torchrun (e.g. torchrun --standalone --nproc_per_node 2 ...)")
    if device == "cuda":
        torch.cuda.set_device(lrk)
        device = f"cuda:{lrk}"
    backend = backend or ("nccl" if device.startswith("cuda") else "gloo")
    if not is_distributed():
        dist.init_process_group(backend=backend, rank=rk, world_size=ws)
    return DistInfo(rk, ws, lrk, backend, device)


def cleanup() -> None:
    """Leave the process group (no-op in a single process). Normally after the other ranks
    are done with it: a rank that tore gloo down while its peer was still closing could die
    of SIGABRT ("terminate called without an active exception") after a successful run.
    Called while an exception propagates (``finally``), it leaves at once: the other ranks
    may never reach a barrier."""
    if is_distributed():
        if sys.exc_info()[0] is None:
            dist.barrier()
        dist.destroy_process_group()


def wrap(model: nn.Module, info: DistInfo, sync_bn: bool = False) -> nn.Module:
    """Move ``model`` to ``info.device`` and wrap it in DDP when distributed.

    ``sync_bn`` converts batch norm to ``SyncBatchNorm`` (CUDA only in PyTorch).
    """
    model = model.to(info.device)
    if not info.distributed:
        return model
    if sync_bn:
        if not info.device.startswith("cuda"):
            raise ValueError("--sync-bn needs CUDA (torch.nn.SyncBatchNorm does not run on "
                             "CPU); on CPU the running statistics are averaged over processes "
                             "after every epoch, batch statistics stay per process")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [info.local_rank] if info.device.startswith("cuda") else None
    # no buffer sync before each forward pass: each rank keeps the running statistics of its
    # own shares and :func:`average_buffers` takes their mean. DDP's default copies rank 0's
    # buffers to every rank before each forward pass, which dropped the other ranks' batches
    # from the running statistics (all but their last batch of each epoch).
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids, **_no_forward_buffer_sync())
    with torch.no_grad():  # start equal (broadcast_buffers=False skips DDP's own sync)
        for b in model.buffers():
            dist.broadcast(b, 0)
    return ddp


def _no_forward_buffer_sync() -> dict:
    """DDP's keyword for "do not copy rank 0's buffers before each forward pass" in this
    PyTorch (``forward_sync_buffers`` from 2.13, ``broadcast_buffers`` before)."""
    import inspect

    params = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    if "forward_sync_buffers" in params:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def average_buffers(model: nn.Module) -> None:
    """Make every buffer equal on all ranks: floating ones (batch-norm running mean and
    variance) become their mean over ranks, the others (``num_batches_tracked``) rank 0's.
    :func:`leansnn.train.fit` calls it after every training epoch. No-op in one process."""
    if not is_distributed():
        return
    ws = dist.get_world_size()
    with torch.no_grad():
        for b in unwrap(model).buffers():
            if b.is_floating_point():
                dist.all_reduce(b)
                b.div_(ws)
            else:
                dist.broadcast(b, 0)


def add_distributed_args(parser: Any) -> None:
    """The options of a training command that runs under ``torchrun``: ``--sync-bn``."""
    parser.add_argument(
        "--sync-bn", action="store_true",
        help="under torchrun on CUDA: batch norm normalises with the statistics of the global "
             "batch (torch.nn.SyncBatchNorm) instead of each process's share; without it "
             "(and always on CPU) the running statistics are averaged over processes after "
             "every epoch")


def prepare(model: nn.Module, train_data: Any, info: DistInfo,
            sync_bn: bool = False) -> tuple[nn.Module, Any]:
    """``(wrap(model, info, sync_bn), this rank's share of train_data)`` -- what a training
    command does between :func:`init` and :func:`leansnn.train.fit`. In one process: the
    model on ``info.device`` and the data unchanged."""
    wrapped = wrap(model, info, sync_bn=sync_bn)
    if info.distributed:
        train_data = ShardedData(train_data, info.rank, info.world_size)
    return wrapped, train_data


class ShardedData:
    """This rank's share of a leansnn dataset (anything with ``.batches`` and ``len``).

    ``batches(b, shuffle, seed, drop_last)`` draws global batches of ``b * world_size`` items
    from ``data.batches`` (same order on every rank for the same seed) and yields slice
    ``rank`` of each along the batch axis of ``x`` (and of ``y``). With ``drop_last=True``
    every rank gets the same number of equal batches (required inside DDP); with
    ``drop_last=False`` the last global batch is split as evenly as possible and a rank may
    get fewer batches.

    batch_dim: the batch axis of ``x``; ``None`` infers it: 1 for 5-d time-major event
    batches ``[T, B, C, H, W]``, else 0 (static ``[B, ...]``).
    """

    def __init__(self, data: Any, rank: int, world_size: int,
                 batch_dim: int | None = None) -> None:
        if not hasattr(data, "batches"):
            raise ValueError(f"ShardedData needs a dataset with .batches(), got "
                             f"{type(data).__name__}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
        self.data, self.rank, self.world_size = data, int(rank), int(world_size)
        self.batch_dim = batch_dim

    def __len__(self) -> int:
        return len(self.data) // self.world_size

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        w, r, b = self.world_size, self.rank, int(batch_size)
        for x, y in self.data.batches(b * w, shuffle=shuffle, seed=seed, drop_last=drop_last):
            n = y.shape[0]
            d = self.batch_dim if self.batch_dim is not None else (1 if x.dim() == 5 else 0)
            if x.shape[d] != n:
                raise ValueError(f"ShardedData: x has shape {tuple(x.shape)} but {n} labels; "
                                 f"pass batch_dim= (the axis of x that holds the batch)")
            if n == b * w:
                yield x.narrow(d, r * b, b), y[r * b:(r + 1) * b]
            else:
                xs, ys = torch.tensor_split(x, w, dim=d), torch.tensor_split(y, w)
                if ys[r].shape[0] > 0:
                    yield xs[r], ys[r]
