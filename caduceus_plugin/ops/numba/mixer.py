"""The training path of the Mamba mixer on CPU: everything between ``in_proj`` and ``out_proj``, channels-last, with
its own backward (numba kernels + torch matmuls), for one or several scan directions sharing one ``in_proj`` output.

The autograd path of :class:`caduceus_plugin.models.mamba.Mamba` moves every activation between the ``(b, l, c)``
layout of the projections and the ``(b, e, l)`` layout of the conv and the scan, and ``mamba_rev`` works on flipped
copies: under a backward pass those copies and their gradients cost more than the scan itself. Here the forward and
backward kernels read and write ``(b, l, c)`` rows directly, and a ``reverse`` flag walks the rows from last to first
instead of flipping (the layout of :mod:`caduceus_plugin.ops.numba.stream`, whose forward kernels this module
reuses, with the scan saving state checkpoints).

One call of :func:`mixer_inner_numba` computes, for ``xz`` (b, l, 2e) (``x`` in channels ``[0, e)``, the gate ``z``
in ``[e, 2e)``) and directions ``k`` with parameters ``P_k`` and flag ``reverse_k``,

    y = sum_k  rows_k( gate( scan( conv_silu(rows_k(x)), x_proj, dt_proj, A, D ), rows_k(z) ) )

where ``rows_k`` reverses the length axis when ``reverse_k`` is set: the tied BiMamba ``add`` strategy in one op,
the shared ``in_proj`` output read once and its gradient accumulated in place (no ``(b, l, 2e)`` sum per
direction). The exact function is :func:`caduceus_plugin.ops.mixer.mixer_inner_ref` (tests compare outputs and
gradients).

Backward, per direction in reverse order of the forward: the scan's adjoint kernel (states recomputed from the
checkpoints the forward saved every ``T`` steps, as in :mod:`caduceus_plugin.ops.numba.scan`) writes ``d x``,
``d delta`` and ``d z`` (the latter straight into ``d xz``), ``dB``/``dC`` into the ``x_proj`` output's gradient;
the two small projections' gradients are torch matmuls; the conv + SiLU backward kernel recomputes the
pre-activation and writes ``d x`` of the conv input into ``d xz``. Memory saved per direction: the ``x_proj``
output (``b * l * (r + 2n)`` floats) and the checkpoints (``b * e * l * n / T``); the conv output and ``delta``
are recomputed (a conv and an ``r``-deep matmul), and ``xz`` is saved once for all directions.

float32 inside. Under bf16 autocast ``xz`` arrives in bf16: it is widened once and its gradient returned in bf16.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from numba import prange
from torch.autograd.function import once_differentiable

from caduceus_plugin.ops.gemm import linear
from caduceus_plugin.ops.numba import stream
from caduceus_plugin.ops.numba.scan import _fwd_chunk, chunk_length
from caduceus_plugin.ops.numba.simd import (  # njit: numba's, with the cache keyed by every kernel's source
    JIT,
    LN2,
    ONE,
    SOFTPLUS_THRESHOLD,
    ZERO,
    W,
    add16,
    copy16,
    fill_lanes,
    kernel_threads,
    launch,
    log1p_small,
    n_blocks,
    njit,
    sigmoid_from,
    vexp,
    vexp2,
)

__all__ = ["PARAMS_PER_DIRECTION", "mixer_inner_numba"]

#: Tensors per direction, in this order: conv weight (e, 1, k), conv bias (e,) or None, x_proj weight
#: (r + 2n, e), dt_proj weight (e, r), dt_proj bias (e,), A_log (e, n), D (e,).
PARAMS_PER_DIRECTION = 7
_CONV_ROWS = 64  # rows per sub-block of the conv backward (its halo buffer)


# --------------------------------------------------------------------------------------------------------------------
# kernels


@njit(parallel=True, **JIT)
def _scan_bwd_kernel(  # type: ignore[no-untyped-def]
    x, delta, A, bc, b_off, D, bias, z, z_off, gy, ckpt, reverse, chunk, nblk,
    dx, ddelta, dz, dz_off, dz_acc, dA_p, dD_p, dbias_p, dbc_p,
):  # fmt: skip
    """Adjoint of the channels-last scan (softplus(delta + bias), recurrence from zero, ``D`` skip, ``silu(z)`` gate).

    ``x``, ``delta``, ``gy`` (b, l, e) float32; ``bc`` (b, l, *) with B at ``b_off`` and C after; ``z`` (b, l, *) with
    the gate at ``z_off``; ``ckpt`` (b, n_groups, n_checkpoints, n, W) as the forward saved it with
    ``ck_len == chunk``. Writes ``dx``, ``ddelta`` (b, l, e); ``dz`` (b, l, *) at ``dz_off`` (added to what is there
    when ``dz_acc``); per-task partials ``dbc_p`` (b, nblk, l, 2n) (dB then dC), per-row partials ``dA_p`` (b, e, n),
    ``dD_p``, ``dbias_p`` (b, e). Row order: scan step ``i`` is row ``l - 1 - i`` with ``reverse``.
    """
    nb, nl, ne = x.shape
    nn = A.shape[1]
    nz = z.shape[2]
    ndz = dz.shape[2]
    ngr = (ne + W - 1) // W
    nch = (nl + chunk - 1) // chunk
    ntask = nb * nblk
    gmax = (ngr + nblk - 1) // nblk
    GS = np.empty((ntask, gmax, nn, W), np.float32)  # adjoint carried into a chunk from the chunk after it
    AW = np.empty((ntask, gmax, nn, W), np.float32)
    PW = np.empty((ntask, gmax, 2, W), np.float32)  # D, delta_bias
    DAW = np.empty((ntask, gmax, nn, W), np.float32)  # dA accumulators
    PD = np.empty((ntask, gmax, 2, W), np.float32)  # dD, d delta_bias accumulators
    XB = np.empty((ntask, chunk, W), np.float32)  # x
    DB = np.empty((ntask, chunk, W), np.float32)  # delta, then dt
    UB = np.empty((ntask, chunk, W), np.float32)  # dt * x
    SG = np.empty((ntask, chunk, W), np.float32)  # d dt / d delta
    ZB = np.empty((ntask, chunk, W), np.float32)  # z
    GB = np.empty((ntask, chunk, W), np.float32)  # output gradient, then gradient of the scan output
    SB = np.empty((ntask, chunk, W), np.float32)  # scan output <C, h> (recomputed)
    SAB = np.empty((ntask, chunk, W), np.float32)  # sum_n G a h_prev A log2(e)
    SBB = np.empty((ntask, chunk, W), np.float32)  # sum_n G B
    DXO = np.empty((ntask, chunk, W), np.float32)
    DDO = np.empty((ntask, chunk, W), np.float32)
    DZO = np.empty((ntask, chunk, W), np.float32)
    BB = np.empty((ntask, nn, chunk), np.float32)  # B and C of the chunk in scan order, state index first
    CB = np.empty((ntask, nn, chunk), np.float32)
    AB = np.empty((ntask, chunk, nn, W), np.float32)  # exp(dt A) of the chunk
    HB = np.empty((ntask, chunk + 1, nn, W), np.float32)  # states: row 0 entering the chunk, row i + 1 after step i
    DBA = np.empty((ntask, chunk, nn, W), np.float32)  # dB of the chunk, per lane (summed over groups)
    DCA = np.empty((ntask, chunk, nn, W), np.float32)
    for task in prange(ntask):
        bi = task // nblk
        blk = task - bi * nblk
        g0 = blk * ngr // nblk
        g1 = (blk + 1) * ngr // nblk
        for gi in range(g1 - g0):
            c0 = (g0 + gi) * W
            fill_lanes(A, D, bias, True, True, c0, AW, PW, task, gi)
            for j in range(nn):
                for q in range(W):
                    GS[task, gi, j, q] = ZERO
                    DAW[task, gi, j, q] = ZERO
            for q in range(W):
                PD[task, gi, 0, q] = ZERO
                PD[task, gi, 1, q] = ZERO
        for cr in range(nch):
            c = nch - 1 - cr
            t0 = c * chunk
            lc = min(chunk, nl - t0)
            for i in range(lc):
                row = nl - 1 - (t0 + i) if reverse else t0 + i
                for j in range(nn):
                    BB[task, j, i] = bc[bi, row, b_off + j]
                    CB[task, j, i] = bc[bi, row, b_off + nn + j]
                    for q in range(W):
                        DBA[task, i, j, q] = ZERO
                        DCA[task, i, j, q] = ZERO
            for gi in range(g1 - g0):
                c0 = (g0 + gi) * W
                m = min(W, ne - c0)
                for i in range(lc):
                    row = nl - 1 - (t0 + i) if reverse else t0 + i
                    if m == W:
                        xo = (bi * nl + row) * ne + c0
                        so = (task * chunk + i) * W
                        copy16(x, xo, XB, so)
                        copy16(delta, xo, DB, so)
                        copy16(gy, xo, GB, so)
                        copy16(z, (bi * nl + row) * nz + z_off + c0, ZB, so)
                    else:  # a partial group: padding lanes read as 0
                        for q in range(W):
                            live = q < m
                            XB[task, i, q] = x[bi, row, c0 + q] if live else ZERO
                            DB[task, i, q] = delta[bi, row, c0 + q] if live else ZERO
                            GB[task, i, q] = gy[bi, row, c0 + q] if live else ZERO
                            ZB[task, i, q] = z[bi, row, z_off + c0 + q] if live else ZERO
                # step sizes and their derivative
                for i in range(lc):
                    for q in range(W):
                        v = DB[task, i, q] + PW[task, gi, 1, q]
                        ev = vexp(-abs(v))
                        sp = max(v, ZERO) + log1p_small(ev)
                        sg = sigmoid_from(v, ev)
                        small = v <= SOFTPLUS_THRESHOLD  # False for NaN, which then stays NaN
                        v = sp if small else v
                        DB[task, i, q] = v
                        SG[task, i, q] = sg if small else ONE
                        UB[task, i, q] = v * XB[task, i, q]
                # gate and skip: gradient of the scan output, dD, and dz up to its factor (s + D x)
                for i in range(lc):
                    for q in range(W):
                        zq = ZB[task, i, q]
                        sig = sigmoid_from(zq, vexp(-abs(zq)))
                        g = GB[task, i, q]
                        DZO[task, i, q] = g * sig * (ONE + zq * (ONE - sig))
                        gs = g * zq * sig
                        GB[task, i, q] = gs
                        PD[task, gi, 0, q] += gs * XB[task, i, q]
                # recompute the chunk's decays and states from its checkpoint; dC needs only the states
                for j in range(nn):
                    for q in range(W):
                        HB[task, 0, j, q] = ckpt[bi, g0 + gi, c, j, q]
                for i in range(lc):
                    for q in range(W):
                        SB[task, i, q] = ZERO
                    for j in range(nn):
                        bb = BB[task, j, i]
                        cc = CB[task, j, i]
                        for q in range(W):
                            a = vexp2(DB[task, i, q] * AW[task, gi, j, q])
                            AB[task, i, j, q] = a
                            hv = a * HB[task, i, j, q] + UB[task, i, q] * bb
                            HB[task, i + 1, j, q] = hv
                            SB[task, i, q] += cc * hv
                            DCA[task, i, j, q] += GB[task, i, q] * hv
                for i in range(lc):
                    for q in range(W):
                        DZO[task, i, q] *= SB[task, i, q] + PW[task, gi, 0, q] * XB[task, i, q]
                # adjoint recurrence, backwards through the chunk, and the gradients it feeds
                for ir_ in range(lc):
                    i = lc - 1 - ir_
                    for q in range(W):
                        SAB[task, i, q] = ZERO
                        SBB[task, i, q] = ZERO
                    for j in range(nn):
                        bb = BB[task, j, i]
                        cc = CB[task, j, i]
                        for q in range(W):
                            gq = GS[task, gi, j, q] + cc * GB[task, i, q]
                            a = AB[task, i, j, q]
                            DBA[task, i, j, q] += gq * UB[task, i, q]
                            SBB[task, i, q] += gq * bb
                            t = gq * a * HB[task, i, j, q]
                            SAB[task, i, q] += t * AW[task, gi, j, q]
                            DAW[task, gi, j, q] += t * DB[task, i, q]
                            GS[task, gi, j, q] = gq * a
                # input gradients
                for i in range(lc):
                    for q in range(W):
                        sbb = SBB[task, i, q]
                        DXO[task, i, q] = GB[task, i, q] * PW[task, gi, 0, q] + sbb * DB[task, i, q]
                        ddt = (sbb * XB[task, i, q] + SAB[task, i, q] * LN2) * SG[task, i, q]
                        DDO[task, i, q] = ddt
                        PD[task, gi, 1, q] += ddt
                for i in range(lc):
                    row = nl - 1 - (t0 + i) if reverse else t0 + i
                    if m == W:
                        xo = (bi * nl + row) * ne + c0
                        so = (task * chunk + i) * W
                        copy16(DXO, so, dx, xo)
                        copy16(DDO, so, ddelta, xo)
                        zo = (bi * nl + row) * ndz + dz_off + c0
                        if dz_acc:
                            add16(dz, zo, DZO, so)
                        copy16(DZO, so, dz, zo)
                    else:
                        for q in range(m):
                            dx[bi, row, c0 + q] = DXO[task, i, q]
                            ddelta[bi, row, c0 + q] = DDO[task, i, q]
                            v = DZO[task, i, q]
                            if dz_acc:
                                v += dz[bi, row, dz_off + c0 + q]
                            dz[bi, row, dz_off + c0 + q] = v
            # dB, dC of this chunk: sum over lanes (the groups were already summed into the lanes)
            for i in range(lc):
                row = nl - 1 - (t0 + i) if reverse else t0 + i
                for j in range(nn):
                    sb_ = ZERO
                    sc_ = ZERO
                    for q in range(W):
                        sb_ += DBA[task, i, j, q]
                        sc_ += DCA[task, i, j, q]
                    dbc_p[bi, blk, row, j] = sb_
                    dbc_p[bi, blk, row, nn + j] = sc_
        for gi in range(g1 - g0):
            c0 = (g0 + gi) * W
            for q in range(min(W, ne - c0)):
                for j in range(nn):
                    dA_p[bi, c0 + q, j] = DAW[task, gi, j, q]
                dD_p[bi, c0 + q] = PD[task, gi, 0, q]
                dbias_p[bi, c0 + q] = PD[task, gi, 1, q]


@njit(parallel=True, **JIT)
def _conv_bwd_kernel(x, wt, bias, gout, reverse, nblk, dx, dx_acc, dw_p, db_p):  # type: ignore[no-untyped-def]
    """Backward of ``out = silu(bias + sum_k wt[k] * xin(i - k1 + k))`` (channels-last causal depthwise conv + SiLU,
    zero context; step ``i`` is row ``i``, or ``t - 1 - i`` with ``reverse``).

    ``x`` (b, t, *) the conv input in channels ``[0, e)``; ``wt`` (k, e); ``gout`` (b, t, e) the output gradient.
    Writes ``dx`` (b, t, *) channels ``[0, e)`` (added to what is there when ``dx_acc``) and per-task partials
    ``dw_p`` (b * nblk, k, e), ``db_p`` (b * nblk, e). Each task owns a block of steps and recomputes the
    pre-activation gradient of the ``k - 1`` steps after it (its halo) rather than sharing it.
    """
    nb, nt, ne = gout.shape
    nk = wt.shape[0]
    k1 = nk - 1
    rows = (nt + nblk - 1) // nblk
    ntask = nb * nblk
    GV = np.empty((ntask, _CONV_ROWS + k1, ne), np.float32)  # pre-activation gradient of a sub-block + halo
    VB = np.empty((ntask, ne), np.float32)
    for task in prange(ntask):
        bi = task // nblk
        i0 = (task - bi * nblk) * rows
        i1 = min(nt, i0 + rows)
        for k in range(nk):
            for c in range(ne):
                dw_p[task, k, c] = ZERO
        for c in range(ne):
            db_p[task, c] = ZERO
        for s0 in range(i0, i1, _CONV_ROWS):
            s1 = min(i1, s0 + _CONV_ROWS)
            h1 = min(nt, s1 + k1)
            for i in range(s0, h1):
                orow = nt - 1 - i if reverse else i
                for c in range(ne):
                    VB[task, c] = bias[c]
                for k in range(nk):
                    j = i - k1 + k
                    if j >= 0:
                        r = nt - 1 - j if reverse else j
                        for c in range(ne):
                            VB[task, c] += wt[k, c] * x[bi, r, c]
                for c in range(ne):
                    v = VB[task, c]
                    s = sigmoid_from(v, vexp(-abs(v)))
                    GV[task, i - s0, c] = gout[bi, orow, c] * s * (ONE + v * (ONE - s))
                if i < s1:
                    for c in range(ne):
                        db_p[task, c] += GV[task, i - s0, c]
                    for k in range(nk):
                        j = i - k1 + k
                        if j >= 0:
                            r = nt - 1 - j if reverse else j
                            for c in range(ne):
                                dw_p[task, k, c] += GV[task, i - s0, c] * x[bi, r, c]
            for j in range(s0, s1):  # d xin(j) = sum_k wt[k] * gv(j + k1 - k)
                r = nt - 1 - j if reverse else j
                for c in range(ne):
                    VB[task, c] = dx[bi, r, c] if dx_acc else ZERO
                for k in range(nk):
                    i = j + k1 - k
                    if i < nt:
                        for c in range(ne):
                            VB[task, c] += wt[k, c] * GV[task, i - s0, c]
                for c in range(ne):
                    dx[bi, r, c] = VB[task, c]


# --------------------------------------------------------------------------------------------------------------------
# torch glue


def _f32c(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous()


def _conv_forward(xz: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, reverse: bool) -> torch.Tensor:
    """conv + SiLU of channels ``[0, e)`` of ``xz`` (b, l, 2e) float32, from zero context: (b, l, e) float32."""
    e = weight.shape[0]
    b, l, _ = xz.shape
    wt = _f32c(weight.reshape(e, -1).t())
    bf = _f32c(bias) if bias is not None else torch.zeros(e)
    out = torch.empty(b, l, e)
    kernel_threads()
    launch(stream._conv_kernel, xz.numpy(), wt.numpy(), bf.numpy(), np.zeros((b, wt.shape[0] - 1, e), np.float32),
           out.numpy(), reverse)  # fmt: skip
    return out


def _scan_forward(
    xc: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    xdbl: torch.Tensor,
    r: int,
    D: torch.Tensor,
    dt_bias: torch.Tensor,
    xz: torch.Tensor,
    reverse: bool,
    acc: torch.Tensor | None,
    save: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gated scan output (b, l, e) (+ ``acc``) and the state checkpoints (or a dummy when not ``save``)."""
    b, l, e = xc.shape
    n = A.shape[1]
    ck_len = chunk_length(n)
    nblk = n_blocks(b, e, kernel_threads())
    ngr = (e + W - 1) // W
    ckpt = torch.empty(b, ngr, (l + ck_len - 1) // ck_len, n, W) if save else torch.zeros(1, 1, 1, 1, 1)
    out = torch.empty(b, l, e)
    launch(
        stream._scan_kernel,
        xc.numpy(), delta.numpy(), A.numpy(), xdbl.numpy(), r, D.numpy(), dt_bias.numpy(), xz.numpy(), e,
        stream._NO_STATE if acc is None else acc.numpy(), acc is not None, out.numpy(), reverse, nblk,
        stream._NO_STATE, False, np.empty((b, e, n), np.float32), ckpt.numpy(), save, _fwd_chunk(ck_len), ck_len,
    )  # fmt: skip
    return out, ckpt


def _direction(params: Sequence[torch.Tensor | None]) -> tuple[torch.Tensor, ...]:
    """float32 contiguous views of one direction's parameters, A = -exp(A_log) computed."""
    conv_w, conv_b, wx, wdt, bdt, A_log, D = params
    e = conv_w.shape[0]
    cb = _f32c(conv_b) if conv_b is not None else torch.zeros(e)
    A = -torch.exp(_f32c(A_log))
    return _f32c(conv_w), cb, _f32c(wx), _f32c(wdt), _f32c(bdt), A, _f32c(D)  # type: ignore[arg-type]


def _forward(
    xz: torch.Tensor, params: Sequence[torch.Tensor | None], reverses: tuple[bool, ...], save: bool
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The op's value (b, l, e) float32 and, with ``save``, what the backward needs: ``[xz, (xc, xdbl, delta, ckpt)
    per direction]``."""
    xzf = _f32c(xz)
    y = None
    saved: list[torch.Tensor] = [xzf]
    with torch.autocast("cpu", enabled=False):  # the small projections stay float32 (bf16 autocast: the scan's input)
        for k, reverse in enumerate(reverses):
            y = _direction_forward(xzf, params, k, reverse, y, save, saved)
    assert y is not None
    return y, saved


def _direction_forward(
    xzf: torch.Tensor,
    params: Sequence[torch.Tensor | None],
    k: int,
    reverse: bool,
    acc: torch.Tensor | None,
    save: bool,
    saved: list[torch.Tensor],
) -> torch.Tensor:
    """Direction ``k``: conv, the two small projections, the scan (+ ``acc``); appends what its backward needs."""
    b, l, _ = xzf.shape
    cw, cb, wx, wdt, bdt, A, D = _direction(params[k * PARAMS_PER_DIRECTION : (k + 1) * PARAMS_PER_DIRECTION])
    r = wdt.shape[1]
    xc = _conv_forward(xzf, cw, cb, reverse)
    xdbl = linear(xc.view(b * l, -1), wx).view(b, l, -1)
    delta = linear(xdbl.view(b * l, -1)[:, :r], wdt).view(b, l, -1)
    y, ckpt = _scan_forward(xc, delta, A, xdbl, r, D, bdt, xzf, reverse, acc, save)
    if save:  # the conv output and delta are recomputed in the backward: (b, l, e) each, a few % of the time
        saved += [xdbl, ckpt]
    return y


def _project(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype | None
) -> torch.Tensor:
    """``in_proj`` as float32 ``(b, l, 2e)``: the product in ``dtype`` (bf16 under autocast) or float32."""
    with torch.autocast("cpu", enabled=False):
        if dtype is not None:
            y = F.linear(x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype))
        else:
            y = linear(x.float(), weight.float(), None if bias is None else bias.float())
    return y.float().contiguous()


class _MixerInner(torch.autograd.Function):
    """``x`` is ``xz`` itself, or with ``w_in`` given the ``in_proj`` input ``u`` (b, l, d): then ``xz = u W^T + b``
    is computed here and recomputed in the backward instead of being kept (the largest activation of a layer,
    ``2e`` floats per position, for one matmul)."""

    @staticmethod
    def forward(ctx, reverses, x, w_in, b_in, *params):  # type: ignore[no-untyped-def, override]
        project = w_in is not None
        mm_dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        xz = _project(x, w_in, b_in, mm_dtype) if project else x
        y, saved = _forward(xz, params, reverses, save=True)
        if project:
            saved[0] = x.detach()
        ctx.reverses, ctx.project, ctx.mm_dtype, ctx.in_dtype = reverses, project, mm_dtype, x.dtype
        ctx.param_meta = [(p is None, None if p is None else p.dtype) for p in (w_in, b_in, *params)]
        ctx.save_for_backward(*saved, *(p if p is not None else torch.empty(0) for p in (w_in, b_in, *params)))
        return y.to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: torch.Tensor):  # type: ignore[no-untyped-def, override]
        reverses = ctx.reverses
        nd = len(reverses)
        tensors = ctx.saved_tensors
        acts = tensors[1 : 1 + 2 * nd]
        w_in, b_in, *params = [
            None if absent else t for t, (absent, _) in zip(tensors[1 + 2 * nd :], ctx.param_meta, strict=True)
        ]
        u = tensors[0] if ctx.project else None
        xzf = _project(u, w_in, b_in, ctx.mm_dtype) if ctx.project else tensors[0]
        b, l, e2 = xzf.shape
        e = e2 // 2
        gyf = _f32c(gy)
        dxz = torch.empty(b, l, e2)
        threads = kernel_threads()
        grads: list[torch.Tensor | None] = []
        for k in range(nd):  # the first direction writes d xz, the others add to it
            reverse = reverses[k]
            xdbl, ckpt = acts[2 * k : 2 * k + 2]
            raw = params[k * PARAMS_PER_DIRECTION : (k + 1) * PARAMS_PER_DIRECTION]
            cw, cb, wx, wdt, bdt, A, D = _direction(raw)
            r = wdt.shape[1]
            xc = _conv_forward(xzf, cw, cb, reverse)
            delta = linear(xdbl.view(b * l, -1)[:, :r], wdt).view(b, l, -1)
            n = A.shape[1]
            nblk = n_blocks(b, e, threads)
            dxc = torch.empty(b, l, e)
            ddelta = torch.empty(b, l, e)
            dA_p = torch.empty(b, e, n)
            dD_p = torch.empty(b, e)
            dbias_p = torch.empty(b, e)
            dbc_p = torch.empty(b, nblk, l, 2 * n)
            launch(
                _scan_bwd_kernel,
                xc.numpy(), delta.numpy(), A.numpy(), xdbl.numpy(), r, D.numpy(), bdt.numpy(), xzf.numpy(), e,
                gyf.numpy(), ckpt.numpy(), reverse, chunk_length(n), nblk, dxc.numpy(), ddelta.numpy(), dxz.numpy(),
                e, k > 0, dA_p.numpy(), dD_p.numpy(), dbias_p.numpy(), dbc_p.numpy(),
            )  # fmt: skip
            dbc = dbc_p.sum(1) if nblk > 1 else dbc_p[:, 0]
            dd2 = ddelta.view(b * l, e)
            # products g W as linears with weight W^T (oneDNN where it is faster), weight gradients g^T x as mm
            dxdbl = torch.cat([linear(dd2, wdt.t().contiguous()), dbc.reshape(b * l, 2 * n)], dim=1)  # (b l, r + 2n)
            dwdt = dd2.t() @ xdbl.view(b * l, -1)[:, :r]
            xc2 = xc.view(b * l, e)
            dwx = dxdbl.t() @ xc2
            dxc.view(b * l, e).add_(linear(dxdbl, wx.t().contiguous()))
            # conv + SiLU backward into d xz[..., :e]
            cblk = max(1, min((l + 15) // 16, -(-4 * threads // b)))  # time blocks per batch row
            k_w = cw.shape[-1]
            dw_p = torch.empty(b * cblk, k_w, e)
            db_p = torch.empty(b * cblk, e)
            wt = cw.reshape(e, k_w).t().contiguous()
            launch(_conv_bwd_kernel, xzf.numpy(), wt.numpy(), cb.numpy(), dxc.numpy(), reverse, cblk, dxz.numpy(),
                   k > 0, dw_p.numpy(), db_p.numpy())  # fmt: skip
            dcw = dw_p.sum(0).t().reshape(e, 1, k_w)
            dcb = db_p.sum(0)
            grads += [dcw, dcb, dwx, dwdt, dbias_p.sum(0), dA_p.sum(0) * A, dD_p.sum(0)]
        dx = dxz
        if ctx.project:  # in_proj's backward: d u, d W, d bias from d xz
            d2 = dxz.view(b * l, e2)
            w = w_in.float() if ctx.mm_dtype is None else w_in.to(ctx.mm_dtype).float()
            dx = linear(d2, w.t().contiguous()).view(b, l, -1)
            grads = [d2.t() @ u.reshape(b * l, -1).float(), d2.sum(0) if b_in is not None else None, *grads]
        else:
            grads = [None, None, *grads]
        out: list[torch.Tensor | None] = []
        for g, (absent, dtype), need in zip(grads, ctx.param_meta, ctx.needs_input_grad[2:], strict=True):
            out.append(None if (absent or not need) else g.to(dtype))  # type: ignore[union-attr]
        return (None, dx.to(ctx.in_dtype) if ctx.needs_input_grad[1] else None, *out)


def mixer_inner_numba(
    xz: torch.Tensor,
    directions: Sequence[Sequence[torch.Tensor | None]],
    reverses: Sequence[bool],
    in_proj: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Sum over directions of the gated scan output, channels-last, differentiable (see the module docstring).

    Args:
        xz: (b, l, 2e) the ``in_proj`` output (``x`` then the gate ``z``), CPU, any float dtype; with ``in_proj``
            the projection's input ``u`` (b, l, d) instead (any strides).
        directions: per direction the :data:`PARAMS_PER_DIRECTION` tensors (conv weight, conv bias or None,
            x_proj weight, dt_proj weight, dt_proj bias, A_log, D).
        reverses: per direction, scan from the last row to the first.
        in_proj: ``(weight (2e, d), bias (2e,) or None)``: apply the projection inside the op, which then keeps
            ``u`` instead of ``xz`` for the backward and recomputes ``xz`` there (bf16 under CPU autocast).

    Returns:
        (b, l, e) in the input's dtype.
    """
    flat = [t for d in directions for t in d]
    flags = tuple(bool(r) for r in reverses)
    if len(flat) != PARAMS_PER_DIRECTION * len(flags) or not flags:
        raise ValueError(f"expected {PARAMS_PER_DIRECTION} tensors per direction and one reverse flag per direction")
    w_in, b_in = in_proj if in_proj is not None else (None, None)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (xz, w_in, b_in, *flat)):
        return _MixerInner.apply(flags, xz, w_in, b_in, *flat)
    if w_in is not None:
        mm_dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        y, _ = _forward(_project(xz, w_in, b_in, mm_dtype), flat, flags, save=False)
    else:
        y, _ = _forward(xz, flat, flags, save=False)
    return y.to(xz.dtype)
