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

Two kernels share this scheme: :class:`_FusedLIF` for scalar parameters (floats or 0-dim
tensors; the common case, kept free of any per-element parameter work) and
:class:`_FusedLIFTensor` for parameters that broadcast per channel or per neuron, whose
backward also accumulates per-element parameter gradients in ``[B, ...]`` buffers and sums
them to each parameter's shape at the end. :func:`lif_fused` picks one.

Backward recursion (both kernels; ``g_h[t] = dL/dh[t]``, ``g_u[t] = dL/du[t]``,
``sigma'`` the surrogate derivative at ``u[t] - theta``)::

    g_h[t]  = decay * g_u[t+1]            (g_h[T-1] = dL/dh_last)
    g_s[t]  = dL/ds[t] + g_h[t] * (v_reset - u[t])   hard reset (0 if detach_reset)
            = dL/ds[t] - g_h[t] * theta              soft reset (0 if detach_reset)
    g_u[t]  = dL/du[t] + g_s[t] sigma' + g_h[t] * (1 - s[t] if hard else 1)
    dL/dx[t] = gain g_u[t];  dL/dh[-1] = decay g_u[0]
    dL/ddecay = sum g_u[t] h[t-1];  dL/dgain = sum g_u[t] x[t]
    dL/dtheta = -sum g_s[t] sigma' - [soft] sum g_h[t] s[t];  dL/dv_reset = [hard] sum g_h[t] s[t]
"""

from __future__ import annotations

import torch

from .functional import check_param_shapes
from .surrogate import Surrogate

__all__ = ["lif_fused"]


def _val(p: float | torch.Tensor) -> float:
    return float(p.detach().item()) if isinstance(p, torch.Tensor) else float(p)


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
        # long: one BPTT loop over preallocated buffers; split into helpers it would either
        # allocate per step or pass a dozen buffers around (see the module docstring)
        U, h0, *tparams = ctx.saved_tensors
        decay, gain, thr, v_init, v_reset, hard, detach_reset, surrogate = ctx.params
        need_x, need_decay, need_gain, need_thr, need_h0 = ctx.needs_input_grad[:5]
        T = U.shape[0]
        gS, gU, gH, G = backward_inputs(U, thr, surrogate, gS, gU, gH)
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


def backward_inputs(U: torch.Tensor, thr, surrogate: Surrogate, gS, gU, gH) -> tuple:
    """The incoming gradients of a fused kernel's backward, normalised (``gS`` zeros when
    absent; the empty placeholders of unrequested ``U`` / state outputs as ``None``), and the
    surrogate derivative of every step ``G = sigma'(U - thr)``: the buffer that becomes
    ``dL/du`` in place."""
    if gS is None:
        gS = torch.zeros_like(U)
    if gU is not None and gU.numel() == 0:
        gU = None
    if gH is not None and gH.numel() == 0:
        gH = None
    G = torch.sub(U, thr)
    surrogate.derivative_(G)
    return gS, gU, gH, G


def detach_param(p, like: torch.Tensor):
    """A parameter as used inside the kernels: float, or a detached tensor of x's dtype."""
    if isinstance(p, torch.Tensor):
        return p.detach().to(dtype=like.dtype, device=like.device)
    return float(p)


