"""The package root's lazy names never shadow a sub-package: ``ls.convert`` (the callable
conversion package) and ``import leansnn.convert.calibrate`` work in either order. Accessing
``ls.convert`` stored the *function* over the package, after which ``import
leansnn.convert.calibrate as cal`` failed with 'cannot import name calibrate from convert'."""

from __future__ import annotations

import subprocess
import sys

import pytest

import leansnn

# lazy names that are also sub-packages or modules, and a submodule or attribute of each
SUBPACKAGES = {"convert": "leansnn.convert.calibrate", "conversion": "leansnn.convert.fit",
               "attention": "leansnn.attention", "activations": "leansnn.activations",
               "analysis": "leansnn.analysis.plots", "interop": "leansnn.interop._common",
               "train": "leansnn.train", "encoding": "leansnn.encoding",
               "distributed": "leansnn.distributed"}


def test_every_lazy_module_name_is_listed():
    lazy_modules = {k for k, (_, attr) in leansnn._LAZY.items() if attr is None}
    assert lazy_modules | {"convert"} == set(SUBPACKAGES)


@pytest.mark.parametrize("name", sorted(SUBPACKAGES))
@pytest.mark.parametrize("order", ["attribute first", "import first"])
def test_lazy_name_and_import_agree(name, order):
    sub = SUBPACKAGES[name]
    alias = "sub"
    code = [
        "import importlib, sys, torch",
        "import leansnn as ls",
        f"x = ls.{name}" if order == "attribute first" else f"import {sub} as {alias}",
        f"import {sub} as {alias}" if order == "attribute first" else f"x = ls.{name}",
        # the attribute is the package in sys.modules, whatever the order
        f"assert x is sys.modules[ls._LAZY[{name!r}][0]], (x, ls._LAZY[{name!r}])",
        f"assert {alias} is sys.modules[{sub!r}]",
    ]
    if name == "convert":  # ls.convert stays the conversion function of api.md
        code += ["from torch import nn",
                 "ann = nn.Sequential(nn.Conv2d(1, 2, 3), ls.QCFS(levels=4), nn.Flatten(),"
                 " nn.Linear(8, 3))",
                 "y = ls.convert(ann, T=4, method='parallel')(torch.rand(2, 1, 4, 4))",
                 "assert tuple(y.shape) == (4, 2, 3)"]
    r = subprocess.run([sys.executable, "-c", "\n".join(code)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
