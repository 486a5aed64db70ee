"""Fused multi-step LIF: the whole window in one ``torch.autograd.Function``.

Same contract as :func:`leansnn.neuron.functional.lif_reference` (see its module docstring
for the equations). What makes it fast and lean:

* Forward writes every step into preallocated buffers with ``out=`` kernels (no allocation
  per step; allocation of large tensors dominates elementwise cost on CPU). Without
  autograd and without ``return_potential`` it needs a single ``[B, ...]`` state buffer.
* For the backward pass it saves exactly one tensor per step: the potential ``u[t]``.
  Spikes, reset state and the input are recomputed from ``u`` (``s = u >= theta``,
  ``h = u(1-s) + v_r s`` or ``u - theta s``, ``k x = u - lambda h[t-1]``).
* The surrogate derivative of all steps is computed in one pass, in place, in the buffer
  that then receives ``dL/du`` step by step (backwards in time), so backward allocates one
  ``[T, B, ...]`` tensor (the input gradient) and three ``[B, ...]`` temporaries.
"""

from __future__ import annotations

import torch

from .surrogate import Surrogate

__all__ = ["lif_fused"]


def _val(p: float | torch.Tensor) -> float:
    return float(p.detach().item()) if isinstance(p, torch.Tensor) else float(p)


def _req(p) -> bool:
    return isinstance(p, torch.Tensor) and p.requires_grad


