"""vote(): recording indices that cannot name a recording are refused with a message that
says why (they used to crash inside index_add_ or be truncated, merging recordings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leansnn.base.voting import vote

SCORES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.3, 0.2]])


@pytest.mark.parametrize("recording,num,match", [
    ([0, 0, 1, 2], 2, "num_recordings is 2"),
    ([0, 0, 1, 1], 0, "num_recordings is 0"),
    ([0, -1, 1, 1], None, ">= 0"),
    (np.array([0.0, 0.5, 1.0, 1.0]), None, "whole recording indices"),
    (torch.tensor([0.0, 1.2, 1.9, 2.0]), None, "whole recording indices"),
    (torch.tensor([True, False, True, True]), None, "integer recording indices"),
])
@pytest.mark.parametrize("how", ["majority", "sum"])
def test_bad_recording_indices_are_refused(recording, num, match, how):
    with pytest.raises(ValueError, match=match):
        vote(SCORES, recording, num, how=how)

