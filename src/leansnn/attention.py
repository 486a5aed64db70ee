"""Advance Spatial Attention (ASA), Yao et al., ICCV 2023 ("Inherent Redundancy in SNNs").

ASA sits between a conv stage (conv + BN [+ pool]) and the LIF layer that follows it and
reshapes the LIF's input current ``x`` (time-major ``[T, B, C, H, W]``) so that fewer, more
informative spikes fire. Steps (papers.md, part A):

1. ``F_avg, F_max = mean, max of x over (H, W)``, both ``[T, B, C]``.
2. ``M = (F_avg + F_max)/2 + alpha F_avg + beta F_max`` (alpha, beta learnable, init 0.5), then a
   bias-free FC over the time axis (``Linear(T, T)``; with ``reduction r > 1``
   ``Linear(T, T//r) -> ReLU -> Linear(T//r, T)``).
3. ``K_c``: top ``floor(lam C)`` channels of M per (sample, step); ``K_t``: top ``floor(lam T)``
   steps per (sample, channel). Important mask ``I = K_c XOR K_t``, sub-important ``1 - I``.
4. For each group ``G`` (``I x`` and ``(1 - I) x``) viewed as ``[B, T C, H, W]``:
   ``A_G = sigmoid(conv3x3([mean_{TC}(G) / lam_G, max_{TC}(G)]))`` with ``lam_I = lam``,
   ``lam_S = 1 - lam``; ``A_G`` is ``[B, 1, H, W]``.
5. ``y = A_I I x + A_S (1 - I) x``.

Fixed here, unlike the authors' code: the masks are computed **per sample** (a sample's output
does not depend on its batch neighbours), alpha, beta and the temporal FC **learn** (a
straight-through estimator: the hard top-k mask in the forward pass, the gradient of a
sigmoid-relaxed mask ``sigmoid((M - m_k) / (temperature * std(M)))`` in the backward pass,
where ``m_k`` is the midpoint between the k-th and (k+1)-th largest value), and a batch of one
works. ``behaviour="authors"`` reproduces the authors' code for comparison only: each mask is
the union of the hard top-k masks over the batch, and alpha, beta and the FC get no gradient
(they keep their initial values: their ``.grad`` stays ``None``, so no optimiser moves them).

Two implementations give the same values and gradients (tested in float64): ``"reference"``
(plain autograd, the steps above written out) and ``"fused"`` (default; one autograd function
with a hand-written backward, about 5x faster forward+backward on one CPU thread and keeping
one saved tensor instead of several). Where a group maximum is tied, the fused path sends
the gradient to one of the tied entries, the reference path splits it among them.

Parameters per module: ``2 * 18`` (two 3x3 convs, 2 -> 1 channels) ``+ 2`` (alpha, beta)
``+ T**2`` for ``reduction == 1``, or ``+ 2 * T * (T // reduction)`` for ``reduction > 1``.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

__all__ = ["ASA", "topk_mask"]


def topk_mask(m: torch.Tensor, k: int, dim: int, temperature: float = 1.0) -> torch.Tensor:
    """Mask of the ``k`` largest entries of ``m`` along ``dim`` (1. there, 0. elsewhere).

    Forward: the exact hard mask (exactly ``k`` ones per slice, ties broken by ``topk``).
    Backward: the gradient of the relaxed mask ``sigmoid((m - m_k) / s)``, with ``m_k`` the
    midpoint between the k-th and (k+1)-th largest value of the slice and
    ``s = temperature * std(m along dim)`` (both treated as constants). ``k <= 0`` gives
    zeros and ``k >= size`` ones (no gradient: the mask cannot change).
    """
    n = m.shape[dim]
    if k <= 0:
        return torch.zeros_like(m)
    if k >= n:
        return torch.ones_like(m)
    md = m.detach()
    vals, idx = md.topk(k + 1, dim=dim)
    hard = torch.zeros_like(md).scatter_(dim, idx.narrow(dim, 0, k), 1.0)
    if not m.requires_grad:
        return hard
    thr = 0.5 * (vals.narrow(dim, k - 1, 1) + vals.narrow(dim, k, 1))
    scale = md.std(dim, keepdim=True, correction=0).mul_(temperature).clamp_(min=1e-6)
    soft = torch.sigmoid((m - thr) / scale)
    return hard + (soft - soft.detach())


class ASA(nn.Module):
    """Advance Spatial Attention on a LIF layer's input current (see the module docstring).

    Args:
        T: number of time steps of the input (the temporal FC is ``T x T``).
        channels: C, number of channels of the input.
        lam: fraction in (0, 1): ``K_c`` keeps ``floor(lam * C)`` channels per (sample, step)
            and ``K_t`` keeps ``floor(lam * T)`` steps per (sample, channel); the important
            group's spatial mean is divided by ``lam`` and the other's by ``1 - lam``.
        reduction: r >= 1; ``r == 1``: one ``Linear(T, T)`` (T**2 weights); ``r > 1``:
            ``Linear(T, T//r) -> ReLU -> Linear(T//r, T)`` (``2 T (T//r)`` weights).
        temperature: width of the sigmoid relaxation used for the mask's gradient, in units of
            the standard deviation of M along the masked axis.
        impl: ``"fused"`` (default: one autograd function with a hand-written backward that
            reads the big tensor a few times and saves only the input) or ``"reference"``
            (plain autograd, the readable definition the fused path is tested against).
        behaviour: ``"fixed"`` (default: per-sample masks, learnable alpha/beta/FC) or
            ``"authors"`` (the authors' code, for comparison only: batch-union hard masks,
            alpha, beta and the FC frozen at their initial values).

    Shapes: ``x`` float ``[T, B, C, H, W]`` -> ``[T, B, C, H, W]``.
    """

    def __init__(self, T: int, channels: int, lam: float = 0.5, reduction: int = 1,
                 temperature: float = 1.0, impl: str = "fused",
                 behaviour: str = "fixed") -> None:
        super().__init__()
        T, channels, reduction = (_positive_int(name, v) for name, v in (
            ("T", T), ("channels", channels), ("reduction", reduction)))
        if not _is_real(lam):
            raise ValueError(f"ASA: lam must be a number strictly between 0 and 1, got {lam!r}")
        if not 0.0 < float(lam) < 1.0:
            raise ValueError(f"ASA: lam must lie strictly between 0 and 1, got {lam!r}")
        if reduction > T:
            raise ValueError(f"ASA: reduction must be <= T={T} (T // reduction >= 1), "
                             f"got {reduction}")
        if impl not in ("fused", "reference"):
            raise ValueError(f"ASA: impl must be 'fused' or 'reference', got {impl!r}")
        self.impl = impl
        if behaviour not in ("fixed", "authors"):
            raise ValueError(f"ASA: behaviour must be 'fixed' or 'authors', got {behaviour!r}")
        self.behaviour = behaviour
        if not _is_real(temperature) or not 0.0 < float(temperature) < math.inf:
            raise ValueError(f"ASA: temperature must be a finite number > 0 (the width of "
                             f"the relaxed mask, in standard deviations), got {temperature!r}")
        self.T, self.channels, self.lam, self.reduction = T, channels, float(lam), reduction
        self.temperature = float(temperature)
        self.alpha = nn.Parameter(torch.tensor(0.5))
        self.beta = nn.Parameter(torch.tensor(0.5))
        if reduction == 1:
            self.fc = nn.Linear(T, T, bias=False)
        else:
            self.fc = nn.Sequential(nn.Linear(T, T // reduction, bias=False), nn.ReLU(),
                                    nn.Linear(T // reduction, T, bias=False))
        self.conv_important = nn.Conv2d(2, 1, 3, padding=1, bias=False)
        self.conv_sub = nn.Conv2d(2, 1, 3, padding=1, bias=False)

    @staticmethod
    def num_parameters(T: int, reduction: int = 1) -> int:
        """The formula: ``2*18 + 2 + T**2`` (r = 1) or ``2*18 + 2 + 2*T*(T//r)`` (r > 1)."""
        fc = T * T if reduction == 1 else 2 * T * (T // reduction)
        return 2 * 18 + 2 + fc

    @property
    def k_channels(self) -> int:
        """Number of channels in ``K_c`` per (sample, step): ``floor(lam * C)``."""
        return int(self.lam * self.channels)

    @property
    def k_steps(self) -> int:
        """Number of time steps in ``K_t`` per (sample, channel): ``floor(lam * T)``."""
        return int(self.lam * self.T)

    def _check(self, x: torch.Tensor) -> None:
        """Shapes and dtype only (no data pass): ``ValueError`` naming expected vs got."""
        want = f"[T={self.T}, B, C={self.channels}, H, W]"
        if not isinstance(x, torch.Tensor) or x.dim() != 5:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"ASA: expected a [T, B, C, H, W] tensor ({want}), got {shape}")
        if not x.is_floating_point():
            raise ValueError(f"ASA: expected a floating-point tensor, got {x.dtype}; convert "
                             "with x.float()")
        T, B, C = (int(v) for v in x.shape[:3])
        if x.shape[3] == 0 or x.shape[4] == 0:
            raise ValueError(f"ASA: got an empty spatial map, shape {tuple(x.shape)} "
                             f"{want}; H and W must be >= 1")
        if T != self.T and B == self.T and C == self.channels:
            raise ValueError(
                f"ASA: got shape {tuple(x.shape)}, which looks batch-major [B, T, ...]; ASA "
                f"takes time-major {want}: pass x.transpose(0, 1)")
        if T != self.T or C != self.channels:
            raise ValueError(
                f"ASA: built for T={self.T}, C={self.channels} but got input of shape "
                f"{tuple(x.shape)} [T, B, C, H, W]; build ASA(T={T}, channels={C}), or if the "
                "batch comes first, pass x.transpose(0, 1)")
        w = self.conv_important.weight
        if x.dtype != w.dtype or x.device != w.device:
            raise ValueError(f"ASA: the input is {x.dtype} on {x.device} but ASA's weights are "
                             f"{w.dtype} on {w.device}; use x.to(...) or asa.to(...)")

    def importance(self, x: torch.Tensor) -> torch.Tensor:
        """Temporal-channel importance M ``[T, B, C]`` (steps 1-2)."""
        f_avg = x.mean((3, 4))
        f_max = x.amax((3, 4))
        m = (0.5 + self.alpha) * f_avg + (0.5 + self.beta) * f_max
        return self.fc(m.permute(1, 2, 0)).permute(2, 0, 1)  # FC over T

    def masks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(K_c, K_t, I)``, each ``[T, B, C]`` with values in {0., 1.} (step 3).

        Straight-through: the values are the hard masks, gradients flow to alpha, beta and
        the FC through the relaxed masks.
        """
        self._check(x)
        m = self.importance(x)
        if self.behaviour == "authors":
            m = m.detach()
        kc, kt, important = _xor_masks(m, self.k_channels, self.k_steps, self.temperature,
                                       self.behaviour == "authors")
        return kc, kt, important

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impl == "fused":
            self._check(x)
            fc = [m.weight for m in self.fc.modules() if isinstance(m, nn.Linear)]
            return _ASAFused.apply(self, x, self.alpha, self.beta, self.conv_important.weight,
                                   self.conv_sub.weight, *fc)
        return self.forward_reference(x)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The plain-autograd definition (steps 1-5 written out)."""
        _, _, imp = self.masks(x)
        T, B, C, H, W = x.shape
        n = T * C
        g = x * imp[..., None, None]          # important group  I x
        r = x - g                              # sub-important group (1 - I) x
        stats_i = torch.stack((g.sum((0, 2)) / (n * self.lam), g.amax((0, 2))), 1)
        stats_s = torch.stack((r.sum((0, 2)) / (n * (1.0 - self.lam)), r.amax((0, 2))), 1)
        a_i = torch.sigmoid(self.conv_important(stats_i)).view(1, B, 1, H, W)
        a_s = torch.sigmoid(self.conv_sub(stats_s)).view(1, B, 1, H, W)
        return torch.addcmul(r * a_s, g, a_i)

    def extra_repr(self) -> str:
        return (f"T={self.T}, channels={self.channels}, lam={self.lam:g}, "
                f"reduction={self.reduction}, temperature={self.temperature:g}, "
                f"impl={self.impl}" + (", behaviour=authors" if self.behaviour == "authors"
                                       else ""))


def _is_real(v: object) -> bool:
    """A real number (Python or numpy; not a bool, a string or a tensor)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _positive_int(name: str, v: object) -> int:
    """``v`` as an int >= 1 (Python or numpy integer), else ``ValueError`` naming ``name``."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ValueError(f"ASA: {name} must be a positive int, got {v!r} "
                         f"({type(v).__name__})")
    if int(v) < 1:
        raise ValueError(f"ASA: {name} must be a positive int, got {v!r}")
    return int(v)


def _xor_masks(m: torch.Tensor, k_channels: int, k_steps: int, temperature: float,
               union: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(K_c, K_t, K_c XOR K_t)`` of the importance ``m`` ``[T, B, C]``; with ``union`` each
    of K_c and K_t is the union of its hard masks over the batch (the authors' code)."""
    kc = topk_mask(m, k_channels, dim=2, temperature=temperature)
    kt = topk_mask(m, k_steps, dim=0, temperature=temperature)
    if union:
        kc = kc.amax(1, keepdim=True).expand_as(kc)
        kt = kt.amax(1, keepdim=True).expand_as(kt)
    return kc, kt, kc + kt - 2.0 * kc * kt  # XOR of {0, 1} masks


def _fc_apply(m: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """The temporal FC on ``[..., T]`` given its weights (one, or two with a ReLU between)."""
    m = torch.nn.functional.linear(m, weights[0])
    if len(weights) == 2:
        m = torch.nn.functional.linear(torch.relu(m), weights[1])
    return m


class _ASAFused(torch.autograd.Function):
    """ASA forward/backward with few passes over the big ``[T, B, C, H, W]`` tensor.

    The small parts (importance -> straight-through masks, and the two 3x3 convs on the
    ``[B, 4, H, W]`` group statistics) are recorded as tiny autograd graphs inside forward and
    differentiated with ``torch.autograd.grad`` in backward; the big parts are hand-written:
    group sums through batched matrix products, group maxima with their arg-max (backward
    scatters into them), and the gating ``y = x * (A_S + I (A_I - A_S))`` one step at a time in
    a ``[B, C, HW]`` buffer. Saves only ``x`` (plus small tensors) for backward.
    """

    @staticmethod
    def forward(ctx, mod: ASA, x: torch.Tensor, alpha, beta, w_i, w_s, *fc):  # type: ignore[override]
        xc = x.contiguous()
        T, B, C, H, W = xc.shape
        HW, n, lam = H * W, T * C, mod.lam
        xv = xc.view(T, B, C, HW)
        build = any(ctx.needs_input_grad[1:])
        authors = mod.behaviour == "authors"
        learn = build and not authors  # the authors' masks pass no gradient to M
        f_avg = xv.mean(-1)
        if build:
            f_max, f_arg = xv.max(-1)
        else:
            f_max, f_arg = xv.amax(-1), None
        with torch.set_grad_enabled(learn):
            fa = f_avg.detach().requires_grad_(learn)
            fm = f_max.detach().requires_grad_(learn)
            leaves1 = [fa, fm] + [p.detach().requires_grad_(learn) for p in (alpha, beta, *fc)]
            m = (0.5 + leaves1[2]) * fa + (0.5 + leaves1[3]) * fm
            m = _fc_apply(m.permute(1, 2, 0), leaves1[4:]).permute(2, 0, 1)
            _, _, imp = _xor_masks(m, mod.k_channels, mod.k_steps, mod.temperature, authors)
        I = imp.detach()  # noqa: E741
        Iw = torch.stack((I, torch.ones_like(I)), 2)  # [T, B, 2, C]
        sums = xc.new_zeros(B, 2, HW)
        buf = xc.new_empty(B, C, HW)
        neg = torch.finfo(xc.dtype).min
        mx = [xc.new_full((B, HW), neg), xc.new_full((B, HW), neg)]
        t_arg = [torch.zeros(B, HW, dtype=torch.long, device=xc.device) for _ in range(2)]
        masks = (I, 1.0 - I)
        for t in range(T):
            sums.baddbmm_(Iw[t], xv[t])
            for j in range(2):
                torch.mul(xv[t], masks[j][t].unsqueeze(-1), out=buf)
                v = buf.amax(1)  # much faster than max-with-indices over a middle axis
                upd = v > mx[j]
                mx[j] = torch.where(upd, v, mx[j])
                t_arg[j].masked_fill_(upd, t)
        arg = []
        if build:  # channel of each group maximum, searched at its time step only
            bidx = torch.arange(B, device=xc.device).view(B, 1)
            for j in range(2):
                xs = xv.gather(0, t_arg[j].view(1, B, 1, HW).expand(1, B, C, HW))[0]
                sel = masks[j][t_arg[j], bidx].transpose(1, 2)  # [B, C, HW]
                arg.append(t_arg[j] * C + (xs * sel).argmax(1))
        with torch.set_grad_enabled(build):
            st = torch.stack((sums[:, 0] / (n * lam), mx[0],
                              (sums[:, 1] - sums[:, 0]) / (n * (1.0 - lam)), mx[1]), 1)
            st = st.view(B, 4, H, W).requires_grad_(build)
            wi_, ws_ = w_i.detach().requires_grad_(build), w_s.detach().requires_grad_(build)
            a_i = torch.sigmoid(torch.nn.functional.conv2d(st[:, :2], wi_, padding=1))
            a_s = torch.sigmoid(torch.nn.functional.conv2d(st[:, 2:], ws_, padding=1))
        d = (a_i - a_s).detach().view(B, 1, HW)
        a_sd = a_s.detach().view(B, 1, HW)
        y = torch.empty_like(xc)
        yv = y.view(T, B, C, HW)
        for t in range(T):
            torch.addcmul(a_sd, I[t].unsqueeze(-1), d, out=buf)
            torch.mul(xv[t], buf, out=yv[t])
        if build:
            ctx.save_for_backward(xc)
            ctx.small = (I, Iw, f_arg, arg, d, a_sd, leaves1, imp, st, wi_, ws_, a_i, a_s,
                         lam, n)
            ctx.authors = authors
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy: torch.Tensor):  # type: ignore[override]
        (xc,) = ctx.saved_tensors
        I, Iw, f_arg, arg, d, a_sd, leaves1, imp, st, wi_, ws_, a_i, a_s, lam, n = ctx.small
        del ctx.small
        T, B, C, H, W = xc.shape
        HW = H * W
        xv = xc.view(T, B, C, HW)
        gyv = gy.contiguous().view(T, B, C, HW)
        buf = xc.new_empty(B, C, HW)
        acc = xc.new_zeros(B, 2, HW)
        gI = xc.new_empty(T, B, C)
        d_col = d.view(B, HW, 1)
        for t in range(T):  # gate: sum_{t,c} [I; 1] gy x, and dL/dI = sum_hw gy x (A_I - A_S)
            torch.mul(gyv[t], xv[t], out=buf)
            acc.baddbmm_(Iw[t], buf)
            torch.bmm(buf, d_col, out=gI[t].unsqueeze(-1))
        ga_i = acc[:, 0].reshape(B, 1, H, W)
        ga_s = (acc[:, 1] - acc[:, 0]).reshape(B, 1, H, W)
        g_st, g_wi, g_ws = torch.autograd.grad((a_i, a_s), (st, wi_, ws_), (ga_i, ga_s))
        g_st = g_st.reshape(B, 4, HW)
        g_mean_i, g_max_i = g_st[:, 0] / (n * lam), g_st[:, 1]
        g_mean_s, g_max_s = g_st[:, 2] / (n * (1.0 - lam)), g_st[:, 3]
        g_dm = (g_mean_i - g_mean_s).contiguous()
        for t in range(T):  # group means: dL/dI += sum_hw x (g_mean_i - g_mean_s)
            gI[t].unsqueeze(-1).baddbmm_(xv[t], g_dm.view(B, HW, 1))
        # group maxima: one arg-max position (t*, c*) per (b, hw)
        bidx = torch.arange(B, device=xc.device).view(B, 1)
        hw = torch.arange(HW, device=xc.device).view(1, HW)
        If = I.reshape(-1)
        xf = xc.view(-1)
        pos, tc = [], []
        for j in range(2):
            t_, c_ = arg[j] // C, arg[j] % C
            row = (t_ * B + bidx) * C + c_  # index into [T, B, C]
            tc.append(row)
            pos.append(row * HW + hw)      # index into x
        x_i, x_s = xf[pos[0]], xf[pos[1]]
        gI.view(-1).index_add_(0, tc[0].reshape(-1), (g_max_i * x_i).reshape(-1))
        gI.view(-1).index_add_(0, tc[1].reshape(-1), (-g_max_s * x_s).reshape(-1))
        # importance: dL/dI -> f_avg, f_max, alpha, beta, fc
        if imp.requires_grad:
            g1 = torch.autograd.grad(imp, leaves1, gI, allow_unused=True)
            g1 = [torch.zeros_like(p) if g is None else g for g, p in zip(g1, leaves1)]
        else:
            g1 = [torch.zeros_like(p) for p in leaves1]
        g_fa, g_fm = g1[0], g1[1]
        gx = torch.empty_like(xc)
        gxv = gx.view(T, B, C, HW)
        g_ms = g_mean_s.unsqueeze(1)
        g_dmu = g_dm.unsqueeze(1)
        for t in range(T):
            torch.addcmul(a_sd, I[t].unsqueeze(-1), d, out=buf)
            torch.mul(gyv[t], buf, out=gxv[t])
            torch.addcmul(g_ms, I[t].unsqueeze(-1), g_dmu, out=buf)
            buf.add_(g_fa[t].unsqueeze(-1), alpha=1.0 / HW)
            gxv[t].add_(buf)
        gx.view(T * B * C, HW).scatter_add_(1, f_arg.view(-1, 1), g_fm.reshape(-1, 1))
        gx.view(-1).index_add_(0, pos[0].reshape(-1), (g_max_i * If[tc[0]]).reshape(-1))
        gx.view(-1).index_add_(0, pos[1].reshape(-1), (g_max_s * (1.0 - If[tc[1]])).reshape(-1))
        if ctx.authors:  # frozen: no gradient at all (not zeros, which weight decay would use)
            return (None, gx, None, None, g_wi, g_ws, *([None] * len(g1[4:])))
        return (None, gx, g1[2], g1[3], g_wi, g_ws, *g1[4:])
