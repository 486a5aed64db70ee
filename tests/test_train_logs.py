"""Training logs: per-epoch CSV beside the checkpoint (no duplicate rows on resume),
TensorBoard when installed (a clear error otherwise), plain progress lines off a terminal."""

import csv
import io
import sys

import pytest
import torch

import leansnn as ls
from leansnn.base import progress as P
from leansnn.train import MetricsLog, TensorBoardMissing, TrainConfig, fit, metrics_path


def _data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def _net():
    torch.manual_seed(0)
    return ls.models.create("lif_cnn", T=2, width=4)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_beside_the_checkpoint_and_resume_does_not_duplicate(tmp_path):
    ck = tmp_path / "run.lsnn"
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-2)

    def stop(rec):  # interrupted after the checkpoint of epoch 3, before its CSV row
        if rec["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_net(), _data(), _data(16, 1), cfg, checkpoint=ck, progress=False, on_epoch=stop)
    path = metrics_path(ck)
    assert path == tmp_path / "run.metrics.csv" and path.exists()
    rows = _rows(path)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    cols = rows[0].keys()
    for c in ("loss", "train_accuracy", "firing_rate", "test_accuracy", "lr", "seconds"):
        assert c in cols
    assert any(c.startswith("train_rate/") for c in cols)
    assert any(c.startswith("test_rate/") for c in cols)
    assert float(rows[0]["lr"]) == pytest.approx(1e-2)
    # the run resumed (the checkpoint of epoch 3): three rows, the first two unchanged
    before = path.read_text().splitlines()
    fit(_net(), _data(), _data(16, 1), cfg, checkpoint=ck, resume=True, progress=False)
    after = path.read_text().splitlines()
    assert len(after) == 4 and after[1:3] == before[1:3]


def test_metrics_path_and_explicit_csv(tmp_path):
    assert metrics_path("a/ann.lsnn.train").name == "ann.lsnn.metrics.csv"
    assert metrics_path("a/noext").name == "noext.metrics.csv"
    out = tmp_path / "m.csv"
    fit(_net(), _data(), None, TrainConfig(epochs=1, batch_size=16), metrics_csv=out,
        progress=False)
    assert len(_rows(out)) == 1


def test_tensorboard_missing_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(TensorBoardMissing, match=r"pip install 'leansnn\[tensorboard\]'"):
        MetricsLog(None, tmp_path / "tb")
    assert issubclass(TensorBoardMissing, ValueError)  # the CLI prints it as one line


def test_tensorboard_run_directory(tmp_path):
    pytest.importorskip("tensorboard")
    tb = tmp_path / "tb"
    fit(_net(), _data(), None, TrainConfig(epochs=2, batch_size=16), tensorboard_dir=tb,
        progress=False)
    assert list(tb.glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == [1, 2]
    assert "lr" in acc.Tags()["scalars"]


def test_plain_lines_when_not_a_terminal(monkeypatch):
    monkeypatch.delenv("LEANSNN_PROGRESS", raising=False)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert P.style() == "lines" and P.style(quiet=True) == "none"
    bar = P.progress(range(5), desc="epoch 1/1", every=0)
    for _ in bar:
        bar.set_postfix({"loss": "0.5"})
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue()
    assert lines[-1].startswith("epoch 1/1: 5/5 it (100 %)") and "loss=0.5" in lines[-1]
    err.truncate(0)
    err.seek(0)
    for _ in P.progress(range(5), desc="x", quiet=True):
        pass
    with P.progress(total=3, desc="y", every=1e9) as b:  # manual updates, tqdm style
        b.update(3)
    assert err.getvalue().splitlines() == [err.getvalue().splitlines()[0]]
    assert err.getvalue().startswith("y: 3/3")


def test_forced_style(monkeypatch):
    monkeypatch.setenv("LEANSNN_PROGRESS", "none")
    assert P.style() == "none"
    monkeypatch.setenv("LEANSNN_PROGRESS", "bar")
    assert P.style() == "bar"
