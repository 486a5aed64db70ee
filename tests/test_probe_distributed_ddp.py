"""Data-parallel training with two real gloo processes: random draws per rank, batch-norm
running statistics, exact resume."""

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from leansnn import distributed as D
from leansnn.train import TrainConfig, fit


class _Data:
    """Tiny leansnn-style image data set (float64 ``[B, 1, 8, 8]`` batches)."""

    def __init__(self, n: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64)
        self.y = torch.randint(0, 5, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, b, shuffle=False, seed=0, drop_last=False):
        n = len(self)
        order = (torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle
                 else torch.arange(n))
        stop = n - n % b if drop_last else n
        for i in range(0, stop, b):
            idx = order[i:i + b]
            yield self.x[idx], self.y[idx]


def _linear():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5)).double()


def _bn():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3),
                               torch.nn.Flatten(), torch.nn.Linear(108, 5)).double()


def _dropout():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5),
                               torch.nn.Linear(64, 5)).double()


_AUG = dict(epochs=2, lr=5e-2, seed=3, augment="flip_crop")
# an SGD step of 1e-300 leaves every float64 weight as it is: the first conv's output, hence
# the batch statistics, are the same in both runs, whatever the per-rank normalisation
_BN = dict(epochs=1, optimizer="sgd", momentum=0.0, lr=1e-300, seed=1, schedule="none")
_DROP = dict(epochs=2, lr=5e-2, seed=2)


class _Stop(Exception):
    pass


def _run(rank: int, world: int, port: int, out: str, case: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = D.init("cpu")
    res = {"aug": _case_aug, "bn": _case_bn, "drop": _case_drop,
           "mismatch": _case_mismatch}[case](info, Path(out))
    D.cleanup()
    torch.save(res, Path(out) / f"{case}{rank}.pt")


def _case_aug(info, out):
    model = _linear()
    ddp, data = D.prepare(model, _Data(), info)
    fit(ddp, data, None, TrainConfig(batch_size=4, **_AUG), progress=False)
    return model.state_dict()


def _case_bn(info, out):
    model = _bn()
    ddp, data = D.prepare(model, _Data(), info)
    fit(ddp, data, None, TrainConfig(batch_size=2, **_BN), progress=False)
    return model.state_dict()


def _case_drop(info, out):
    masks = []
    model = _dropout()
    model[1].register_forward_hook(lambda m, i, o: masks.append(o != 0))
    ddp, data = D.prepare(model, _Data(), info)
    fit(ddp, data, None, TrainConfig(batch_size=4, **_DROP), progress=False)
    straight = {k: v.clone() for k, v in model.state_dict().items()}

    def stop(rec):
        if rec["epoch"] == 1:
            raise _Stop

    model = _dropout()
    ddp, data = D.prepare(model, _Data(), info)
    ck = out / "drop.lsnn"
    with pytest.raises(_Stop):   # interrupted after the checkpoint of epoch 1
        fit(ddp, data, None, TrainConfig(batch_size=4, **_DROP), checkpoint=ck,
            progress=False, on_epoch=stop)
    D.barrier()                  # a restarted run finds the checkpoint written
    model = _dropout()
    ddp, data = D.prepare(model, _Data(), info)
    fit(ddp, data, None, TrainConfig(batch_size=4, **_DROP), checkpoint=ck, resume=True,
        progress=False)
    return {"masks": masks[:4], "straight": straight, "resumed": model.state_dict()}


def _case_mismatch(info, out):
    ddp, data = D.prepare(_linear(), _Data(), info)
    try:   # the second rank was started with another seed: another shuffle to shard
        fit(ddp, data, None, TrainConfig(batch_size=4, seed=1 + info.rank), progress=False)
    except ValueError as e:
        return str(e)
    return "trained"


def _spawn(tmp_path, case):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_run, args=(2, port, str(tmp_path), case), nprocs=2, join=True)
    return [torch.load(tmp_path / f"{case}{r}.pt") for r in range(2)]


def test_flip_crop_under_ddp_draws_what_one_process_draws(tmp_path):
    """Every rank drew the same flips for its own samples (one generator, same seed); now
    the flips of the global batch are drawn and each rank takes its slice, so two ranks of
    batch 4 train exactly as one process of batch 8."""
    s0, s1 = _spawn(tmp_path, "aug")
    single = _linear()
    fit(single, _Data(), None, TrainConfig(batch_size=8, **_AUG), progress=False)
    for k, v in single.state_dict().items():
        assert torch.equal(s0[k], s1[k])
        torch.testing.assert_close(s0[k], v, rtol=1e-12, atol=1e-13)


def test_running_statistics_hold_every_ranks_batches(tmp_path):
    """DDP copied rank 0's buffers to every rank before each forward pass, so rank 1's
    batches (all but its last) were lost from the running mean; now each rank keeps its own
    and the epoch's average is the mean over the global batches, as in one process."""
    s0, s1 = _spawn(tmp_path, "bn")
    single = _bn()
    fit(single, _Data(), None, TrainConfig(batch_size=4, **_BN), progress=False)
    ref = single.state_dict()
    for k in ref:
        assert torch.equal(s0[k], s1[k]), k
    assert int(s0["1.num_batches_tracked"]) == 4
    torch.testing.assert_close(s0["1.running_mean"], ref["1.running_mean"], rtol=1e-12,
                               atol=1e-14)


@pytest.mark.slow
def test_dropout_differs_across_ranks_and_a_resumed_ddp_run_is_exact(tmp_path):
    """Both ranks drew the same dropout masks for their different samples (torch's global
    generator seeded alike); now it is seeded per rank and epoch, and resuming from the
    epoch checkpoint gives the uninterrupted run's weights."""
    r0, r1 = _spawn(tmp_path, "drop")
    for m0, m1 in zip(r0["masks"], r1["masks"]):
        assert m0.shape == m1.shape and not torch.equal(m0, m1)
    for r in (r0, r1):
        for k, v in r["straight"].items():
            assert torch.equal(r["resumed"][k], v), k
            assert torch.equal(r0["straight"][k], r1["straight"][k])


def test_ranks_started_with_different_settings_are_refused(tmp_path):
    """Another seed on rank 1 sharded another shuffle (samples seen twice or never) and
    trained silently; another learning rate let the ranks drift apart. Every rank now
    refuses, naming the setting and its values."""
    msgs = _spawn(tmp_path, "mismatch")
    for m in msgs:
        assert "train_config.seed: rank 0 1, rank 1 2" in m, m

