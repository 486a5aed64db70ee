"""Bad-input corpus for the Python API (issue 15): each case asserts the exact outcome.

Either an error of a given type whose message names the problem, or the correct result.
Classes: checkpoints (reading, config, kinds, saving, atomic writes), models and ASA,
data roots, event files, NIR graphs. Fixtures are built once per session.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import leansnn as ls
from leansnn.base.io import DiskFullError, atomic_write
from leansnn.checkpoint import CheckpointError, checkpoint_kind, require_kind
from leansnn.data import DataError
from leansnn.data.readers import EventFormatError, read_aedat2, read_aedat31, read_nmnist

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
MAGIC = "leansnn-checkpoint"


# --- session fixtures ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """Small checkpoints of each kind, written once."""
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    ann = ls.models.create("small_cnn", width=2, hidden=8, activation="qcfs", levels=2)
    opt = torch.optim.Adam(ann.parameters())
    ann(torch.rand(2, 1, 28, 28)).sum().backward()
    opt.step()
    snn = ls.models.create("lif_cnn", width=2, T=2)
    conv = ls.convert(ann.eval(), T=2)
    paths = {"ann": ls.save(ann, d / "ann.lsnn", optimizer=opt.state_dict(), epoch=1),
             "snn": ls.save(snn, d / "snn.lsnn"),
             "converted": ls.save(conv, d / "conv.lsnn")}
    return {"dir": d, **paths}


def _payload(path) -> dict:
    return torch.load(path, weights_only=True)


def write_payload(path, *, meta=None, state_dict=None, drop=(), **over) -> Path:
    """A hand-made checkpoint (no digests) with the given metadata and state dict."""
    meta = {"config": {"name": "small_cnn", "kwargs": {"width": 2, "hidden": 8}}} \
        if meta is None else meta
    if state_dict is None:
        state_dict = ls.models.create("small_cnn", width=2, hidden=8).state_dict()
    payload = {"magic": MAGIC, "format_version": 1,
               "meta_json": meta if isinstance(meta, str) else json.dumps(meta),
               "state_dict": state_dict, **over}
    for k in drop:
        payload.pop(k)
    torch.save(payload, path)
    return Path(path)


def flip_member(src: Path, dst: Path, member: str, byte: int = 1, bit: int = 0) -> Path:
    """Copy ``src`` to ``dst`` with one bit of zip member ``member`` flipped."""
    raw = bytearray(src.read_bytes())
    info = next(i for i in zipfile.ZipFile(src).infolist() if i.filename.endswith(member))
    o = info.header_offset
    n, e = struct.unpack("<HH", raw[o + 26:o + 30])
    raw[o + 30 + n + e + byte] ^= 1 << bit
    dst.write_bytes(raw)
    return dst


def changed_tensor(a: Path, b: Path) -> str:
    """The path of the one tensor that differs between two checkpoints."""
    pa, pb = _payload(a), _payload(b)
    out = []
    for k, v in pa["state_dict"].items():
        if not torch.equal(v, pb["state_dict"][k]):
            out.append(k)
    for k, v in pa["optimizer"]["state"].items():
        for name, t in v.items():
            other = pb["optimizer"]["state"][k][name]
            if isinstance(t, torch.Tensor) and not torch.equal(t, other):
                out.append(f"optimizer['state'][{k!r}][{name!r}]")
    assert len(out) == 1, out
    return out[0]


# --- checkpoints: integrity -----------------------------------------------------------------

@pytest.mark.parametrize("member", ["data/0", "data/1", "data/3", "data/6", "data/12"])
def test_flipped_bit_in_a_weight_names_the_tensor(store, tmp_path, member):
    bad = flip_member(store["ann"], tmp_path / "bad.lsnn", member, byte=2, bit=3)
    name = changed_tensor(store["ann"], bad)
    with pytest.raises(CheckpointError, match=f"tensor {name!r} fails its SHA-256 check"):
        ls.load(bad)


def test_flipped_bit_in_optimizer_state_names_it(store, tmp_path):
    members = sorted((i.filename for i in zipfile.ZipFile(store["ann"]).infolist()
                      if "/data/" in i.filename), key=lambda s: int(s.rsplit("/", 1)[1]))
    bad = flip_member(store["ann"], tmp_path / "bad.lsnn", members[-1].split("/", 1)[1], 0, 1)
    name = changed_tensor(store["ann"], bad)
    assert name.startswith("optimizer")
    with pytest.raises(CheckpointError, match="fails its SHA-256 check"):
        ls.load_checkpoint(bad)


def test_flipped_bit_in_snn_weight(store, tmp_path):
    bad = flip_member(store["snn"], tmp_path / "bad.lsnn", "data/0", byte=0, bit=7)
    with pytest.raises(CheckpointError, match="fails its SHA-256 check"):
        ls.load(bad)


def test_changed_metadata_byte_is_caught(store, tmp_path):
    p = _payload(store["ann"])
    p["meta_json"] = p["meta_json"].replace('"width": 2', '"width": 3')
    torch.save(p, tmp_path / "m.lsnn")
    with pytest.raises(CheckpointError, match="metadata fails its SHA-256 check"):
        ls.load(tmp_path / "m.lsnn")


def test_tensor_removed_after_save_is_caught(store, tmp_path):
    p = _payload(store["snn"])
    p["state_dict"].pop(next(iter(p["state_dict"])))
    torch.save(p, tmp_path / "m.lsnn")
    with pytest.raises(CheckpointError, match="differ from those recorded at save time"):
        ls.load(tmp_path / "m.lsnn")


@pytest.mark.parametrize("keep", [0, 10, 200, 0.5, -100])
def test_truncated_file(store, tmp_path, keep):
    raw = store["ann"].read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else keep if keep >= 0 else len(raw) + keep
    (tmp_path / "t.lsnn").write_bytes(raw[:n])
    with pytest.raises(CheckpointError, match="not a torch archive|could not be read"):
        ls.load(tmp_path / "t.lsnn")


@pytest.mark.parametrize("case, fragment", [
    ("missing", "does not exist"),
    ("folder", "is a folder"),
    ("random", "not a torch archive"),
    ("plain_state_dict", "no leansnn header"),
    ("wrong_magic", "no leansnn header"),
    ("list_payload", "no leansnn header"),
])
def test_not_a_checkpoint(tmp_path, case, fragment):
    p = tmp_path / "x.lsnn"
    if case == "folder":
        p.mkdir()
    elif case == "random":
        p.write_bytes(os.urandom(300))
    elif case == "plain_state_dict":
        torch.save({"w": torch.zeros(2)}, p)
    elif case == "wrong_magic":
        write_payload(p, magic="leansnn-checkpoint-x")
    elif case == "list_payload":
        torch.save([1, 2], p)
    with pytest.raises(CheckpointError, match=fragment):
        ls.load(p)


@pytest.mark.parametrize("version, fragment", [
    (99, r"format 99 \(written by a newer leansnn\), newer than this leansnn"),
    ("1", "format_version is '1', not a format number"),
    (0, "format_version is 0, not a format number"),
    (None, "format_version is None"),
    (True, "format_version is True"),
    (1.0, "format_version is 1.0"),
])
def test_format_version_messages(tmp_path, version, fragment):
    p = write_payload(tmp_path / "v.lsnn", format_version=version)
    with pytest.raises(CheckpointError, match=fragment):
        ls.load(p)


def test_newer_format_names_the_version_that_wrote_it(tmp_path):
    p = write_payload(tmp_path / "v.lsnn", format_version=2,
                      meta={"leansnn_version": "9.1.0", "config": None})
    with pytest.raises(CheckpointError, match=r"written by leansnn 9\.1\.0"):
        ls.load(p)


# --- checkpoints: metadata and config --------------------------------------------------------

def _deep(n: int) -> str:
    return '{"config": ' + "[" * n + "]" * n + "}"


@pytest.mark.parametrize("meta, fragment", [
    ("not json", "damaged metadata"),
    ("[1, 2]", "a JSON list, expected an object"),
    (_deep(100_000), "nested too deeply|nested more than"),
    (_deep(60), "nested more than"),
    ({"config": None}, "has no model config"),
    ({"config": {"name": "no_such_net"}}, "unknown model 'no_such_net'"),
    ({"config": {"kwargs": {}}}, "model config is not"),
    ({"config": "small_cnn"}, "model config is not"),
    ({"config": {"name": "small_cnn", "kwargs": [1]}}, "arguments are a list, not a dict"),
    ({"config": {"name": "small_cnn", "kwargs": {"widht": 2}}},
     r"has no argument\(s\) \['widht'\]"),
    ({"config": {"name": "small_cnn", "kwargs": {"width": "2"}}},
     r"argument width=2 has the wrong type \(expected int\)"),
    ({"config": {"name": "small_cnn", "kwargs": {"width": 2.5}}}, "width=2.5 has the wrong type"),
    ({"config": {"name": "small_cnn", "kwargs": {"width": True}}}, "width=True has the wrong type"),
    ({"config": {"name": "lif_cnn", "kwargs": {"input_size": "28"}}},
     "input_size=28 has the wrong type"),
    ({"config": {"name": "lif_cnn", "kwargs": {"input_size": [28, 28, 28]}}},
     r"is invalid: lif_cnn: input_size must be \(H, W\)"),
    ({"config": {"name": "small_cnn", "kwargs": {"width": 0}}}, "width must be an int >= 1"),
    ({"config": {"name": "small_cnn", "kwargs": {"activation": {"__class__": "Nope",
                                                                "args": {}}}}},
     "unknown class 'Nope'"),
    ({"config": {"name": "converted", "kwargs": {"ann": {"name": "small_cnn",
                                                         "kwargs": {"depth": 3}},
                                                 "T": 2}}},
     r"argument 'ann': model 'small_cnn' has no argument\(s\) \['depth'\]"),
    ({"config": {"name": "converted", "kwargs": {"T": 2}}}, r"needs argument\(s\) \['ann'\]"),
    ({"config": {"name": "converted", "kwargs": {"ann": {"name": "small_cnn"}, "T": "4"}}},
     "T=4 has the wrong type"),
])
def test_nonsense_metadata(tmp_path, meta, fragment):
    p = write_payload(tmp_path / "m.lsnn", meta=meta)
    with pytest.raises(CheckpointError, match=fragment):
        ls.load(p)


@pytest.mark.parametrize("name, kwargs", [
    ("small_cnn", {"width": 10**9}),
    ("resnet18", {"width": 10**7}),
    ("lif_snn_a", {"width": 10**8, "T": 4}),
    ("lif_snn_a", {"T": 10**6, "attention": "asa", "width": 2}),
    ("vgg16", {"num_classes": 10**12}),
])
def test_absurd_sizes_fail_fast_without_allocating(tmp_path, name, kwargs):
    p = write_payload(tmp_path / "huge.lsnn", meta={"config": {"name": name, "kwargs": kwargs}})
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="does not describe the stored weights|absurd sizes"):
        ls.load(p)
    assert time.perf_counter() - t0 < 5.0


@pytest.mark.parametrize("state, fragment", [
    ("missing", "the state dict is missing"),
    ([1, 2], "state dict is a list, not a dict"),
    ({"0.weight": [1.0]}, "are not named tensors"),
    ("extra_key", r"unexpected \['bogus'\]"),
    ("wrong_shape", r"another shape, e\.g\. '0\.weight'"),
    ("missing_key", r"missing \['0\.weight'\]"),
])
def test_bad_state_dict(tmp_path, state, fragment):
    sd = ls.models.create("small_cnn", width=2, hidden=8).state_dict()
    kw = {}
    if state == "missing":
        kw["drop"] = ("state_dict",)
    elif state == "extra_key":
        sd["bogus"] = torch.zeros(1)
    elif state == "wrong_shape":
        sd["0.weight"] = torch.zeros(3, 1, 3, 3)
    elif state == "missing_key":
        sd.pop("0.weight")
    else:
        sd = state
    p = write_payload(tmp_path / "s.lsnn", state_dict=sd, **kw)
    with pytest.raises(CheckpointError, match=fragment):
        ls.load(p)


@pytest.mark.parametrize("path", sorted(PRETRAINED.glob("*.lsnn")), ids=lambda p: p.stem)
def test_shipped_format1_checkpoints_without_digests_still_load(path):
    model = ls.load(path)
    assert "digests" not in model.leansnn_meta or model.leansnn_meta["digests"]
    kind = checkpoint_kind(path)
    assert kind == ("snn" if path.name.startswith("lif") else "ann")


# --- checkpoints: kinds -----------------------------------------------------------------------

@pytest.mark.parametrize("have, expect, fragment", [
    ("ann", "snn", "this is an ANN checkpoint; train-snn needs a directly trained SNN; "
                   "convert it with `leansnn convert` first"),
    ("ann", "converted", "this is an ANN checkpoint; .* needs a converted SNN; convert it"),
    ("snn", "ann", "this is a directly trained SNN checkpoint; .* needs an ANN; give an ANN"),
    ("converted", "ann", "this is a converted SNN checkpoint; .* needs an ANN; give the ANN "
                         "checkpoint it was converted from"),
    ("converted", "snn", "this is a converted SNN checkpoint"),
    ("snn", "converted", "this is a directly trained SNN checkpoint"),
])
def test_wrong_kind_names_the_fix(store, have, expect, fragment):
    with pytest.raises(CheckpointError, match=fragment):
        ls.load(store[have], expect=expect, command="train-snn")


@pytest.mark.parametrize("have", ["ann", "snn", "converted"])
def test_right_kind_loads(store, have):
    assert checkpoint_kind(store[have]) == have
    model = ls.load(store[have], expect=(have, "ann") if have != "ann" else "ann")
    assert isinstance(model, torch.nn.Module)


def test_require_kind_checks_its_argument(store):
    with pytest.raises(ValueError, match="expect must be one of"):
        require_kind(store["ann"], "cnn")


def test_old_checkpoint_kind_is_inferred_for_expect(tmp_path):
    sd = ls.models.create("lif_cnn", width=2, T=2).state_dict()
    p = write_payload(tmp_path / "old.lsnn", state_dict=sd,
                      meta={"config": {"name": "lif_cnn", "kwargs": {"width": 2, "T": 2}}})
    with pytest.raises(CheckpointError, match="this is a directly trained SNN checkpoint"):
        ls.load(p, expect="ann")


# --- checkpoints: saving -----------------------------------------------------------------------

@pytest.mark.parametrize("extra, fragment", [
    ({"extra": object()}, "checkpoint entry extra is a object"),
    ({"extra": {"a": [1, {2, 3}]}}, r"extra\['a'\]\[1\] is a set"),
    ({"extra": len}, "is a builtin_function_or_method"),
    ({"extra": torch.nn.Linear(1, 1)}, "is a Linear"),
    ({"extra": {(1, 2): 3}}, "keys must be strings or ints"),
    ({"state_dict": {}}, "reserved checkpoint entries"),
    ({"extra": np.zeros(3)}, "is a ndarray"),
])
def test_save_accepts_plain_data_only(tmp_path, extra, fragment):
    m = ls.models.create("small_cnn", width=2, hidden=8)
    with pytest.raises(ValueError, match=fragment):
        ls.save(m, tmp_path / "x.lsnn", **extra)
    assert not any(tmp_path.iterdir())


def test_save_refuses_unserialisable_meta(tmp_path):
    m = ls.models.create("small_cnn", width=2, hidden=8)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        ls.save(m, tmp_path / "x.lsnn", meta={"a": object()})
    with pytest.raises(ValueError, match="needs an nn.Module"):
        ls.save({"w": torch.zeros(1)}, tmp_path / "x.lsnn")


def test_saved_extras_round_trip_exactly(tmp_path):
    m = ls.models.create("small_cnn", width=2, hidden=8)
    ls.save(m, tmp_path / "x.lsnn", epoch=3, rng={"t": torch.arange(4)}, lst=[1.5, "a", None])
    ck = ls.load_checkpoint(tmp_path / "x.lsnn")
    assert ck["epoch"] == 3 and torch.equal(ck["rng"]["t"], torch.arange(4))
    assert ck["lst"] == [1.5, "a", None] and ck["meta"]["kind"] == "ann"


# --- atomic writes --------------------------------------------------------------------------------

def test_stale_temporaries_of_killed_writes_are_removed(tmp_path):
    target = tmp_path / "m.lsnn"
    old = [tmp_path / ".m.lsnn.abc123.tmp", tmp_path / ".m.lsnn.999999999-xyz.tmp"]
    for p in old:
        p.write_bytes(b"partial")
    live = tmp_path / f".m.lsnn.{os.getpid()}-live.tmp"
    live.write_bytes(b"being written")
    other = tmp_path / ".other.lsnn.abc.tmp"
    other.write_bytes(b"x")
    ls.save(ls.models.create("small_cnn", width=2, hidden=8), target)
    assert not any(p.exists() for p in old)
    assert live.exists() and other.exists() and target.exists()


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"),
                                 OSError(errno.EDQUOT, "Disk quota exceeded"),
                                 RuntimeError("[enforce fail] file write failed")])
def test_full_disk_is_a_clear_error_and_keeps_the_old_file(tmp_path, exc):
    target = tmp_path / "m.txt"
    target.write_text("old")

    def write(tmp):
        Path(tmp).write_text("partial")
        raise exc

    with pytest.raises(DiskFullError, match="no space left on the device.*previous file"):
        atomic_write(target, write)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.txt"]


def test_other_write_errors_pass_through(tmp_path):
    def write(tmp):
        raise OSError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):
        atomic_write(tmp_path / "m.txt", write)


# --- models ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs, fragment", [
    ("lif_cnn", {"T": 0}, "T must be an int >= 1, got 0"),
    ("lif_cnn", {"T": -2}, "T must be an int >= 1"),
    ("lif_cnn", {"T": 2.5}, "T must be an int >= 1"),
    ("lif_cnn", {"T": True}, "T must be an int >= 1, got True"),
    ("lif_cnn", {"width": 0}, "width must be an int >= 1, got 0"),
    ("lif_cnn", {"num_classes": 0}, "num_classes must be an int >= 1"),
    ("lif_cnn", {"in_channels": 0}, "in_channels must be an int >= 1"),
    ("lif_cnn", {"input_size": (0, 0)}, "input_size must be"),
    ("lif_cnn", {"input_size": "28"}, "input_size must be"),
    ("lif_snn_a", {"T": 0}, "T must be an int >= 1"),
    ("lif_snn_a", {"width": 0}, "width must be an int >= 1"),
    ("lif_snn_a", {"hidden": 0}, "hidden must be an int >= 1"),
    ("lif_snn_a", {"dropout": 1.0}, r"dropout must lie in \[0, 1\)"),
    ("lif_snn_a", {"input_size": (30, 30)}, "must be a multiple of 4"),
    ("lif_snn_5", {"width": -1}, "width must be an int >= 1"),
    ("sew_resnet18", {"T": 0}, "T must be an int >= 1"),
    ("small_cnn", {"width": 0}, "width must be an int >= 1"),
    ("small_cnn", {"input_size": 2}, "input_size must be"),
    ("small_cnn", {"dropout": -0.1}, "dropout must lie in"),
    ("resnet20", {"width": 0}, "width must be an int >= 1"),
    ("vgg11", {"input_size": 0}, "input_size must be an int >= 1"),
    ("resnet20", {"num_classes": 0}, "num_classes must be an int >= 1"),
])
def test_build_time_validation(name, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        ls.models.create(name, **kwargs)


@pytest.fixture(scope="session")
def nets():
    torch.manual_seed(0)
    return {"lif_cnn": ls.models.create("lif_cnn", width=2, T=3).eval(),
            "lif_snn_a": ls.models.create("lif_snn_a", width=2, T=4, hidden=8,
                                          attention="asa").eval(),
            "small_cnn": ls.models.create("small_cnn", width=2, hidden=8).eval(),
            "resnet20": ls.models.create("resnet20", width=2).eval(),
            "vgg11": ls.models.create("vgg11", num_classes=3).eval()}


@pytest.mark.parametrize("name, x, fragment", [
    ("lif_cnn", torch.rand(1, 28, 28), r"one image\? add the batch axis: x\.unsqueeze\(0\)"),
    ("lif_cnn", torch.rand(2, 3, 2, 1, 28, 28), r"expected \[B, 1, 28, 28\] or \[T=3"),
    ("lif_cnn", torch.randint(0, 255, (2, 1, 28, 28)), "expected a float tensor"),
    ("lif_cnn", torch.rand(2, 1, 28, 28, dtype=torch.float64), "input is torch.float64"),
    ("lif_cnn", torch.rand(2, 3, 28, 28), r"expected 1 channel\(s\).*got 3"),
    ("lif_cnn", torch.rand(2, 1, 32, 32), "expected images of 28x28, got 32x32"),
    ("lif_cnn", torch.rand(5, 3, 1, 28, 28), r"batch-major.*x\.transpose\(0, 1\)"),
    ("lif_cnn", torch.rand(4, 5, 1, 28, 28), r"sequence of 4 time steps.*T=3.*transpose"),
    ("lif_cnn", [torch.rand(1, 28, 28)], "expected a torch.Tensor"),
    ("lif_snn_a", torch.rand(2, 4, 2, 32, 32), r"looks batch-major.*x\.transpose\(0, 1\)"),
    ("lif_snn_a", torch.rand(8, 2, 2, 32, 32), "sequence of 8 time steps"),
    ("lif_snn_a", torch.rand(4, 2, 3, 32, 32), r"expected 2 channel\(s\)"),
    ("lif_snn_a", torch.rand(4, 2, 2, 28, 28), "expected images of 32x32, got 28x28"),
    ("lif_snn_a", torch.rand(4, 2, 32, 32, 2), r"expected 2 channel\(s\)"),
    ("lif_snn_a", torch.zeros(4, 2, 2, 32, 32, dtype=torch.bool), "floating-point"),
    ("small_cnn", torch.rand(1, 28, 28), "add the batch axis"),
    ("small_cnn", torch.rand(3, 2, 1, 28, 28), "a time-major sequence .* is for SNNs"),
    ("small_cnn", torch.rand(2, 3, 28, 28), r"expected 1 channel\(s\)"),
    ("small_cnn", torch.rand(2, 1, 32, 32), "expected images of 28x28, got 32x32"),
    ("small_cnn", torch.rand(2, 1, 28, 28).half(), "torch.float16"),
    ("resnet20", torch.rand(2, 32, 32, 3), r"channels last\? use x\.permute\(0, 3, 1, 2\)"),
    ("resnet20", torch.rand(2, 3, 32), r"expected \[B, 3, H, W\]"),
    ("vgg11", torch.rand(1, 3, 8, 8), "too small for this model"),
])
def test_model_input_errors(nets, name, x, fragment):
    with pytest.raises(ValueError, match=fragment):
        nets[name](x)


def test_transposed_batch_gives_the_time_major_result(nets):
    x = torch.rand(2, 4, 2, 32, 32)  # [B, T, ...] as a plain DataLoader yields it
    with torch.no_grad():
        y = nets["lif_snn_a"](x.transpose(0, 1))
    assert y.shape == (4, 2, 10)


def test_static_and_repeated_inputs_agree(nets):
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        a = nets["lif_cnn"](x)
        b = nets["lif_cnn"](x.unsqueeze(0).expand(3, *x.shape).contiguous())
    torch.testing.assert_close(a, b)


def test_model_with_checks_still_converts_and_traces(nets):
    snn = ls.convert(ls.models.create("small_cnn", width=2, hidden=8,
                                      activation="qcfs", levels=2).eval(), T=2)
    assert snn(torch.rand(2, 1, 28, 28)).shape == (2, 2, 10)


@pytest.mark.parametrize("x, fragment", [
    (torch.rand(4, 2, 6, 5), r"expected a \[T, B, C, H, W\] tensor"),
    (torch.randint(0, 3, (4, 2, 6, 5, 5)), "floating-point"),
    (torch.rand(3, 2, 6, 5, 5), "built for T=4, C=6"),
    (torch.rand(4, 2, 5, 5, 5), "built for T=4, C=6"),
    (torch.rand(2, 4, 6, 5, 5), r"looks batch-major.*x\.transpose\(0, 1\)"),
    (torch.rand(4, 2, 6, 5, 5, dtype=torch.float64), "the input is torch.float64"),
])
def test_asa_input_errors(x, fragment):
    with pytest.raises(ValueError, match=fragment):
        ls.ASA(T=4, channels=6)(x)


# --- data roots -----------------------------------------------------------------------------

def _idx(path: Path, arr) -> None:
    arr = np.asarray(arr, dtype=np.uint8)
    head = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(head + arr.tobytes())


@pytest.fixture(scope="session")
def full_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fm")
    for split, n in (("train", 6), ("t10k", 4)):
        _idx(root / f"{split}-images-idx3-ubyte.gz", np.full((n, 28, 28), 7))
        _idx(root / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return root


def _partial(tmp_path, full_root, keep, sub=""):
    d = tmp_path / "r" / sub
    d.mkdir(parents=True)
    for name in keep:
        (d / name).write_bytes((full_root / name).read_bytes())
    return tmp_path / "r"


@pytest.mark.parametrize("keep, split, fragment", [
    (["t10k-labels-idx1-ubyte.gz"], "test",
     "t10k-labels-idx1-ubyte.gz is there but t10k-images-idx3-ubyte.*is missing"),
    (["t10k-images-idx3-ubyte.gz"], "test", "t10k-labels-idx1-ubyte.*is missing"),
    (["train-labels-idx1-ubyte.gz"], "train", "train-images-idx3-ubyte.*is missing"),
    (["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"], "test",
     "test set not found"),
    ([], "train", "train set not found"),
])
def test_incomplete_data_root_is_an_error_never_a_mix(tmp_path, full_root, keep, split,
                                                      fragment, monkeypatch):
    monkeypatch.setenv("LEANSNN_DATA", str(full_root))  # must never be used to complete it
    root = _partial(tmp_path, full_root, keep)
    with pytest.raises(DataError, match=fragment):
        ls.data.fashion_mnist(split, root=root)


def test_missing_data_root_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist or is not a folder"):
        ls.data.fashion_mnist("train", root=tmp_path / "nope")


def test_incomplete_env_root_is_an_error(tmp_path, full_root, monkeypatch):
    root = _partial(tmp_path, full_root, ["train-images-idx3-ubyte.gz"])
    monkeypatch.setenv("LEANSNN_DATA", str(root))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.*is missing"):
        ls.data.fashion_mnist("train")


def test_split_across_root_and_subfolder_is_an_error(tmp_path, full_root):
    root = _partial(tmp_path, full_root, ["t10k-images-idx3-ubyte.gz"])
    (root / "fashion-mnist").mkdir()
    (root / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(
        (full_root / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(DataError, match="is incomplete"):
        ls.data.fashion_mnist("test", root=root)


@pytest.mark.parametrize("sub", ["", "fashion-mnist"])
def test_complete_root_loads_its_own_files(tmp_path, full_root, sub):
    root = _partial(tmp_path, full_root, ["t10k-images-idx3-ubyte.gz",
                                          "t10k-labels-idx1-ubyte.gz"], sub)
    ds = ls.data.fashion_mnist("test", root=root)
    assert len(ds) == 4 and ds[3][1] == 3
    assert torch.allclose(ds[0][0], torch.full((1, 28, 28), 7 / 255))


# --- event files ------------------------------------------------------------------------------

@pytest.mark.parametrize("data, fragment", [
    (b"#!AER-DAT2.0\r\n" + bytes(16), "this is a AEDAT 2 file, not an N-MNIST"),
    (b"#!AER-DAT4.0\r\n" + bytes(16), "this is a AEDAT 4 file, not an N-MNIST"),
    (b"#!AER-DAT3.1\r\n#!END-HEADER\r\n", "this is a AEDAT 3 file"),
    (b"\x1f\x8b" + bytes(13), "this is a gzip archive file"),
    (bytes(12), "last record is 2 of 5 bytes"),
    (bytes([40, 1, 0, 0, 5]), "event 0 has address x=40"),
])
def test_nmnist_reader_identifies_wrong_files(tmp_path, data, fragment):
    (tmp_path / "x.bin").write_bytes(data)
    with pytest.raises(EventFormatError, match=fragment):
        read_nmnist(tmp_path / "x.bin")


@pytest.mark.parametrize("reader, data, fragment", [
    (read_aedat2, b"", "no '#!AER-DAT2.0' header line"),
    (read_aedat2, b"#!AER-DAT3.1\r\n", "AEDAT version"),
    (read_aedat31, bytes(10), "no '#!AER-DAT' version line"),
    (read_aedat31, b"#!AER-DAT2.0\r\n", "only 3.1 is supported"),
])
def test_aedat_readers_identify_wrong_files(tmp_path, reader, data, fragment):
    (tmp_path / "x.aedat").write_bytes(data)
    with pytest.raises(EventFormatError, match=fragment):
        reader(tmp_path / "x.aedat")


# --- NIR graphs -------------------------------------------------------------------------------

nir = pytest.importorskip("nir")


def _lif(n, **kw):
    p = dict(tau=np.full(n, 1e-3), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n),
             v_reset=np.zeros(n))
    p.update(kw)
    return nir.LIF(**p)


def _untyped(node):
    node.input_type, node.output_type = {"input": None}, {"output": None}
    return node


def _set(node, field, value):
    setattr(node, field, value)
    return node


def _dense(w=None, b="zeros", lif=3, out=3, inp=4, extra_nodes=None, extra_edges=()):
    w = np.full((3, 4), 0.5, np.float32) if w is None else w
    fc = w if isinstance(w, nir.Affine) else None
    b = np.zeros(np.shape(w)[0], np.float32) if isinstance(b, str) and fc is None else b
    nodes = {"in": nir.Input(input_type={"input": np.array([inp])}),
             "fc": fc or nir.Affine(weight=w, bias=b), "lif": lif if not isinstance(lif, int)
             else _lif(lif), "out": nir.Output(output_type={"output": np.array([out])})}
    nodes.update(extra_nodes or {})
    edges = [("in", "fc"), ("fc", "lif"), ("lif", "out"), *extra_edges]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _conv(weight, bias=None, in_shape=(2, 6, 6)):
    nodes = {"in": nir.Input(input_type={"input": np.array(in_shape)}),
             "c": nir.Conv2d(input_shape=None, weight=weight, stride=1, padding=1, dilation=1,
                             groups=1, bias=bias),
             "out": nir.Output(output_type={"output": None})}
    return nir.NIRGraph(nodes=nodes, edges=[("in", "c"), ("c", "out")], type_check=False)


@pytest.mark.parametrize("make, fragment", [
    (lambda: _dense(w=np.full((3, 4), np.nan)), "fc: Affine: parameter weight holds 12 non-finite"),
    (lambda: _dense(b=np.array([0, np.inf, 0])), "fc: Affine: parameter bias holds 1 non-finite"),
    (lambda: _dense(lif=_lif(3, tau=np.array([1e-3, np.nan, 1e-3]))), "lif: LIF: parameter tau"),
    (lambda: _dense(w=np.array([["a"] * 4] * 3)), "parameter weight has dtype <U1"),
    (lambda: _dense(w=np.ones((3, 4), bool)), "parameter weight is boolean"),
    (lambda: _dense(w=np.ones((3, 4), object)), "parameter weight has dtype object"),
    (lambda: _dense(b=np.zeros(5)), r"bias has shape \[5\] but the weight has 3 outputs"),
    (lambda: _dense(w=_set(nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)), "weight",
                            np.ones(12))), "a Affine weight has 2 dims"),
    (lambda: _dense(lif=5), r"lif: declares input type \[5\] but receives \[3\]"),
    (lambda: _dense(out=7), r"out: the Output node declares shape \[7\] but the graph computes"),
    (lambda: _dense(inp=6), r"fc: declares input type \[4\] but receives \[6\]"),
    (lambda: _dense(extra_edges=[("lif", "ghost")]), "edge to or from node 'ghost'"),
    (lambda: _dense(extra_edges=[("ghost", "out")]), "edge to or from node 'ghost'"),
    (lambda: _dense(extra_nodes={"s": nir.Scale(scale=np.ones(3))},
                    extra_edges=[("s", "out")]), "s: no incoming edge"),
    (lambda: _dense(extra_nodes={"s": nir.Scale(scale=np.ones(2))},
                    extra_edges=[("in", "s"), ("s", "out")]),
     r"s: declares input type \[2\] but receives \[4\]"),
    (lambda: _dense(extra_nodes={"s": _untyped(nir.Scale(scale=np.ones(2)))},
                    extra_edges=[("in", "s"), ("s", "out")]),
     r"s: parameter scale has shape \[2\], which does not fit the incoming shape \[4\]"),
    (lambda: _dense(lif=_untyped(_lif(2))),
     r"lif: parameter tau has shape \[2\], which does not fit the incoming shape \[3\]"),
    (lambda: _dense(extra_nodes={"s": nir.Scale(scale=np.ones(4))},
                    extra_edges=[("in", "s"), ("s", "out")]),
     "out: its incoming edges carry different shapes"),
    (lambda: _conv(np.ones((4, 3, 3, 3))), r"c: the Conv2d weight \[4, 3, 3, 3\].*\[2, 6, 6\]"),
    (lambda: _conv(np.ones((4, 2, 3))), "a Conv2d weight has 4 dims"),
])
def test_nir_graph_errors_name_the_node(make, fragment):
    with pytest.raises(ValueError, match=fragment):
        ls.interop.from_nir(make())


def test_nir_integer_arrays_import_as_floats():
    g = _dense(w=np.ones((3, 4), np.int64), b=np.zeros(3, np.int32))
    net = ls.interop.from_nir(g)
    ref = ls.interop.from_nir(_dense(w=np.ones((3, 4), np.float32)))
    x = torch.rand(5, 2, 4)
    torch.testing.assert_close(net(x), ref(x))


def test_nir_conv_without_bias_imports_with_zero_bias():
    w = np.random.default_rng(0).normal(size=(4, 2, 3, 3)).astype(np.float32)
    net = ls.interop.from_nir(_conv(w, None))
    conv = net.layers["c"].layer
    assert torch.equal(conv.bias, torch.zeros(4))
    x = torch.rand(2, 3, 2, 6, 6)
    ref = torch.nn.functional.conv2d(x.flatten(0, 1), torch.as_tensor(w), padding=1)
    torch.testing.assert_close(net(x), ref.view(2, 3, 4, 6, 6))


def test_nir_lif_without_v_reset_resets_to_zero():
    net = ls.interop.from_nir(_dense(lif=_lif(3, v_reset=None)))
    assert net(torch.rand(4, 1, 4)).shape == (4, 1, 3)


def test_nir_malformed_edge():
    g = _dense()
    g.edges.append(("lif",))
    with pytest.raises(ValueError, match="an edge must be a pair of node names"):
        ls.interop.from_nir(g)