def reduce_grad(g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Sum a per-element gradient ``[B, ...]`` to the shape of the parameter ``p``."""
    g = g.sum().reshape(()) if p.dim() == 0 else g.sum_to_size(p.shape)
    return g.to(p.dtype)


class _FusedLIFTensor(torch.autograd.Function):
    """Fused LIF whose parameters may be tensors broadcasting against ``x[t]``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: torch.Tensor,
        decay_p,
        gain_p,
        thr_p,
        vr_p,
        vi_p,
        h0: torch.Tensor | None,
        hard: bool,
        detach_reset: bool,
        surrogate: Surrogate,
        want_u: bool,
        want_state: bool,
    ):
        decay, gain, thr, v_reset, v_init = (detach_param(p, x) for p in
                                             (decay_p, gain_p, thr_p, vr_p, vi_p))
        T = x.shape[0]
        step = x.shape[1:]
        grad_needed = any(ctx.needs_input_grad[:7])
        opts = dict(dtype=x.dtype, device=x.device)
        S = torch.empty(x.shape, **opts)
        save_u = want_u or grad_needed
        U = torch.empty(x.shape, **opts) if save_u else None
        if h0 is not None:
            h = h0.detach().to(dtype=x.dtype)
        elif isinstance(v_init, torch.Tensor):
            h = torch.empty(step, **opts).copy_(v_init.expand(step))
        else:
            h = torch.full(step, v_init, **opts)
        if save_u:
            bufs = (torch.empty(step, **opts), torch.empty(step, **opts))
        else:
            if h0 is not None:
                h = h.clone()
            bufs = (h, h)
        t_decay, t_gain = isinstance(decay, torch.Tensor), isinstance(gain, torch.Tensor)
        for t in range(T):
            ut = U[t] if save_u else bufs[0]
            # u = decay h + gain x (ut may alias h: every op reads h[i] before writing ut[i])
            if not t_gain and gain == 1.0:
                if t_decay:
                    torch.addcmul(x[t], h, decay, out=ut)
                else:
                    torch.add(x[t], h, alpha=decay, out=ut)
            else:
                torch.mul(h, decay, out=ut)
                if t_gain:
                    ut.addcmul_(x[t], gain)
                else:
                    ut.add_(x[t], alpha=gain)
            st = S[t]
            torch.ge(ut, thr, out=st)
            h = _reset(ut, st, thr, v_reset, hard, bufs[t % 2])
        h_last = h.clone() if want_state else x.new_empty(0)
        if grad_needed:
            ctx.save_for_backward(U, h0)
            ctx.kernel_params = (decay, gain, thr, v_reset, v_init, hard, detach_reset, surrogate)
            ctx.shapes = [p if isinstance(p, torch.Tensor) else None
                          for p in (decay_p, gain_p, thr_p, vr_p, vi_p)]
        return S, (U if want_u else x.new_empty(0)), h_last

    @staticmethod
    def backward(ctx, gS, gU, gH):  # type: ignore[override]
        # long: one BPTT loop over preallocated buffers (as _FusedLIF.backward), plus the
        # per-element parameter gradients
        U, h0 = ctx.saved_tensors
        decay, gain, thr, v_reset, v_init, hard, detach_reset, surrogate = ctx.kernel_params
        need = ctx.needs_input_grad
        need_x, need_decay, need_gain, need_thr, need_vr, need_vi, need_h0 = need[:7]
        T = U.shape[0]
        gS, gU, gH, G = backward_inputs(U, thr, surrogate, gS, gU, gH)

        def buf():
            return torch.empty_like(U[0])

        def acc(flag):
            return torch.zeros_like(U[0]) if flag else None

        gs_tot, tmp, sbuf, gh_buf = buf(), buf(), buf(), buf()
        acc_thr, acc_decay, acc_gain = acc(need_thr), acc(need_decay), acc(need_gain)
        acc_vr = acc(need_vr and hard)
        need_h_prev = need_decay or need_gain
        hprev = buf() if need_h_prev else None
        t_thr, t_vr = isinstance(thr, torch.Tensor), isinstance(v_reset, torch.Tensor)
        gh = gH  # dL/dh[t]
        for t in range(T - 1, -1, -1):
            ut = U[t]
            sg = G[t]
            gst = gS[t]
            if gh is not None and not detach_reset:
                if hard:
                    torch.addcmul(gst, gh, ut, value=-1.0, out=gs_tot)
                    if t_vr:
                        gs_tot.addcmul_(gh, v_reset)
                    elif v_reset != 0.0:
                        gs_tot.add_(gh, alpha=v_reset)
                elif t_thr:
                    torch.addcmul(gst, gh, thr, value=-1.0, out=gs_tot)
                else:
                    torch.add(gst, gh, alpha=-thr, out=gs_tot)
                gs_eff = gs_tot
            else:
                gs_eff = gst
            if acc_thr is not None:
                acc_thr.addcmul_(gs_eff, sg)
                if not hard and gh is not None:
                    acc_thr.addcmul_(gh, torch.ge(ut, thr, out=sbuf))
            if acc_vr is not None and gh is not None:
                acc_vr.addcmul_(gh, torch.ge(ut, thr, out=sbuf))
            sg.mul_(gs_eff)
            if gh is not None:
                if hard:
                    sg.addcmul_(gh, torch.lt(ut, thr, out=sbuf))
                else:
                    sg.add_(gh)
            if gU is not None:
                sg.add_(gU[t])
            # sg now holds dL/du[t]
            if need_h_prev:
                if t > 0:
                    up = U[t - 1]
                    _reset(up, torch.ge(up, thr, out=tmp), thr, v_reset, hard, hprev)
                elif h0 is not None:
                    hprev.copy_(h0)
                elif isinstance(v_init, torch.Tensor):
                    hprev.copy_(v_init.expand(hprev.shape))
                else:
                    hprev.fill_(v_init)
                if acc_decay is not None:
                    acc_decay.addcmul_(sg, hprev)
                if acc_gain is not None:
                    # gain x[t] = u[t] - decay h[t-1]
                    if isinstance(decay, torch.Tensor):
                        torch.addcmul(ut, hprev, decay, value=-1.0, out=tmp)
                    else:
                        torch.add(ut, hprev, alpha=-decay, out=tmp)
                    acc_gain.addcmul_(sg, tmp)
            gh = torch.mul(sg, decay, out=gh_buf)
        # gh now holds dL/dh[-1] = decay dL/du[0]
        grads: list = [None] * 12
        p_decay, p_gain, p_thr, p_vr, p_vi = ctx.shapes
        if need_h0:
            grads[6] = gh.clone()
        if need_vi:  # v_init is used only without h0
            grads[5] = reduce_grad(gh, p_vi) if h0 is None else torch.zeros_like(p_vi)
        if need_decay:
            grads[1] = reduce_grad(acc_decay, p_decay)
        if need_gain:
            grads[2] = reduce_grad(acc_gain.div_(gain), p_gain)
        if need_thr:
            grads[3] = reduce_grad(acc_thr.neg_(), p_thr)
        if need_vr:
            grads[4] = reduce_grad(acc_vr, p_vr) if acc_vr is not None else torch.zeros_like(p_vr)
        if need_x:
            if isinstance(gain, torch.Tensor):
                G.mul_(gain)
            elif gain != 1.0:
                G.mul_(gain)
            grads[0] = G
        return tuple(grads)


