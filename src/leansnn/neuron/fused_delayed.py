"""Fused LIF with ``reset="subtract_after_decay"`` (snnTorch's ``reset_mechanism="subtract"``).

Dynamics (see :mod:`leansnn.neuron.functional`), with ``r[t] = H(h[t-1] - theta)`` the
spike of the previous step (``r[0]`` from the initial state)::

    u[t] = decay h[t-1] + gain x[t] - theta r[t];   s[t] = H(u[t] - theta);   h[t] = u[t]

One ``autograd.Function`` for the whole window, parameters floats or tensors broadcasting
against ``x[t]``; only the potentials ``u`` are saved for the backward pass (the spikes are
recomputed from them). Backward recursion (``g_u[t] = dL/du[t]``, ``sigma'`` the surrogate
derivative at ``u[t] - theta``, ``c = 0`` with ``detach_reset``, else 1)::

    g_s[t] = dL/ds[t] - c theta g_u[t+1]                  (no second term at t = T-1)
    g_u[t] = dL/du[t] + g_s[t] sigma'[t] + decay g_u[t+1]  (dL/dh_last instead at t = T-1)
    dL/dx[t] = gain g_u[t];  dL/dh[-1] = decay g_u[0] - c theta g_u[0] sigma'(h[-1] - theta)
    dL/ddecay = sum g_u[t] h[t-1];  dL/dgain = sum g_u[t] x[t]
    dL/dtheta = -sum g_s[t] sigma'[t] - sum g_u[t] r[t] + c theta g_u[0] sigma'(h[-1] - theta)
"""

from __future__ import annotations

import torch

from .fused import backward_inputs, detach_param, reduce_grad
from .surrogate import Surrogate

__all__ = ["lif_subtract_after_decay"]


def _initial(x: torch.Tensor, h0, v_init) -> torch.Tensor:
    step = x.shape[1:]
    if h0 is not None:
        return h0.detach().to(dtype=x.dtype).clone()
    return torch.zeros(step, dtype=x.dtype, device=x.device) + v_init


class _FusedDelayed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, decay_p, gain_p, thr_p, vi_p, h0, detach_reset: bool,  # type: ignore[override]
                surrogate: Surrogate, want_u: bool, want_state: bool):
        decay, gain, thr, v_init = (detach_param(p, x) for p in (decay_p, gain_p, thr_p, vi_p))
        h_init = _initial(x, h0, v_init)
        grad_needed = any(ctx.needs_input_grad[:6])
        S = torch.empty_like(x)
        U = torch.empty_like(x) if (want_u or grad_needed) else None
        h = h_init
        r = torch.ge(h, thr).to(x.dtype)
        for t in range(x.shape[0]):
            u = h * decay + x[t] * gain - r * thr
            if U is not None:
                U[t] = u
            torch.ge(u, thr, out=S[t])
            h, r = u, S[t]
        h_last = h if want_state else x.new_empty(0)
        if grad_needed:
            ctx.save_for_backward(U, h_init)
            ctx.kernel_params = (decay, gain, thr, detach_reset, surrogate)
            ctx.has_h0 = h0 is not None
            ctx.shapes = [p if isinstance(p, torch.Tensor) else None
                          for p in (decay_p, gain_p, thr_p, vi_p)]
        return S, (U if want_u else x.new_empty(0)), h_last

    @staticmethod
    def backward(ctx, gS, gU, gH):  # type: ignore[override]
        U, h_init = ctx.saved_tensors
        decay, gain, thr, detach_reset, surrogate = ctx.kernel_params
        need_x, need_decay, need_gain, need_thr, need_vi, need_h0 = ctx.needs_input_grad[:6]
        # sigma'[t] in G, which becomes g_u[t] in place
        gS, gU, gH, G = backward_inputs(U, thr, surrogate, gS, gU, gH)
        zero = torch.zeros_like(U[0])
        acc_thr, acc_decay, acc_gain = zero.clone(), zero.clone(), zero.clone()
        g_next = None
        for t in range(U.shape[0] - 1, -1, -1):
            sg = G[t]
            g_s = gS[t]
            if g_next is not None and not detach_reset:
                g_s = g_s - g_next * thr
            acc_thr.sub_(g_s * sg)
            sg.mul_(g_s)
            if g_next is not None:
                sg.add_(g_next * decay)
            elif gH is not None:
                sg.add_(gH)
            if gU is not None:
                sg.add_(gU[t])
            h_prev = U[t - 1] if t > 0 else h_init
            r_prev = torch.ge(h_prev, thr).to(U.dtype)
            acc_thr.sub_(sg * r_prev)
            if need_decay:
                acc_decay.add_(sg * h_prev)
            if need_gain:  # gain x[t] = u[t] - decay h[t-1] + theta r[t]
                acc_gain.add_(sg * (U[t] - h_prev * decay + r_prev * thr))
            g_next = sg
        g0 = g_next if g_next is not None else zero
        g_init = g0 * decay
        if not detach_reset:
            sig0 = surrogate.derivative(h_init - thr)
            g_init = g_init - g0 * thr * sig0
            acc_thr.add_(g0 * thr * sig0)
        return _grads(ctx, G, gain, g_init, acc_decay, acc_gain, acc_thr,
                      (need_x, need_decay, need_gain, need_thr, need_vi, need_h0))


def _grads(ctx, G, gain, g_init, acc_decay, acc_gain, acc_thr, need) -> tuple:
    need_x, need_decay, need_gain, need_thr, need_vi, need_h0 = need
    p_decay, p_gain, p_thr, p_vi = ctx.shapes
    grads: list = [None] * 10
    if need_x:
        grads[0] = G * gain if isinstance(gain, torch.Tensor) or gain != 1.0 else G
    if need_decay:
        grads[1] = reduce_grad(acc_decay, p_decay)
    if need_gain:
        grads[2] = reduce_grad(acc_gain / gain, p_gain)
    if need_thr:
        grads[3] = reduce_grad(acc_thr, p_thr)
    if need_vi:  # v_init is used only without h0
        grads[4] = torch.zeros_like(p_vi) if ctx.has_h0 else reduce_grad(g_init, p_vi)
    if need_h0:
        grads[5] = g_init
    return tuple(grads)


def lif_subtract_after_decay(x: torch.Tensor, *, decay, gain, threshold, v_init, h0,
                             detach_reset: bool, surrogate: Surrogate, want_u: bool = True,
                             want_state: bool = True):
    """``(s, u, h_last)`` of the subtract-after-decay LIF (module docstring)."""
    return _FusedDelayed.apply(x, decay, gain, threshold, v_init, h0, bool(detach_reset),
                               surrogate, bool(want_u), bool(want_state))
