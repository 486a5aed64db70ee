r"""DA-QCFS: the calibrated quantized activation and its spiking twin (papers.md, part B).

.. math::

    r(z) = \frac{\theta_c + \varphi_c}{T}\,
           \mathrm{clip}\Big(\Big\lfloor \frac{(z + \psi_c)\,T + \theta_c/2}{\theta_c}
           \Big\rfloor, 0, T\Big)

with a per-channel threshold ``theta_c``, input-mean shift ``psi_c`` and amplitude shift
``phi_c``. It is exactly a channel-wise :class:`~leansnn.convert.ParallelIF` with threshold
``theta_c``, shift ``theta_c/2 + T psi_c`` and spike amplitude ``theta_c + phi_c`` (step ``k``
fires iff ``(T/k) mean(I) + (theta_c/2 + T psi_c)/k >= theta_c``): both compute the count with
:func:`leansnn.activations.spike_count`, so a network of :class:`DAQCFS` equals the converted
network's time-mean output (fast path) bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn

from ..activations import spike_count
from .neurons import ParallelIF

__all__ = ["DAQCFS", "da_qcfs"]


def da_qcfs(z: torch.Tensor, threshold: torch.Tensor | float, T: int,
            psi: torch.Tensor | float = 0.0, phi: torch.Tensor | float = 0.0) -> torch.Tensor:
    r"""DA-QCFS ``((theta + phi)/T) clip(floor(((z + psi) T + theta/2)/theta), 0, T)``.

    ``z``: pre-activation ``[B, C, ...]`` (or any shape); ``threshold``, ``psi``, ``phi``:
    scalars or tensors broadcastable to one sample (``[C, 1, 1]`` for conv activations).
    Units: those of ``z``. With ``psi = phi = 0`` this is QCFS with ``L = T``.
    """
    th = torch.as_tensor(threshold, dtype=z.dtype, device=z.device)
    shift = th / 2 + T * torch.as_tensor(psi, dtype=z.dtype, device=z.device)
    amp = th + torch.as_tensor(phi, dtype=z.dtype, device=z.device)
    return spike_count(z, th, T, shift / th) * (amp / T)


class DAQCFS(nn.Module):
    """DA-QCFS as an ANN activation module (``[B, ...] -> [B, ...]``), with the parameters a
    channel-wise :class:`ParallelIF` uses: ``threshold`` ``theta_c``, ``shift`` ``theta_c/2 +
    T psi_c`` and ``amplitude`` ``theta_c + phi_c`` (buffers broadcastable to one sample).

    ``forward`` uses the neuron's own arithmetic; :meth:`to_neuron` builds the twin.
    """

    def __init__(self, T: int, threshold: torch.Tensor, psi: torch.Tensor | float = 0.0,
                 phi: torch.Tensor | float = 0.0) -> None:
        super().__init__()
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be an int >= 1, got {T!r}")
        th = threshold.detach().clone() if isinstance(threshold, torch.Tensor) and (
            threshold.is_floating_point()) else torch.as_tensor(
                threshold, dtype=torch.get_default_dtype())
        if not bool((th > 0).all()):
            raise ValueError("DAQCFS threshold must be > 0 in every channel")
        self.T = T
        self.register_buffer("threshold", th)
        self.register_buffer("shift", th / 2 + T * torch.as_tensor(psi, dtype=th.dtype))
        self.register_buffer("amplitude", th + torch.as_tensor(phi, dtype=th.dtype))

    @classmethod
    def from_parts(cls, T: int, threshold: torch.Tensor, shift: torch.Tensor,
                   amplitude: torch.Tensor) -> DAQCFS:
        """The activation with these neuron parameters (``shift``, ``amplitude`` as stored)."""
        q = cls(T, threshold)
        q.shift.copy_(shift.detach())
        q.amplitude.copy_(amplitude.detach())
        return q

    @property
    def psi(self) -> torch.Tensor:
        """Input-mean shift ``psi_c`` (units of the pre-activation)."""
        return (self.shift - self.threshold / 2) / self.T

    @property
    def phi(self) -> torch.Tensor:
        """Amplitude shift ``phi_c`` (units of the activation)."""
        return self.amplitude - self.threshold

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        th = self.threshold
        return spike_count(z, th, self.T, self.shift / th) * (self.amplitude / self.T)

    def to_neuron(self) -> ParallelIF:
        """The channel-wise parallel neuron computing this activation of the time-mean."""
        return ParallelIF(self.T, self.threshold, shift=self.shift, amplitude=self.amplitude)

    def extra_repr(self) -> str:
        return f"T={self.T}, channels={self.threshold.numel()}"
