"""One prediction per recording from the scores of its windows (the ASA paper's test protocol).

Lives on the base floor so that both the data sets (:func:`leansnn.data.vote`) and the
evaluation loop (:func:`leansnn.evaluation.evaluate_votes`) use the same rule.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["vote"]


def vote(scores: torch.Tensor, recording: torch.Tensor | np.ndarray,
         num_recordings: int | None = None, how: str = "majority") -> torch.Tensor:
    """One prediction per recording from per-window ``scores [W, K]``.

    ``how="majority"``: each window votes for its ``argmax`` class, the class with most votes
    wins (ties: the lowest class index); ``"sum"``: the class with the largest summed score.
    ``recording [W]`` holds each window's recording index (``EventWindows.batches``' third
    item); returns int64 ``[num_recordings]`` (default ``max(recording) + 1``); a recording
    without windows gets -1. NaN or inf scores are refused.
    """
    scores = torch.as_tensor(scores)
    recording = _recording_index(recording).to(scores.device)
    if scores.dim() != 2 or recording.shape != scores.shape[:1]:
        raise ValueError(f"scores must be [W, K] and recording [W], got {tuple(scores.shape)} "
                         f"and {tuple(recording.shape)}")
    R = int(recording.max()) + 1 if num_recordings is None and recording.numel() else \
        int(num_recordings or 0)
    if recording.numel() and int(recording.max()) >= R:
        raise ValueError(f"recording holds index {int(recording.max())}, but num_recordings is "
                         f"{R}: give num_recordings > {int(recording.max())} (or None)")
    if scores.is_floating_point() and not bool(torch.isfinite(scores).all()):
        bad = int((~torch.isfinite(scores)).any(1).nonzero()[0])
        raise ValueError(f"scores of window {bad} hold NaN or inf values; no vote can be read "
                         "from them (argmax takes NaN for the top class)")
    K = scores.shape[1]
    if how == "majority":
        votes = torch.nn.functional.one_hot(scores.argmax(1), K).to(torch.float64)
    elif how == "sum":
        votes = scores.to(torch.float64)
    else:
        raise ValueError(f"how must be 'majority' or 'sum', got {how!r}")
    acc = torch.zeros(R, K, dtype=torch.float64, device=scores.device).index_add_(
        0, recording, votes)
    pred = acc.argmax(1)
    seen = torch.zeros(R, dtype=torch.bool, device=scores.device)
    seen[recording] = True
    return torch.where(seen, pred, torch.full_like(pred, -1))


def _recording_index(recording) -> torch.Tensor:
    """``recording`` as int64 ``[W]``; a negative or fractional index is refused (casting
    would silently merge windows of different recordings)."""
    r = torch.as_tensor(np.asarray(recording))
    if r.dtype == torch.bool or r.is_complex():
        raise ValueError(f"recording must hold integer recording indices, got {r.dtype}")
    if r.is_floating_point() and not bool((r == r.round()).all()):
        raise ValueError("recording must hold whole recording indices (one per window), got "
                         f"fractional values such as {float(r[r != r.round()][0])}")
    r = r.to(torch.int64)
    if r.numel() and int(r.min()) < 0:
        raise ValueError(f"recording indices must be >= 0, got {int(r.min())}")
    return r
