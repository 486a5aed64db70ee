"""analyze / write_report / `leansnn analyze` on unusual but legitimate models, labels and
output folders: a spiking layer that never runs, an output folder that is (under) a file,
labels that would break the markdown tables, the same checkpoint twice."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import needs_fmnist
from torch import nn

import leansnn as ls
from leansnn.analysis.report import analyze, write_metrics, write_report
from leansnn.cli import main
from leansnn.layers import TimeFold


class _Spare(nn.Module):
    """A model with a spiking layer it does not use (before or after the one it uses, or
    none with ``spare=None``)."""

    def __init__(self, spare: str | None) -> None:
        super().__init__()
        torch.manual_seed(0)
        if spare == "first":
            self.spare = ls.LIF()
        self.fc = TimeFold(nn.Linear(4, 3))
        self.lif = ls.LIF(decay=0.5, threshold=0.2)
        if spare == "last":
            self.spare = ls.LIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.fc(x))


def _data(T: int = 2) -> list:
    torch.manual_seed(1)
    return [(torch.rand(T, b, 4), torch.zeros(b, dtype=torch.long)) for b in (3, 1)]


@pytest.mark.parametrize("spare", ["first", "last"])
def test_unused_spiking_layer_is_reported_empty(spare, tmp_path):
    res = analyze(_Spare(spare), _data(), "spare", batch_size=2)
    assert res["captured"]["spare"] is None
    assert res["captured"]["lif"] is not None
    assert res["monitor"]["samples"] == 4
    paths = write_report([res], tmp_path / "rep")
    assert "spare (LIF)" in paths["report_md"].read_text()


@pytest.fixture(scope="module")
def result():
    return analyze(_Spare(None), _data(), "m", batch_size=4)


@pytest.mark.parametrize("out", ["file", "file/sub", "dir/figures"])
@pytest.mark.parametrize("writer", ["report", "metrics"])
def test_output_folder_in_the_way_of_a_file(result, tmp_path, out, writer):
    (tmp_path / "file").write_text("keep")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "figures").write_text("keep")
    target = tmp_path / out
    if writer == "metrics" and out == "dir/figures":
        target = tmp_path / "file"
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        if writer == "report":
            write_report([result], target)
        else:
            write_metrics([result], target)
    assert (tmp_path / "file").read_text() == "keep"


@pytest.mark.parametrize("no_report", [False, True])
def test_cli_refuses_an_output_file_before_any_work(tmp_path, capsys, no_report):
    (tmp_path / "taken").write_text("keep")
    missing = tmp_path / "never_loaded.lsnn"  # not even read: the folder is checked first
    args = ["analyze", str(missing), "--out", str(tmp_path / "taken"), "--quiet"]
    assert main(args + (["--no-report"] if no_report else [])) == 2
    err = capsys.readouterr().err
    assert "taken is a file, not a folder" in err and "never_loaded" not in err


@pytest.mark.parametrize("label", ["a|b", "two\nlines", "x | y | z"])
def test_markdown_tables_keep_their_columns(tmp_path, label):
    res = analyze(_Spare(None), _data(), label, batch_size=4)
    md = write_report([res], tmp_path / "rep")["report_md"].read_text()
    for table in md.split("\n\n"):
        rows = [r for r in table.splitlines() if r.startswith("|")]
        if rows:
            widths = {r.replace("\\|", "").count("|") for r in rows}
            assert len(widths) == 1, table
    assert all(h.startswith("#") for h in md.splitlines() if "Redundancy per layer" in h)


@needs_fmnist
def test_same_checkpoint_twice_gets_two_labels(tmp_path, capsys):
    torch.manual_seed(0)
    ck = ls.save(ls.models.create("lif_cnn", T=2, width=2), tmp_path / "m.lsnn")
    code = main(["analyze", str(ck), str(ck), "--out", str(tmp_path / "r"), "--no-report",
                 "--max-images", "4", "--quiet", "--threads", "1"])
    assert code == 0
    models = json.loads((tmp_path / "r" / "metrics.json").read_text())["models"]
    labels = [m["label"] for m in models]
    assert len(set(labels)) == 2, labels


class _Unobserved(nn.Module):
    """Spiking layers that never report a forward pass: driven with ``.step()``, or
    bypassed altogether."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.fc = nn.Linear(4, 3)
        self.lif = ls.LIF(decay=0.5, threshold=0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.how == "bypass":
            return self.fc(x)
        state, out = None, []
        for t in range(x.shape[0]):
            s, state = self.lif.step(self.fc(x[t]), state)
            out.append(s)
        return torch.stack(out)


@pytest.mark.parametrize("how", ["step", "bypass"])
def test_no_spiking_layer_ran_is_a_clear_error(how):
    with pytest.raises(ValueError, match=r"none of the spiking layers \(lif\)"):
        analyze(_Unobserved(how), _data(3), "unobserved", batch_size=4)


@pytest.mark.parametrize("first,second", [(2, 1)])
def test_report_folder_reused_holds_only_the_new_reports_figures(tmp_path, result, first,
                                                                   second):
    out = tmp_path / "rep"
    write_report([result] * first, out)
    (out / "figures" / "notes.png").write_bytes(b"user file")
    paths = write_report([result] * second, out)
    md = paths["report_md"].read_text()
    for f in (out / "figures").glob("*.png"):
        assert f.name == "notes.png" or f"figures/{f.name}" in md, f.name
    assert (out / "figures" / "notes.png").read_bytes() == b"user file"
