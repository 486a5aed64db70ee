"""Data-parallel training: two gloo processes on 127.0.0.1 vs one process on the global batch."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import leansnn as ls
from leansnn import distributed as D
from leansnn.train import TrainConfig, fit


class _Data:
    """Tiny leansnn-style event dataset (float64, time-major batches)."""

    def __init__(self, n: int = 24, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 4, 2, 8, 8, generator=g, dtype=torch.float64) * 1.5
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
            yield self.x[idx].transpose(0, 1).contiguous(), self.y[idx]


def _model():
    torch.manual_seed(0)
    # no batch norm: per-rank BN statistics would differ from the global batch's
    return ls.models.create("lif_snn_a", T=4, in_channels=2, num_classes=5, input_size=(8, 8),
                            width=4, hidden=16, dropout=0.0, norm="none",
                            attention="asa").double()


_CFG = dict(epochs=2, lr=2e-2, loss="mse", seed=3, schedule="cosine")


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = D.init("cpu")
    assert info.distributed and info.backend == "gloo" and D.rank() == rank
    model = _model()
    ddp = D.wrap(model, info)
    res = fit(ddp, D.ShardedData(_Data(), info.rank, info.world_size), _Data(n=8, seed=1),
              TrainConfig(batch_size=4, **_CFG), checkpoint=Path(out) / "ck.lsnn",
              progress=False)
    torch.save({"state": model.state_dict(), "history": res["history"]},
               Path(out) / f"rank{rank}.pt")
    D.cleanup()


def _bn_model():
    torch.manual_seed(0)
    return ls.models.create("lif_snn_a", T=4, in_channels=2, num_classes=5, input_size=(8, 8),
                            width=4, hidden=16, dropout=0.0, attention="none").double()


def _bn_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = D.init("cpu")
    model = _bn_model()
    ddp, data = D.prepare(model, _Data(n=16), info)
    fit(ddp, data, None, TrainConfig(batch_size=4, epochs=1, lr=1e-2, seed=1),
        checkpoint=Path(out) / "bn.lsnn", progress=False)
    torch.save(model.state_dict(), Path(out) / f"bn{rank}.pt")
    D.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sharded_data_splits_global_batches():
    data = _Data(n=20)
    shards = [D.ShardedData(data, r, 2) for r in range(2)]
    assert len(shards[0]) == 10
    glob = list(data.batches(6, shuffle=True, seed=5, drop_last=True))
    parts = [list(s.batches(3, shuffle=True, seed=5, drop_last=True)) for s in shards]
    assert len(parts[0]) == len(parts[1]) == len(glob) == 3
    for (gx, gy), (x0, y0), (x1, y1) in zip(glob, parts[0], parts[1]):
        assert torch.equal(torch.cat([y0, y1]), gy)
        assert torch.equal(torch.cat([x0, x1], 1), gx)
    # without drop_last every item is seen exactly once over the ranks
    ys = [y for s in shards for _, y in s.batches(3, drop_last=False)]
    assert sorted(torch.cat(ys).tolist()) == sorted(data.y.tolist())
    with pytest.raises(ValueError):
        D.ShardedData(data, 2, 2)


def test_init_without_torchrun_is_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = D.init("cpu")
    assert not info.distributed and info.main and info.device == "cpu"
    m = torch.nn.Linear(2, 2)
    assert D.wrap(m, info) is m and D.unwrap(m) is m


@pytest.mark.slow
def test_two_processes_match_one_process_on_the_global_batch(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    single = _model()
    start = {k: v.clone() for k, v in single.state_dict().items()}
    res = fit(single, _Data(), None, TrainConfig(batch_size=8, **_CFG), progress=False)
    ref = single.state_dict()
    for k in ref:
        assert torch.equal(r0["state"][k], r1["state"][k]), f"{k} differs across ranks"
        torch.testing.assert_close(r0["state"][k], ref[k], rtol=1e-9, atol=1e-10)
    assert any(not torch.equal(start[k], ref[k]) for k in ref)  # training did something
    # rank 0 evaluated and wrote the checkpoint; the training loss is the global one
    assert "test_accuracy" in r0["history"][-1] and "test_accuracy" not in r1["history"][-1]
    for h0, h in zip(r0["history"], res["history"]):
        assert h0["loss"] == pytest.approx(h["loss"], rel=1e-9)
    loaded = ls.load(tmp_path / "ck.lsnn")
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v.double(), ref[k].double(), rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_two_processes_end_with_identical_parameters_and_buffers(tmp_path):
    """Batch norm: each rank normalises with its own share, and the running statistics are
    averaged over ranks after every epoch, so both ranks (and the checkpoint) agree."""
    mp.spawn(_bn_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    s0, s1 = (torch.load(tmp_path / f"bn{r}.pt") for r in range(2))
    bufs = [k for k in s0 if "running_" in k]
    assert bufs, "the model should have batch norm"
    for k in s0:
        assert torch.equal(s0[k], s1[k]), f"{k} differs across ranks"
    start = _bn_model().state_dict()
    assert any(not torch.equal(s0[k], start[k]) for k in bufs)  # statistics were updated
    saved = ls.load(tmp_path / "bn.lsnn").state_dict()
    for k in bufs:
        torch.testing.assert_close(saved[k].double(), s0[k].double())
    assert (tmp_path / "bn.metrics.csv").exists()


def test_sync_bn_option_and_prepare_in_one_process():
    import argparse

    p = argparse.ArgumentParser()
    D.add_distributed_args(p)
    assert p.parse_args(["--sync-bn"]).sync_bn and not p.parse_args([]).sync_bn
    info = D.DistInfo()
    m = torch.nn.Linear(2, 2)
    data = _Data(n=4)
    assert D.prepare(m, data, info) == (m, data)
    with pytest.raises(ValueError, match="needs CUDA"):
        D.wrap(m, D.DistInfo(0, 2, 0, "gloo", "cpu"), sync_bn=True)


def test_python_dash_m_leansnn_runs_the_cli():
    r = subprocess.run([sys.executable, "-m", "leansnn", "--version"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("leansnn ")


@pytest.mark.slow
def test_torchrun_two_processes_train_snn_cli(tmp_path, tiny_idx):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed beside this python")
    out = tmp_path / "snn.lsnn"
    cmd = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "leansnn", "train-snn",
           "--data", "fashion_mnist", "--root", str(tiny_idx), "--T", "2", "--width", "4",
           "--epochs", "2", "--batch-size", "8", "--device", "cpu", "--threads", "1",
           "--checkpoint", str(tmp_path / "snn.train"), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    text = r.stdout + r.stderr
    assert "2 process(es)" in text and out.exists()
    rows = (tmp_path / "snn.metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,loss,")


@pytest.mark.slow
def test_torchrun_two_processes_train_ann_cli(tmp_path, tiny_idx):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed beside this python")
    out = tmp_path / "ann.lsnn"
    cmd = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "leansnn", "train-ann",
           "--root", str(tiny_idx), "--epochs", "2", "--batch-size", "8", "--device", "cpu",
           "--threads", "1", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LEANSNN_PROGRESS": "lines"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "\r" not in r.stdout + r.stderr
    assert (r.stdout + r.stderr).count("test accuracy") == 1   # rank 0 alone reports
    assert out.exists() and (tmp_path / "ann.lsnn.train").exists()
    m = ls.load(out).leansnn_meta["meta"]
    assert m["world_size"] == 2 and len(m["history"]) == 2
    rows = (tmp_path / "ann.metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,loss,")
