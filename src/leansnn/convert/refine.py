"""Output-matching refinement of the calibrated per-channel parameters (optional).

After the layer-by-layer fit, :func:`refine` tunes every channel's threshold, shift and
amplitude together (3 numbers per channel; the weights stay untouched) by Adam so that the
DA network's output matches the ANN's (mean squared error) on the calibration images. The
floor's gradient passes straight through (``spike_count(..., ste=True)``; the shift is tuned
relative to the threshold, the count's ``offset``). No labels are used;
minibatches are drawn with a fixed seed, so the result is deterministic.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from ..activations import spike_count
from ..base.progress import progress as show_progress
from .converter import ActivationSite, ConversionError, replace_sites
from .daqcfs import DAQCFS

__all__ = ["refine"]


class _TunableDA(nn.Module):
    """DA-QCFS with trainable relative parameters: ``theta = theta_0 exp(a)``, ``shift = s
    theta``, ``amplitude = m theta`` (dead channels keep amplitude 0)."""

    def __init__(self, q: DAQCFS) -> None:
        super().__init__()
        self.T = q.T
        th = q.threshold.detach()
        self.register_buffer("th0", th.clone())
        self.register_buffer("alive", (q.amplitude != 0).to(th.dtype))
        self.a = nn.Parameter(torch.zeros_like(th))
        self.s = nn.Parameter(q.shift.detach() / th)
        self.m = nn.Parameter(q.amplitude.detach() / th)

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(threshold, shift, amplitude)`` in the units of the activation."""
        th = self.th0 * torch.exp(self.a)
        return th, self.s * th, self.m * th * self.alive

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        th, _, amp = self.parts()
        return spike_count(z, th, self.T, self.s, ste=True) * (amp / self.T)


def refine(gm: fx.GraphModule, sites: list[ActivationSite], das: dict[str, DAQCFS],
           chunks: list[torch.Tensor], steps: int, lr: float, batch_size: int,
           progress: bool = False) -> dict[str, DAQCFS]:
    """Tune (theta, shift, amplitude) of every site so the DA network's output matches the
    ANN ``gm``'s (MSE) on ``chunks``, with ``steps`` Adam steps of learning rate ``lr`` on
    minibatches of ``batch_size``; returns new :class:`DAQCFS` modules (``gm`` untouched)."""
    if not sites:  # nothing to tune
        return das
    net = copy.deepcopy(gm)
    tun = {s.name: _TunableDA(das[s.name]) for s in sites}
    replace_sites(net, sites, tun)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    params = [p for m in tun.values() for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    dev = next(iter(tun.values())).th0.device
    X = torch.cat(chunks).to(dev)
    with torch.no_grad():
        outs = [gm(x.to(dev)) for x in chunks]
    if not all(isinstance(o, torch.Tensor) for o in outs):
        raise ConversionError("refine_steps needs a model whose output is one tensor; "
                              "use refine_steps=0 for this model")
    ref = torch.cat(outs)
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(0)
    bs = min(batch_size, X.shape[0])
    bar = show_progress(range(steps), desc="refine", quiet=not progress)
    for _ in bar:
        idx = torch.randint(0, X.shape[0], (bs,), generator=gen)
        loss = torch.mean((net(X[idx]) - ref[idx]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(mse=f"{loss.item():.4g}", refresh=False)
    with torch.no_grad():
        return {name: DAQCFS.from_parts(m.T, *m.parts()) for name, m in tun.items()}
