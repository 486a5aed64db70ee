"""``leansnn export``: write a checkpointed model to a hardware interchange format (NIR).

The example input that fixes the shapes is built from the model's recorded config
(``in_channels``, ``input_size``, ``T``) unless ``--input-shape`` is given. The file is written
atomically: to a temporary file in the target folder, then renamed. An ANN checkpoint is
converted first with ``--convert parallel|serial --T T`` (without it: an error saying so).
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
from typing import Any

from ._common import add_common, load_model, log_stream, setup, write_json

NAME = "export"
HELP = "export a checkpointed SNN to NIR (neuromorphic hardware interchange); ANNs with --convert"
EXAMPLE = ("leansnn export pretrained/lif_snn_a_none_seed0.lsnn --format nir --out lif.nir\n"
           "  leansnn export pretrained/small_cnn_qcfs4.lsnn --convert serial --T 4 "
           "--out qcfs4.nir  # an ANN")
CONVERT_METHODS = ("serial",)   # parallel neurons read the whole window: no NIR equivalent


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by leansnn (.lsnn)")
    p.add_argument("--format", default="nir", choices=["nir"], help="output format")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write (HDF5 .nir)")
    p.add_argument("--dt", type=float, default=None,
                   help="time step in seconds one leansnn step stands for (default 1e-4)")
    p.add_argument("--input-shape", type=int, nargs="+", default=None, metavar="N",
                   help="shape of one input sample without batch and time, e.g. 1 28 28 "
                        "(default: from the model config)")
    p.add_argument("--soft-reset", default="subgraph", choices=["subgraph", "error"],
                   help="soft-reset IF neurons: exact Integrator+Threshold subgraph (default) "
                        "or refuse (for tool chains that accept only IF/LIF nodes)")
    p.add_argument("--convert", default=None, choices=CONVERT_METHODS, metavar="METHOD",
                   help="the checkpoint is an ANN: convert it with METHOD (serial: causal IF "
                        "neurons; parallel ones have no NIR equivalent) at --T steps first "
                        "(default: none; an ANN without it is an error)")
    p.add_argument("--T", type=int, default=None,
                   help="time steps of --convert (required with it)")
    add_common(p, root=False, json_help="write a summary (nodes, spiking layers, dt, input "
                                        "shape) as JSON to PATH (no PATH or '-': stdout)")


def _example_shape(cfg: dict | None) -> tuple[list[int], int]:
    """Per-sample input shape and T from a model config (registry defaults filled in)."""
    from leansnn.models import registry

    if not cfg:
        raise ValueError("the checkpoint has no model config; pass --input-shape C H W")
    kwargs = dict(registry.decode(cfg.get("kwargs", {})))
    if isinstance(kwargs.get("ann"), dict) and "name" in kwargs["ann"]:
        # a converted network: the shape comes from the ANN it was converted from
        shape, _ = _example_shape(kwargs["ann"])
        return shape, int(kwargs.get("T", 4))
    if cfg.get("name") in registry.available():
        for k, prm in inspect.signature(registry.builder(cfg["name"])).parameters.items():
            if prm.default is not inspect.Parameter.empty:
                kwargs.setdefault(k, prm.default)
    if "in_channels" not in kwargs or "input_size" not in kwargs:
        raise ValueError(
            f"cannot tell the input shape of model {cfg.get('name')!r} from its config; pass "
            "--input-shape C H W"
        )
    size = kwargs["input_size"]
    h, w = (int(size), int(size)) if isinstance(size, int) else (int(v) for v in size)
    return [int(kwargs["in_channels"]), h, w], int(kwargs.get("T", 4) or 4)


def _model(args: argparse.Namespace) -> tuple[Any, list[int], int]:
    """The SNN to export (an ANN converted with ``--convert``), its sample shape and T."""
    import leansnn as ls

    if args.convert is None and args.T is not None:
        raise ValueError("--T is the time steps of --convert; give --convert METHOD too")
    if args.convert is not None and (args.T is None or args.T < 1):
        raise ValueError("--convert needs --T N (time steps, N >= 1)")
    if args.dt is not None and not (args.dt > 0 and math.isfinite(args.dt)):
        raise ValueError(f"--dt must be a positive number of seconds, got {args.dt}")
    expect = ("ann",) if args.convert else ("snn", "converted")
    model = load_model(args.checkpoint, NAME, expect,
                       fix="convert it first: add --convert serial --T 4 (any T)")
    cfg = getattr(model, "leansnn_config", None)
    if args.input_shape is not None:
        if any(s < 1 for s in args.input_shape):
            raise ValueError(f"--input-shape must be positive, got {args.input_shape}")
        shape = list(args.input_shape)
    else:
        shape, _ = _example_shape(cfg)
    cfg_T = (cfg or {}).get("kwargs", {}).get("T")
    T = int(cfg_T) if isinstance(cfg_T, int) else 4
    if args.convert is not None:
        if not any(type(m).__name__ == "QCFS" for m in model.modules()):
            raise ValueError(f"{args.checkpoint} is a ReLU ANN: its serial conversion needs "
                             "thresholds recorded on training data; convert it in Python "
                             "(leansnn.convert.calibrate.record_thresholds) or export a QCFS ANN")
        model = ls.convert(model.eval(), T=args.T, method=args.convert)
        T = args.T
    return model.eval(), shape, T


def run(args: argparse.Namespace) -> int:
    import torch

    from leansnn.base.io import atomic_write
    from leansnn.interop import DEFAULT_DT, input_is_static, require_nir, to_nir

    setup(args)
    torch.manual_seed(args.seed)
    nir = require_nir()
    model, shape, T = _model(args)
    x = torch.zeros(1, *shape)
    if not input_is_static(model, x):
        x = x.unsqueeze(0).expand(T, *x.shape)
    dt = DEFAULT_DT if args.dt is None else args.dt
    try:   # the shape first: a wrong --input-shape is one error, not one per layer
        with torch.no_grad():
            model(x)
    except RuntimeError as e:
        if "memory" in str(e):
            raise
        raise ValueError(f"the model cannot run on an input of shape {shape} per step "
                         f"({str(e).splitlines()[0][:160]}); check --input-shape") from None
    graph = to_nir(model, x, dt=dt, soft_reset=args.soft_reset)

    def write(tmp: str) -> None:
        nir.write(tmp, graph)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a shared artefact: usual permissions, not mkstemp's 0600

    path = atomic_write(args.out, write)
    n_neurons = sum(1 for n in graph.nodes.values()
                    if isinstance(n, (nir.LIF, nir.IF, nir.NIRGraph)))
    print(f"leansnn export: wrote {path} ({len(graph.nodes) - 2} NIR nodes, {n_neurons} spiking "
          f"layers, dt={dt:g} s, input {shape} per step)", file=log_stream(args))
    write_json(args, {"checkpoint": str(args.checkpoint), "out": str(path), "format": "nir",
                      "nodes": len(graph.nodes) - 2, "spiking_layers": n_neurons, "dt": dt,
                      "input_shape": shape, "T": T, "converted": args.convert,
                      "soft_reset": args.soft_reset})
    return 0
