"""Selective scan on CPU with fused numba kernels (forward and backward), memory O(b*e*l).

Same contract as :func:`caduceus_plugin.ops.scan.selective_scan_ref` (shapes, float32 math inside, output in
``x.dtype``) for non-empty input; :func:`caduceus_plugin.ops.scan.selective_scan` handles empty input itself before
it dispatches here. The whole op runs in two kernels, softplus(delta + delta_bias), the ``D`` skip and the
``silu(z)`` gate included; :func:`selective_scan_numba` is differentiable w.r.t. every tensor argument.

Layout. Channels are processed in groups of ``W = 16`` lanes (see :mod:`caduceus_plugin.ops.numba.simd`): the state
update for one state index and one time step is a single 16-wide vector operation with no horizontal reduction, and
the output ``y = <C, h>`` accumulates in a register over the state index. Time is staged in chunks: for each chunk
and group, ``x``, ``delta``, ``z`` (and the output gradient) are transposed into small ``(T, W)`` buffers, all
per-step work happens there, and results are transposed back.

Parallelism. ``prange`` runs over (batch row, block of channel groups) tasks; every task owns its channels, so the
forward has no shared writes. The backward's ``dB``/``dC`` (sums over channels) go to per-task partial buffers
``(b, n_blocks, l, n)`` (``n_blocks`` <= threads) summed in torch, ``dA``, ``dD``, ``d delta_bias`` to per-batch-row
partials. numba's thread count follows ``torch.get_num_threads()``.

Memory. The forward keeps only the state (``n x W`` per group); when a backward will follow it also saves the state
every ``T = chunk_length(n)`` steps (``b * e * l * n / T`` floats, ``T * n ~ 2048``: an eighth of ``x`` for n = 16).
The backward walks these intervals in reverse, recomputes each one's decays and states from its checkpoint into
L2-resident ``(T, n, W)`` buffers and runs the adjoint recurrence through them. Nothing of size ``b * e * l * n`` is
ever allocated.

exp. ``b * e * l * n`` of them make it the cost centre: the kernels use the vectorisable float32 ``exp``/``2**t`` of
:mod:`caduceus_plugin.ops.numba.simd` (:func:`exp_f32` / :func:`exp2_f32` apply them to tensors).

All per-task scratch is allocated outside the parallel loop and indexed with scalar indices only (no array views
inside the loop): numba then marks the loop body's array pointers ``noalias`` and LLVM vectorises the 16-lane loops
without runtime overlap checks.

numba is imported at this module's import; nothing else in the package imports this module at import time. Kernels
are compiled on first use (~20 s) and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import prange
from torch.autograd.function import once_differentiable

from caduceus_plugin.ops.numba.simd import (  # njit: numba's, with the cache keyed by every kernel's source
    JIT,
    LN2,
    ONE,
    SOFTPLUS_THRESHOLD,
    ZERO,
    W,
    exp2_f32,
    exp_f32,
    fill_lanes,
    kernel_threads,
    launch,
    load_tile,
    log1p_small,
    n_blocks,
    njit,
    prefetch_tile,
    recur_step,
    recur_step4,
    sigmoid_from,
    store_tile,
    vexp,
    vexp2,
)

__all__ = ["chunk_length", "exp2_f32", "exp_f32", "selective_scan_numba"]


# --------------------------------------------------------------------------------------------------------------------
# kernels
#
# Shapes (all float32, C-contiguous): x, delta, out, gy, dx, ddelta, dz (b, e, l); A (e, n); Bt, Ct (b, l, n);
# D, bias (e,) (or dummies when absent); z (b, e, l) (or a dummy); ckpt (b, n_groups, n_checkpoints, n, W): the
# state entering steps 0, ck_len, 2 ck_len, ... The forward stages ``chunk`` steps at a time (a multiple of ck_len,
# longer bursts per row read better); the backward works one checkpoint interval at a time.
# Inside the prange loops arrays are only ever indexed with scalars (no views), see the module docstring.


@njit(parallel=True, **JIT)
def _fwd_kernel(  # type: ignore[no-untyped-def]
    x, delta, A, Bt, Ct, D, z, bias, out, ckpt, has_D, has_z, has_bias, softplus, save, chunk, ck_len, nblk,
):  # fmt: skip
    nb, ne, nl = x.shape
    nn = A.shape[1]
    ngr = (ne + W - 1) // W
    nch = (nl + chunk - 1) // chunk
    ntask = nb * nblk
    gmax = (ngr + nblk - 1) // nblk
    HS = np.empty((ntask, gmax, nn, W), np.float32)  # state of each group
    AW = np.empty((ntask, gmax, nn, W), np.float32)  # A in lane layout (zero in padding lanes)
    PW = np.empty((ntask, gmax, 2, W), np.float32)  # D and delta_bias in lane layout
    XB = np.empty((ntask, chunk, W), np.float32)  # x
    DB = np.empty((ntask, chunk, W), np.float32)  # delta, then dt
    UB = np.empty((ntask, chunk, W), np.float32)  # dt * x
    ZB = np.empty((ntask, chunk, W), np.float32)  # z
    YB = np.empty((ntask, chunk, W), np.float32)  # output
    BB = np.empty((ntask, nn, chunk), np.float32)  # B and C of the chunk in scan order, state index first
    CB = np.empty((ntask, nn, chunk), np.float32)
    for task in prange(ntask):
        bi = task // nblk
        blk = task - bi * nblk
        g0 = blk * ngr // nblk
        g1 = (blk + 1) * ngr // nblk
        for gi in range(g1 - g0):
            c0 = (g0 + gi) * W
            fill_lanes(A, D, bias, has_D, has_bias, c0, AW, PW, task, gi)
            for j in range(nn):
                for q in range(W):
                    HS[task, gi, j, q] = ZERO
        for c in range(nch):
            t0 = c * chunk
            lc = min(chunk, nl - t0)
            for i in range(lc):
                for j in range(nn):
                    BB[task, j, i] = Bt[bi, t0 + i, j]
                    CB[task, j, i] = Ct[bi, t0 + i, j]
            for gi in range(g1 - g0):
                c0 = (g0 + gi) * W
                m = min(W, ne - c0)
                load_tile(x, bi, c0, t0, m, lc, XB, task)
                load_tile(delta, bi, c0, t0, m, lc, DB, task)
                if has_z:
                    load_tile(z, bi, c0, t0, m, lc, ZB, task)
                if c + 1 < nch:
                    tn = t0 + chunk
                    ln = min(chunk, nl - tn)
                    prefetch_tile(x, bi, c0, tn, m, ln)
                    prefetch_tile(delta, bi, c0, tn, m, ln)
                    if has_z:
                        prefetch_tile(z, bi, c0, tn, m, ln)
                # step sizes
                if softplus:
                    for i in range(lc):
                        for q in range(W):
                            v = DB[task, i, q] + PW[task, gi, 1, q]
                            sp = max(v, ZERO) + log1p_small(vexp(-abs(v)))
                            v = sp if v <= SOFTPLUS_THRESHOLD else v  # NaN stays NaN
                            DB[task, i, q] = v
                            UB[task, i, q] = v * XB[task, i, q]
                else:
                    for i in range(lc):
                        for q in range(W):
                            v = DB[task, i, q] + PW[task, gi, 1, q]
                            DB[task, i, q] = v
                            UB[task, i, q] = v * XB[task, i, q]
                # the recurrence: 16 channels per vector. State index outermost: one state vector lives in a
                # register through the whole chunk (a single FMA chain per step), the output accumulates in YB
                for i in range(lc):
                    for q in range(W):
                        YB[task, i, q] = ZERO
                # four state indices per pass (see recur_step4), then the rest one by one
                for j in range(0, nn - 3, 4):
                    if save:  # the state entering every ck_len-th step is kept for the backward
                        for s0 in range(0, lc, ck_len):  # chunk is a multiple of ck_len: s0 is a checkpoint step
                            for jj in range(j, j + 4):
                                for q in range(W):
                                    ckpt[bi, g0 + gi, (t0 + s0) // ck_len, jj, q] = HS[task, gi, jj, q]
                            for i in range(s0, min(s0 + ck_len, lc)):
                                recur_step4(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i)
                    else:  # the same loop from 0: numba then knows i >= 0 and indexes without wraparound fixes
                        for i in range(lc):
                            recur_step4(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i)
                for j in range(nn - nn % 4, nn):
                    if save:
                        for s0 in range(0, lc, ck_len):
                            for q in range(W):
                                ckpt[bi, g0 + gi, (t0 + s0) // ck_len, j, q] = HS[task, gi, j, q]
                            for i in range(s0, min(s0 + ck_len, lc)):
                                recur_step(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i)
                    else:
                        for i in range(lc):
                            recur_step(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i)
                # D skip and gate
                if has_z:
                    for i in range(lc):
                        for q in range(W):
                            zq = ZB[task, i, q]
                            y = YB[task, i, q] + PW[task, gi, 0, q] * XB[task, i, q]
                            YB[task, i, q] = y * zq * sigmoid_from(zq, vexp(-abs(zq)))
                elif has_D:
                    for i in range(lc):
                        for q in range(W):
                            YB[task, i, q] += PW[task, gi, 0, q] * XB[task, i, q]
                store_tile(YB, task, out, bi, c0, t0, m, lc)


@njit(parallel=True, **JIT)
def _bwd_kernel(  # type: ignore[no-untyped-def]
    x,
    delta,
    A,
    Bt,
    Ct,
    D,
    z,
    bias,
    gy,
    ckpt,
    dx_out,
    ddelta_out,
    dz_out,
    dA_p,
    dD_p,
    dbias_p,
    dB_p,
    dC_p,
    has_D,
    has_z,
    has_bias,
    softplus,
    chunk,
    nblk,
):
    nb, ne, nl = x.shape
    nn = A.shape[1]
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
    SAB = np.empty((ntask, chunk, W), np.float32)  # sum_n G a h_prev A log2(e)  (d loss / d dt via the decay)
    SBB = np.empty((ntask, chunk, W), np.float32)  # sum_n G B            (d loss / d (dt x))
    DXO = np.empty((ntask, chunk, W), np.float32)
    DDO = np.empty((ntask, chunk, W), np.float32)
    DZO = np.empty((ntask, chunk, W), np.float32)
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
            fill_lanes(A, D, bias, has_D, has_bias, c0, AW, PW, task, gi)
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
                for j in range(nn):
                    for q in range(W):
                        DBA[task, i, j, q] = ZERO
                        DCA[task, i, j, q] = ZERO
            for gi in range(g1 - g0):
                c0 = (g0 + gi) * W
                m = min(W, ne - c0)
                load_tile(x, bi, c0, t0, m, lc, XB, task)
                load_tile(delta, bi, c0, t0, m, lc, DB, task)
                load_tile(gy, bi, c0, t0, m, lc, GB, task)
                if has_z:
                    load_tile(z, bi, c0, t0, m, lc, ZB, task)
                if c > 0:
                    tn = t0 - chunk
                    prefetch_tile(x, bi, c0, tn, m, chunk)
                    prefetch_tile(delta, bi, c0, tn, m, chunk)
                    prefetch_tile(gy, bi, c0, tn, m, chunk)
                    if has_z:
                        prefetch_tile(z, bi, c0, tn, m, chunk)
                # step sizes and their derivative
                if softplus:
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
                else:
                    for i in range(lc):
                        for q in range(W):
                            v = DB[task, i, q] + PW[task, gi, 1, q]
                            DB[task, i, q] = v
                            SG[task, i, q] = ONE
                            UB[task, i, q] = v * XB[task, i, q]
                # gate and skip: gradient of the scan output (gs), dD, and dz up to its factor (s + D x)
                if has_z:
                    for i in range(lc):
                        for q in range(W):
                            zq = ZB[task, i, q]
                            sig = sigmoid_from(zq, vexp(-abs(zq)))
                            g = GB[task, i, q]
                            DZO[task, i, q] = g * sig * (ONE + zq * (ONE - sig))
                            gs = g * zq * sig
                            GB[task, i, q] = gs
                            PD[task, gi, 0, q] += gs * XB[task, i, q]
                else:
                    for i in range(lc):
                        for q in range(W):
                            PD[task, gi, 0, q] += GB[task, i, q] * XB[task, i, q]
                # recompute the chunk's decays and states from its checkpoint; dC needs only the states
                for j in range(nn):
                    for q in range(W):
                        HB[task, 0, j, q] = ckpt[bi, g0 + gi, c, j, q]
                for i in range(lc):
                    for q in range(W):
                        SB[task, i, q] = ZERO
                    for j in range(nn):
                        bb = Bt[bi, t0 + i, j]
                        cc = Ct[bi, t0 + i, j]
                        for q in range(W):
                            a = vexp2(DB[task, i, q] * AW[task, gi, j, q])
                            AB[task, i, j, q] = a
                            hv = a * HB[task, i, j, q] + UB[task, i, q] * bb
                            HB[task, i + 1, j, q] = hv
                            SB[task, i, q] += cc * hv
                            DCA[task, i, j, q] += GB[task, i, q] * hv
                if has_z:
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
                        bb = Bt[bi, t0 + i, j]
                        cc = Ct[bi, t0 + i, j]
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
                store_tile(DXO, task, dx_out, bi, c0, t0, m, lc)
                store_tile(DDO, task, ddelta_out, bi, c0, t0, m, lc)
                if has_z:
                    store_tile(DZO, task, dz_out, bi, c0, t0, m, lc)
            # dB, dC of this chunk: sum over lanes (the groups were already summed into the lanes)
            for i in range(lc):
                for j in range(nn):
                    sb_ = ZERO
                    sc_ = ZERO
                    for q in range(W):
                        sb_ += DBA[task, i, j, q]
                        sc_ += DCA[task, i, j, q]
                    dB_p[bi, blk, t0 + i, j] = sb_
                    dC_p[bi, blk, t0 + i, j] = sc_
        for gi in range(g1 - g0):
            c0 = (g0 + gi) * W
            for q in range(min(W, ne - c0)):
                for j in range(nn):
                    dA_p[bi, c0 + q, j] = DAW[task, gi, j, q]
                dD_p[bi, c0 + q] = PD[task, gi, 0, q]
                dbias_p[bi, c0 + q] = PD[task, gi, 1, q]


# --------------------------------------------------------------------------------------------------------------------
# torch glue


def chunk_length(n: int) -> int:
    """Steps between checkpoints (the backward's chunk): a multiple of 16 with ``T * n ~ 2048``, so that the
    backward's per-chunk buffers (four of ``T x n x 16`` floats) stay in L2; checkpoints cost ``b * e * l * n / T``
    floats (``b * e * l / 8`` for n = 16)."""
    return int(min(256, max(16, (2048 // max(n, 1)) // 16 * 16)))


def _fwd_chunk(ck_len: int) -> int:
    """Steps staged at a time by the forward: a multiple of the checkpoint interval, at least 256."""
    return ck_len * max(1, 256 // ck_len)


def _f32c(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous()


def _dummy(*shape: int) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.float32)


def _forward(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    save: bool,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    b, e, l = x.shape
    n = A.shape[1]
    ck_len = chunk_length(n)
    nblk = n_blocks(b, e, kernel_threads())
    xf, df, Af = _f32c(x), _f32c(delta), _f32c(A)
    Bt = B.detach().to(torch.float32).transpose(1, 2).contiguous()  # (b, l, n): a time step's n values adjacent
    Ct = C.detach().to(torch.float32).transpose(1, 2).contiguous()
    Df = _f32c(D) if D is not None else _dummy(1)
    zf = _f32c(z) if z is not None else _dummy(1, 1, 1)
    bf = _f32c(delta_bias) if delta_bias is not None else _dummy(1)
    ngr = (e + W - 1) // W
    nck = (l + ck_len - 1) // ck_len
    ckpt = torch.empty(b, ngr, nck, n, W) if save else _dummy(1, 1, 1, 1, 1)
    out = torch.empty(b, e, l)
    launch(
        _fwd_kernel,
        xf.numpy(), df.numpy(), Af.numpy(), Bt.numpy(), Ct.numpy(), Df.numpy(), zf.numpy(), bf.numpy(), out.numpy(),
        ckpt.numpy(), D is not None, z is not None, delta_bias is not None, bool(delta_softplus), save,
        _fwd_chunk(ck_len), ck_len, nblk,
    )  # fmt: skip
    return out.to(x.dtype), (xf, df, Af, Bt, Ct, Df, zf, bf, ckpt)


class _SelectiveScanNumba(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: torch.Tensor,
        delta: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        D: torch.Tensor | None,
        z: torch.Tensor | None,
        delta_bias: torch.Tensor | None,
        delta_softplus: bool,
    ) -> torch.Tensor:
        out, saved = _forward(x, delta, A, B, C, D, z, delta_bias, delta_softplus, save=True)
        ctx.save_for_backward(*saved)
        ctx.flags = (D is not None, z is not None, delta_bias is not None, bool(delta_softplus))
        ctx.dtypes = tuple(None if t is None else t.dtype for t in (x, delta, A, B, C, D, z, delta_bias))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: torch.Tensor):  # type: ignore[no-untyped-def, override]
        x, delta, A, Bt, Ct, D, z, bias, ckpt = ctx.saved_tensors
        has_D, has_z, has_bias, softplus = ctx.flags
        b, e, l = x.shape
        n = A.shape[1]
        chunk = chunk_length(n)
        nblk = n_blocks(b, e, kernel_threads())
        gyf = _f32c(gy)
        dx = torch.empty_like(x)
        ddelta = torch.empty_like(x)
        dz = torch.empty_like(x) if has_z else _dummy(1, 1, 1)
        dA_p = torch.empty(b, e, n)
        dD_p = torch.empty(b, e)
        dbias_p = torch.empty(b, e)
        dB_p = torch.empty(b, nblk, l, n)
        dC_p = torch.empty(b, nblk, l, n)
        launch(
            _bwd_kernel,
            x.numpy(), delta.numpy(), A.numpy(), Bt.numpy(), Ct.numpy(), D.numpy(), z.numpy(), bias.numpy(),
            gyf.numpy(), ckpt.numpy(), dx.numpy(), ddelta.numpy(), dz.numpy(), dA_p.numpy(), dD_p.numpy(),
            dbias_p.numpy(), dB_p.numpy(), dC_p.numpy(), has_D, has_z, has_bias, softplus, chunk, nblk,
        )  # fmt: skip
        dB = (dB_p.sum(1) if nblk > 1 else dB_p[:, 0]).transpose(1, 2)
        dC = (dC_p.sum(1) if nblk > 1 else dC_p[:, 0]).transpose(1, 2)
        grads = (
            dx,
            ddelta,
            dA_p.sum(0),
            dB,
            dC,
            dD_p.sum(0) if has_D else None,
            dz if has_z else None,
            dbias_p.sum(0) if has_bias else None,
        )
        result = []
        for g, dtype, need in zip(grads, ctx.dtypes, ctx.needs_input_grad[:8], strict=True):
            result.append(g.to(dtype) if (g is not None and need) else None)
        return (*result, None)


def selective_scan_numba(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
) -> torch.Tensor:
    """Selective scan with fused numba CPU kernels; same semantics as ``selective_scan_ref``, differentiable.

    Args:
        x, delta: (b, e, l); A: (e, n); B, C: (b, n, l); D, delta_bias: (e,); z: (b, e, l). Any float dtype, any
            strides; CPU tensors only; b, e, l, n all positive. Computed in float32.
        delta_softplus: apply softplus to ``delta + delta_bias``.

    Returns:
        (b, e, l) in ``x.dtype``.

    Raises:
        ValueError: non-CPU tensors, mismatched shapes, or a zero-size dimension (empty input is answered by
            :func:`caduceus_plugin.ops.scan.selective_scan` before it dispatches to a backend).
    """
    tensors = (x, delta, A, B, C, D, z, delta_bias)
    if any(t is not None and t.device.type != "cpu" for t in tensors):
        raise ValueError("selective_scan_numba runs on CPU tensors only")
    if x.dim() != 3 or A.dim() != 2 or B.dim() != 3 or C.dim() != 3:
        raise ValueError(
            f"expected x (b, e, l), A (e, n), B and C (b, n, l); got {tuple(x.shape)}, {tuple(A.shape)}, "
            f"{tuple(B.shape)}, {tuple(C.shape)}"
        )
    b, e, l = x.shape
    n = A.shape[1]
    if delta.shape != x.shape or A.shape[0] != e or B.shape != (b, n, l) or C.shape != (b, n, l):
        raise ValueError(
            f"shape mismatch: x {tuple(x.shape)}, delta {tuple(delta.shape)}, A {tuple(A.shape)}, "
            f"B {tuple(B.shape)}, C {tuple(C.shape)}"
        )
    if z is not None and z.shape != x.shape:
        raise ValueError(f"z must have the shape of x {tuple(x.shape)}, got {tuple(z.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (e,):
            raise ValueError(f"{name} must have shape ({e},), got {tuple(t.shape)}")
    if b == 0 or e == 0 or l == 0 or n == 0:  # the dispatcher answers these before it comes here
        raise ValueError(
            f"selective_scan_numba needs non-empty input, got x {tuple(x.shape)}, A {tuple(A.shape)}: "
            "caduceus_plugin.ops.scan.selective_scan handles empty input"
        )
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _SelectiveScanNumba.apply(x, delta, A, B, C, D, z, delta_bias, delta_softplus)
    out, _ = _forward(x, delta, A, B, C, D, z, delta_bias, delta_softplus, save=False)
    return out
