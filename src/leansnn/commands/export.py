"""``leansnn export``: write a checkpointed model to a hardware interchange format (NIR).

The example input that fixes the shapes is built from the model's recorded config
(``in_channels``, ``input_size``, ``T``) unless ``--input-shape`` is given. The file is written
atomically: to a temporary file in the target folder, then renamed.
"""

from __future__ import annotations

import argparse
import inspect
import os

NAME = "export"
HELP = "export a checkpointed model to NIR (neuromorphic hardware interchange)"
EXAMPLE = "leansnn export runs/lif_cnn.lsnn --format nir --out lif_cnn.nir"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint written by leansnn (.lsnn)")
    p.add_argument("--format", default="nir", choices=["nir"], help="output format (nir)")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write (HDF5 .nir)")
    p.add_argument("--dt", type=float, default=None,
                   help="time step in seconds one leansnn step stands for (default 1e-4)")
    p.add_argument("--input-shape", type=int, nargs="+", default=None, metavar="N",
                   help="shape of one input sample without batch and time, e.g. 1 28 28 "
                        "(default: from the model config)")
    p.add_argument("--soft-reset", default="subgraph", choices=["subgraph", "error"],
                   help="soft-reset IF neurons: exact Integrator+Threshold subgraph (default) "
                        "or refuse (for tool chains that accept only IF/LIF nodes)")


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


def run(args: argparse.Namespace) -> int:
    import torch

    import leansnn as ls
    from leansnn.base.io import atomic_write
    from leansnn.interop import DEFAULT_DT, input_is_static, require_nir, to_nir

    nir = require_nir()
    try:  # registers QCFS & co. so checkpoints of converted networks can be rebuilt
        import leansnn.convert  # noqa: F401
    except ImportError:  # pragma: no cover
        pass
    model = ls.load(args.checkpoint)
    if args.input_shape is not None:
        if any(s < 1 for s in args.input_shape):
            raise ValueError(f"--input-shape must be positive, got {args.input_shape}")
        shape, T = list(args.input_shape), 4
        cfg_T = (getattr(model, "leansnn_config", None) or {}).get("kwargs", {}).get("T")
        T = int(cfg_T) if isinstance(cfg_T, int) else T
    else:
        shape, T = _example_shape(getattr(model, "leansnn_config", None))
    model.eval()
    x = torch.zeros(1, *shape)
    if not input_is_static(model, x):
        x = x.unsqueeze(0).expand(T, *x.shape)
    dt = DEFAULT_DT if args.dt is None else args.dt
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
          f"layers, dt={dt:g} s, input {shape} per step)")
    return 0