class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: torch.Tensor,
        decay_p,
        gain_p,
        thr_p,
        h0: torch.Tensor | None,
        v_init: float,
        v_reset: float,
        hard: bool,
        detach_reset: bool,
        surrogate: Surrogate,
        want_u: bool,
        want_state: bool,
    ):
        decay, gain, thr = _val(decay_p), _val(gain_p), _val(thr_p)
        # x may be a broadcast view (direct encoding): x[t] is read, never copied whole
        T = x.shape[0]
        grad_needed = any(ctx.needs_input_grad[:5])
        opts = dict(dtype=x.dtype, device=x.device)
        S = torch.empty(x.shape, **opts)
        save_u = want_u or grad_needed
        U = torch.empty(x.shape, **opts) if save_u else None
        if h0 is not None:
            h = h0.to(dtype=x.dtype)
        else:
            h = torch.full(x.shape[1:], v_init, **opts)
        if save_u:
            bufs = (torch.empty(x.shape[1:], **opts), torch.empty(x.shape[1:], **opts))
        else:
            # a single buffer: u and h overwrite each other in place
            if h0 is not None:
                h = h.clone()
            bufs = (h, h)
        for t in range(T):
            ut = U[t] if save_u else bufs[0]
            if gain == 1.0:
                torch.add(x[t], h, alpha=decay, out=ut)
            else:  # ut may alias h (single-buffer path): read h before writing ut
                torch.mul(h, decay, out=ut)
                ut.add_(x[t], alpha=gain)
            st = S[t]
            torch.ge(ut, thr, out=st)
            hn = bufs[t % 2]
            if hard:
                torch.addcmul(ut, ut, st, value=-1.0, out=hn)
                if v_reset != 0.0:
                    hn.add_(st, alpha=v_reset)
            else:
                torch.add(ut, st, alpha=-thr, out=hn)
            h = hn
        h_last = h.clone() if want_state else x.new_empty(0)
        if grad_needed:
            ctx.save_for_backward(U, h0, *(p for p in (decay_p, gain_p, thr_p)
                                           if isinstance(p, torch.Tensor)))
            ctx.params = (decay, gain, thr, v_init, v_reset, hard, detach_reset, surrogate)
            ctx.tensor_params = tuple(isinstance(p, torch.Tensor) for p in (decay_p, gain_p, thr_p))
        return S, (U if want_u else x.new_empty(0)), h_last

    @staticmethod
    def backward(ctx, gS, gU, gH):  # type: ignore[override]
        U, h0, *tparams = ctx.saved_tensors
        decay, gain, thr, v_init, v_reset, hard, detach_reset, surrogate = ctx.params
        need_x, need_decay, need_gain, need_thr, need_h0 = ctx.needs_input_grad[:5]
        T = U.shape[0]
        if gS is None:
            gS = torch.zeros_like(U)
        if gU is not None and gU.numel() == 0:
            gU = None
        if gH is not None and gH.numel() == 0:
            gH = None
        # surrogate derivative of every step, in the buffer that becomes dL/du
        G = torch.sub(U, thr)
        surrogate.derivative_(G)
        gs_tot = torch.empty_like(U[0])
        tmp = torch.empty_like(U[0])
        sbuf = torch.empty_like(U[0])
        need_h_prev = need_decay or need_gain
        acc_thr = torch.zeros_like(U[0]) if need_thr else None
        acc_decay = torch.zeros_like(U[0]) if need_decay else None
        acc_gain = torch.zeros_like(U[0]) if need_gain else None
        hprev = torch.empty_like(U[0]) if need_h_prev else None
        # g_next: dL/du[t+1] (scale c = decay) or dL/dh[T-1] (scale 1) at the first step
        g_next, c = (gH, 1.0) if gH is not None else (None, 0.0)
        for t in range(T - 1, -1, -1):
            ut = U[t]
            sg = G[t]
            gst = gS[t]
            # dL/ds[t] including the reset path (unless detached)
            if g_next is not None and not detach_reset:
                if hard:
                    torch.addcmul(gst, g_next, ut, value=-c, out=gs_tot)
                    if v_reset != 0.0:
                        gs_tot.add_(g_next, alpha=c * v_reset)
                else:
                    torch.add(gst, g_next, alpha=-thr * c, out=gs_tot)
                gs_eff = gs_tot
            else:
                gs_eff = gst
            if acc_thr is not None:
                acc_thr.addcmul_(gs_eff, sg)
                if not hard and g_next is not None:
                    st = torch.ge(ut, thr, out=sbuf)
                    acc_thr.addcmul_(g_next, st, value=c)
            sg.mul_(gs_eff)
            if g_next is not None:
                if hard:
                    # dh/du = 1 - s: one compare gives it directly
                    not_s = torch.lt(ut, thr, out=sbuf)
                    sg.addcmul_(g_next, not_s, value=c)
                else:
                    sg.add_(g_next, alpha=c)
            if gU is not None:
                sg.add_(gU[t])
            # sg now holds dL/du[t]
            if need_h_prev:
                if t > 0:
                    up = U[t - 1]
                    torch.ge(up, thr, out=tmp)
                    if hard:
                        torch.addcmul(up, up, tmp, value=-1.0, out=hprev)
                        if v_reset != 0.0:
                            hprev.add_(tmp, alpha=v_reset)
                    else:
                        torch.add(up, tmp, alpha=-thr, out=hprev)
                elif h0 is not None:
                    hprev.copy_(h0)
                else:
                    hprev.fill_(v_init)
                if acc_decay is not None:
                    acc_decay.addcmul_(sg, hprev)
                if acc_gain is not None:
                    # k x[t] = u[t] - decay h[t-1]
                    torch.add(ut, hprev, alpha=-decay, out=tmp)
                    acc_gain.addcmul_(sg, tmp)
            g_next, c = sg, decay
        grads: list = [None] * 12
        if need_h0:
            grads[4] = G[0] * decay
        if need_x:
            if gain != 1.0:
                G.mul_(gain)
            grads[0] = G
        ti = iter(tparams)
        tp = [next(ti) if is_t else None for is_t in ctx.tensor_params]
        if need_decay:
            grads[1] = acc_decay.sum().reshape(tp[0].shape).to(tp[0].dtype)
        if need_gain:
            grads[2] = (acc_gain.sum() / gain).reshape(tp[1].shape).to(tp[1].dtype)
        if need_thr:
            grads[3] = (-acc_thr.sum()).reshape(tp[2].shape).to(tp[2].dtype)
        return tuple(grads)


def lif_fused(
    x: torch.Tensor,
    *,
    decay: float | torch.Tensor,
    threshold: float | torch.Tensor,
    surrogate: Surrogate,
    gain: float | torch.Tensor = 1.0,
    reset: str = "hard",
    v_reset: float = 0.0,
    v_init: float = 0.0,
    detach_reset: bool = False,
    h0: torch.Tensor | None = None,
    want_u: bool = True,
    want_state: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused multi-step LIF (default implementation). See :func:`lif_reference`.

    ``want_u`` / ``want_state`` let callers skip materialising the potentials ``[T, B, ...]``
    and the final state when they do not need them (their slots then hold empty tensors).
    """
    S, U, H = _FusedLIF.apply(
        x, decay, gain, threshold, h0, float(v_init), float(v_reset), reset == "hard",
        bool(detach_reset), surrogate, bool(want_u), bool(want_state),
    )
    return S, U, H
