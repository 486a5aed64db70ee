"""ANN -> SNN conversion (papers.md, part B): QCFS, parallel and serial neurons, the converter.

Quick use::

    import leansnn as ls
    ann = ls.models.create("resnet20", num_classes=10, in_channels=1,
                           activation=ls.QCFS(levels=4))
    ...  # train the ANN
    snn = ls.convert(ann, T=4, method="parallel")   # or "serial"
    y = snn(images)            # [B, C, H, W] or [T, B, C, H, W] -> [T, B, K]
    accs = ls.conversion.accuracy_per_step(snn, test_data)

Layout (one responsibility per module; each formula written once — the spike count
``clip(floor((S + psi)/theta), 0, T)`` and the floor STE live in :mod:`leansnn.activations`):

* :mod:`.converter` — the pipeline: trace, find activation sites, run a method (strategy),
  rewrite the graph, :class:`ConvertedSNN`; :mod:`.neurons` — :class:`ParallelIF`,
  :class:`SerialIF`; :mod:`.fastpath` — the exact rate-domain engine; :mod:`.evaluate`.
* :mod:`.to_qcfs` — :func:`to_qcfs`: a ReLU / ReLU6 network -> its QCFS twin (one QCFS per
  activation site, thresholds from data), saved as the registry model ``"qcfs_of"``.
* :mod:`.persist` — ``leansnn.save`` / ``leansnn.load`` of converted networks: the result
  (neuron class and tensor shapes per site; values in the state dict), never the recipe.
* training-free calibration (method ``"calibrated"``): :mod:`.calibrate` (entry point,
  :class:`~.calibrate.CalibrationConfig`, :func:`~.calibrate.record_thresholds`) over
  :mod:`.daqcfs` (the DA-QCFS activation and its neuron twin), :mod:`.lockstep` (the
  reference / DA lock-step fx interpreter), :mod:`.fit` (thresholds and the one psi/phi
  update, folded sequentially or with momentum), :mod:`.search` (threshold scale search),
  :mod:`.refine` (gradient refinement) and :mod:`.stats` (per-channel statistics).

Extension point — conversion methods are strategies. A method is a function
``fn(ctx: ConversionContext, **options) -> {site name: neuron module}`` registered with
:func:`register_method`; ``convert(model, T, method=name, **options)`` then calls it with the
traced ANN copy (``ctx.model``, activations still in place), the activation sites
(``ctx.sites``: name, graph node, kind ``"qcfs"``/``"relu"``, module, clip value) and ``T``.
It returns one :class:`~leansnn.neuron.SpikingNeuron` per site; neurons must accept
``forward(x, mode="folded")`` on ``[T*B, ...]``, and those with ``supports_mean = True``
(e.g. :class:`ParallelIF` with channel-wise ``threshold``, ``shift`` and ``amplitude``
tensors, as DA-QCFS calibration needs) also get the exact fast path. Example::

    from leansnn.convert import ParallelIF, register_method, site_thresholds

    @register_method("calibrated")
    def calibrated(ctx, calib_data, batches=8):
        ...  # run ctx.model on calib_data, record per-channel statistics per site
        return {s.name: ParallelIF(ctx.T, theta_c, shift=psi, amplitude=amp) for s in ctx.sites}

A method's neurons save with ``leansnn.save`` if their class is registered with
:func:`register_site_neuron` (``ParallelIF`` and ``SerialIF`` are).

The module object is itself callable (``leansnn.convert(model, T)`` is :func:`convert`), so
``ls.convert`` works whether or not the package was imported before.
"""

import sys as _sys
import types as _types

from ..activations import QCFS, floor_ste, qcfs
from . import calibrate as calibrate  # registers method "calibrated" (DA calibration)
from .converter import (
    ActivationSite,
    ConversionContext,
    ConversionError,
    ConvertedSNN,
    convert,
    find_activation_sites,
    methods,
    register_method,
    site_thresholds,
    trace,
)
from .evaluate import FiringCounter, accuracy_per_step, evaluate_snn
from .fastpath import FastPlan, build_plan
from .neurons import ParallelIF, SerialIF
from .persist import register_site_neuron, site_neuron_classes
from .to_qcfs import qcfs_of, to_qcfs

__all__ = [
    "QCFS", "qcfs", "floor_ste", "ParallelIF", "SerialIF", "convert", "ConvertedSNN",
    "ConversionError", "ConversionContext", "ActivationSite", "register_method", "methods",
    "site_thresholds", "trace", "find_activation_sites", "accuracy_per_step", "evaluate_snn",
    "FiringCounter", "FastPlan", "build_plan", "register_site_neuron", "site_neuron_classes",
    "to_qcfs", "qcfs_of",
]


class _CallableModule(_types.ModuleType):
    """``leansnn.convert`` is both this package and the :func:`convert` function."""

    def __call__(self, *args, **kwargs):
        return convert(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
