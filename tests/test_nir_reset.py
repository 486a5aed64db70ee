"""NIR export refuses a reset it cannot express (``subtract_after_decay``) by name."""

import pytest
import torch

import leansnn as ls

pytest.importorskip("nir")


def test_subtract_after_decay_reset_is_refused_by_name():
    from leansnn.interop import to_nir

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), ls.LIF(decay=0.5,
                                                              reset="subtract_after_decay"))
    with pytest.raises(ValueError, match="subtract_after_decay.*no NIR equivalent"):
        to_nir(model, torch.rand(2, 1, 3))