def _reset(ut, st, thr, v_reset, hard: bool, out: torch.Tensor) -> torch.Tensor:
    """``h = u (1 - s) + v_reset s`` (hard) or ``u - theta s`` (soft), written to ``out``."""
    if hard:
        torch.addcmul(ut, ut, st, value=-1.0, out=out)
        if isinstance(v_reset, torch.Tensor):
            out.addcmul_(st, v_reset)
        elif v_reset != 0.0:
            out.add_(st, alpha=v_reset)
    elif isinstance(thr, torch.Tensor):
        torch.addcmul(ut, st, thr, value=-1.0, out=out)
    else:
        torch.add(ut, st, alpha=-thr, out=out)
    return out


def _scalar(p, learnable_ok: bool = True) -> bool:
    if not isinstance(p, torch.Tensor):
        return True
    return p.dim() == 0 and (learnable_ok or not p.requires_grad)


def lif_fused(
    x: torch.Tensor,
    *,
    decay: float | torch.Tensor,
    threshold: float | torch.Tensor,
    surrogate: Surrogate,
    gain: float | torch.Tensor = 1.0,
    reset: str = "hard",
    v_reset: float | torch.Tensor = 0.0,
    v_init: float | torch.Tensor = 0.0,
    detach_reset: bool = False,
    h0: torch.Tensor | None = None,
    want_u: bool = True,
    want_state: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused multi-step LIF (default implementation). See :func:`lif_reference`.

    ``want_u`` / ``want_state`` let callers skip materialising the potentials ``[T, B, ...]``
    and the final state when they do not need them (their slots then hold empty tensors).
    Scalar parameters (floats, 0-dim tensors; ``v_reset`` / ``v_init`` without gradient) run
    the scalar kernel; any parameter with a shape runs the per-element one.
    """
    if reset == "subtract_after_decay":
        from .fused_delayed import lif_subtract_after_decay

        check_param_shapes(x.shape[1:], decay=decay, gain=gain, threshold=threshold,
                           v_reset=v_reset, v_init=v_init)
        return lif_subtract_after_decay(x, decay=decay, gain=gain, threshold=threshold,
                                        v_init=v_init, h0=h0, detach_reset=detach_reset,
                                        surrogate=surrogate, want_u=want_u,
                                        want_state=want_state)
    if reset not in ("hard", "soft"):
        raise ValueError(f"reset must be 'hard', 'soft' or 'subtract_after_decay', got {reset!r}")
    if not (_scalar(decay) and _scalar(gain) and _scalar(threshold)
            and _scalar(v_reset, False) and _scalar(v_init, False)):
        check_param_shapes(x.shape[1:], decay=decay, gain=gain, threshold=threshold,
                           v_reset=v_reset, v_init=v_init)
        return _FusedLIFTensor.apply(
            x, decay, gain, threshold, v_reset, v_init, h0, reset == "hard", bool(detach_reset),
            surrogate, bool(want_u), bool(want_state),
        )
    S, U, H = _FusedLIF.apply(
        x, decay, gain, threshold, h0, float(v_init), float(v_reset), reset == "hard",
        bool(detach_reset), surrogate, bool(want_u), bool(want_state),
    )
    return S, U, H
