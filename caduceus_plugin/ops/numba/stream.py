"""Channels-last inference kernels for one Mamba direction, piece by piece (numba, CPU, float32, no autograd).

The length-chunked inference path (:mod:`caduceus_plugin.models.caduceus.streaming`) keeps activations as ``(b, t, c)``
(the layout the projections produce and consume), so these kernels read and write that layout directly: no
transposes, no flips. Both take ``reverse``: the piece is walked from its last row to its first, which is how
``mamba_rev`` scans the sequence without materialising ``flip``.

* :func:`conv_silu` — depthwise causal conv + SiLU over a piece, given the previous ``k-1`` inputs (``ctx``).
* :func:`scan` — softplus(delta + bias), the selective scan from state ``h0``, ``D`` skip and ``silu(z)`` gate;
  returns the output and the last state.
* :func:`norm_gather` and :func:`scatter` — the strand layout around a layer's mixer: the residual add, the
  pre-norm and the reverse strand's flip into scan order in one pass over a piece, and the mixer output's way back
  (set, add or multiply) into the physical halves.

Both compute exactly the function of :func:`caduceus_plugin.ops.scan.selective_scan_ref` and
:func:`caduceus_plugin.ops.conv.causal_conv1d_ref` (tests compare them), built from the same blocks as the training
kernels (:mod:`caduceus_plugin.ops.numba.simd`: the vectorised ``exp``, the recurrence step, the lane layout).

bf16. The activations they read (``xz``, ``x``, ``delta``) may be bf16 tensors, as the projections give them with
bf16 matmuls, and :func:`conv_silu` can write bf16: the kernels read and write the bf16 bit patterns (as int16)
and do all arithmetic in float32, so bf16 projections need no separate conversion passes. The scan state, the
output ``y`` and all sums stay float32.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import prange

from caduceus_plugin.ops.numba.simd import (  # njit: numba's, with the cache keyed by every kernel's source
    JIT,
    SOFTPLUS_THRESHOLD,
    ZERO,
    W,
    add16,
    as_elem,
    as_f32,
    copy16,
    fill_lanes,
    kernel_threads,
    launch,
    log1p_small,
    n_blocks,
    njit,
    recur_step,
    recur_step4,
    sigmoid_from,
    vexp,
)

_TB = 64  # time rows per conv task
_SCAN_CHUNK = 256  # time steps staged at a time by the scan
_NO_STATE = np.zeros((1, 1, 1), np.float32)  # stands in for an absent h0 or acc
_NO_CKPT = np.zeros((1, 1, 1, 1, 1), np.float32)  # stands in for the checkpoints when none are saved


@njit(parallel=True, **JIT)
def _conv_kernel(x, wt, bias, ctx, out, reverse):  # type: ignore[no-untyped-def]
    """out[b, r(i), c] = silu(bias[c] + sum_k wt[k, c] * xin(i - k1 + k)) with xin(j) = x[b, r(j), c] for j >= 0 and
    ctx[b, k1 + j, c] for j < 0; r(i) = i, or t-1-i with ``reverse``."""
    nb, nt, ne = out.shape
    nk = wt.shape[0]
    k1 = nk - 1
    nblk = (nt + _TB - 1) // _TB
    for task in prange(nb * nblk):
        bi = task // nblk
        i0 = (task - bi * nblk) * _TB
        i1 = min(nt, i0 + _TB)
        for i in range(i0, i1):
            orow = nt - 1 - i if reverse else i
            if nk == 4 and i >= k1:  # the released models' width, unrolled so the channel loop vectorises
                r0 = nt - 1 - (i - 3) if reverse else i - 3
                r1 = nt - 1 - (i - 2) if reverse else i - 2
                r2 = nt - 1 - (i - 1) if reverse else i - 1
                for c in range(ne):
                    v = bias[c] + wt[0, c] * as_f32(x[bi, r0, c]) + wt[1, c] * as_f32(x[bi, r1, c])
                    v += wt[2, c] * as_f32(x[bi, r2, c]) + wt[3, c] * as_f32(x[bi, orow, c])
                    out[bi, orow, c] = as_elem(v * sigmoid_from(v, vexp(-abs(v))), out)
            elif i >= k1:  # every tap inside the piece
                for c in range(ne):
                    v = bias[c]
                    for k in range(nk):
                        j = i - k1 + k
                        v += wt[k, c] * as_f32(x[bi, nt - 1 - j if reverse else j, c])
                    out[bi, orow, c] = as_elem(v * sigmoid_from(v, vexp(-abs(v))), out)
            else:  # the first k-1 rows also read the context
                for c in range(ne):
                    v = bias[c]
                    for k in range(nk):
                        j = i - k1 + k
                        if j >= 0:
                            v += wt[k, c] * as_f32(x[bi, nt - 1 - j if reverse else j, c])
                        else:
                            v += wt[k, c] * ctx[bi, k1 + j, c]
                    out[bi, orow, c] = as_elem(v * sigmoid_from(v, vexp(-abs(v))), out)


@njit(inline="always", **JIT)
def _stage(xv, dv, PW, DB, UB, YB, task, gi, i, q):  # type: ignore[no-untyped-def]
    """Lane q of step i: dt = softplus(delta + bias) into DB, dt * x into UB, D * x (the skip) into YB."""
    v = dv + PW[task, gi, 1, q]
    sp = max(v, ZERO) + log1p_small(vexp(-abs(v)))
    v = sp if v <= SOFTPLUS_THRESHOLD else v  # NaN stays NaN
    DB[task, i, q] = v
    UB[task, i, q] = v * xv
    YB[task, i, q] = PW[task, gi, 0, q] * xv


@njit(parallel=True, **JIT)
def _scan_kernel(  # type: ignore[no-untyped-def]
    x, delta, A, bc, b_off, D, bias, z, z_off, acc, has_acc, out, reverse, nblk, h0, has_h0, hlast, ckpt, save,
    chunk, ck_len,
):  # fmt: skip
    """Channels-last selective scan of one piece (inference): softplus(delta + bias), the recurrence from ``h0``, the
    ``D`` skip and the ``silu(z)`` gate. ``x``, ``delta`` (b, t, e) and ``z`` (b, t, *, gate at ``z_off``) are
    float32 or bf16 bits (int16); ``bc`` (b, t, *) float32 with B at ``b_off`` and C right after; ``acc`` (b, t, e)
    float32 is added to the output when ``has_acc``; ``out`` (b, t, e) float32 or bf16 bits; ``h0``/``hlast``
    (b, e, n) float32. ``reverse`` walks the rows from last to first.

    With ``save`` (training), the state entering every ``ck_len``-th step (in scan order) is written to ``ckpt``
    (b, n_groups, n_checkpoints, n, W) for the backward kernel (:mod:`caduceus_plugin.ops.numba.mixer`); ``chunk``
    is then a multiple of ``ck_len``.

    Tasks are (batch row, block of 16-channel groups). Per chunk of ``_SCAN_CHUNK`` steps and group: x, dt and
    dt * x are staged in lane layout (16 channels per vector; rows move as whole vectors, :func:`copy16`), then the
    recurrence runs state indices outermost, four at a time, so that four state vectors stay in registers through
    the chunk, the output accumulating in the staged ``y``.
    """
    nb, nl, ne = x.shape
    nn = A.shape[1]
    nz = z.shape[2]
    ngr = (ne + W - 1) // W
    nch = (nl + chunk - 1) // chunk
    ntask = nb * nblk
    gmax = (ngr + nblk - 1) // nblk
    HS = np.empty((ntask, gmax, nn, W), np.float32)  # state of each group
    AW = np.empty((ntask, gmax, nn, W), np.float32)  # A * log2(e) in lane layout (0 in padding lanes)
    PW = np.empty((ntask, gmax, 2, W), np.float32)  # D and delta_bias in lane layout
    DB = np.empty((ntask, chunk, W), np.float32)  # delta, then dt
    UB = np.empty((ntask, chunk, W), np.float32)  # dt * x
    YB = np.empty((ntask, chunk, W), np.float32)  # output, from D * x
    XB = np.empty((ntask, chunk, W), np.float32)  # x
    ZB = np.empty((ntask, chunk, W), np.float32)  # the gate's input z
    BB = np.empty((ntask, nn, chunk), np.float32)  # B and C of the chunk in scan order, state index first
    CB = np.empty((ntask, nn, chunk), np.float32)
    for task in prange(ntask):
        bi = task // nblk
        blk = task - bi * nblk
        g0 = blk * ngr // nblk
        g1 = (blk + 1) * ngr // nblk
        for gi in range(g1 - g0):
            c0 = (g0 + gi) * W
            fill_lanes(A, D, bias, True, True, c0, AW, PW, task, gi)
            for q in range(W):
                for j in range(nn):
                    HS[task, gi, j, q] = h0[bi, c0 + q, j] if (c0 + q < ne and has_h0) else ZERO
        for c in range(nch):
            t0 = c * chunk
            lc = min(chunk, nl - t0)
            for i in range(lc):
                row = nl - 1 - (t0 + i) if reverse else t0 + i
                for j in range(nn):
                    BB[task, j, i] = bc[bi, row, b_off + j]
                    CB[task, j, i] = bc[bi, row, b_off + nn + j]
            for gi in range(g1 - g0):
                c0 = (g0 + gi) * W
                m = min(W, ne - c0)
                # loads first, nothing else: many independent cache misses in flight (the rows were written by
                # the projections a while ago and are usually not in cache)
                for i in range(lc):
                    row = nl - 1 - (t0 + i) if reverse else t0 + i
                    if m == W:
                        xo = (bi * nl + row) * ne + c0
                        so = (task * chunk + i) * W
                        copy16(x, xo, XB, so)
                        copy16(delta, xo, DB, so)
                        copy16(z, (bi * nl + row) * nz + z_off + c0, ZB, so)
                    else:  # a partial group: padding lanes read as 0
                        for q in range(W):
                            XB[task, i, q] = as_f32(x[bi, row, c0 + q]) if q < m else ZERO
                            DB[task, i, q] = as_f32(delta[bi, row, c0 + q]) if q < m else ZERO
                            ZB[task, i, q] = as_f32(z[bi, row, z_off + c0 + q]) if q < m else ZERO
                for i in range(lc):
                    for q in range(W):
                        _stage(XB[task, i, q], DB[task, i, q], PW, DB, UB, YB, task, gi, i, q)
                for j in range(0, nn - 3, 4):  # four state indices per pass (see recur_step4), then the rest
                    if save:  # the state entering every ck_len-th step is kept for the backward
                        for s0 in range(0, lc, ck_len):  # chunk is a multiple of ck_len: s0 is a checkpoint step
                            for jj in range(j, j + 4):
                                for q in range(W):
                                    ckpt[bi, g0 + gi, (t0 + s0) // ck_len, jj, q] = HS[task, gi, jj, q]
                            for i in range(s0, min(s0 + ck_len, lc)):
                                recur_step4(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i)
                    else:
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
                for i in range(lc):  # the gate
                    for q in range(W):
                        zq = ZB[task, i, q]
                        YB[task, i, q] *= zq * sigmoid_from(zq, vexp(-abs(zq)))
                for i in range(lc):  # (+ acc) out
                    row = nl - 1 - (t0 + i) if reverse else t0 + i
                    if m == W:
                        oo = (bi * nl + row) * ne + c0
                        so = (task * chunk + i) * W
                        if has_acc:
                            add16(acc, oo, YB, so)
                        copy16(YB, so, out, oo)
                    else:
                        for q in range(m):
                            v = YB[task, i, q] + acc[bi, row, c0 + q] if has_acc else YB[task, i, q]
                            out[bi, row, c0 + q] = as_elem(v, out)
        for gi in range(g1 - g0):
            c0 = (g0 + gi) * W
            for j in range(nn):
                for q in range(min(W, ne - c0)):
                    hlast[bi, c0 + q, j] = HS[task, gi, j, q]


def _c32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


def _out_buffer(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, np.ndarray]:
    """A new float32 or bf16 tensor and the array the kernels write into (bf16 as its int16 bit patterns)."""
    if dtype == torch.bfloat16:
        out = torch.empty(shape, dtype=torch.bfloat16)
        return out, out.view(torch.int16).numpy()
    out = torch.empty(shape)
    return out, out.numpy()


def _act(t: torch.Tensor) -> np.ndarray:
    """An activation for the kernels without conversion: float32 as is, bf16 as its bit patterns (int16); other
    dtypes converted to float32."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy()
    return t.to(torch.float32).numpy()


def conv_silu(
    xz: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    ctx: torch.Tensor | None,
    reverse: bool,
    out_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal depthwise conv + SiLU of the first ``e`` channels of ``xz`` (b, t, >=e), channels-last.

    Args:
        xz: the in_proj output of a piece (float32 or bf16), physical (genomic) row order; the conv reads channels
            ``[0, e)``.
        weight: (e, 1, k) or (e, k); bias: (e,).
        ctx: (b, k-1, e) float32, the previous ``k-1`` inputs in scan order (zeros when None).
        reverse: scan the piece from its last row to its first.
        out_dtype: float32, or bf16 (rounded once, from the float32 result).

    Returns:
        ``(y, ctx)``: y (b, t, e) in ``out_dtype`` in physical row order, and the new context (float32: the last k-1
        inputs in scan order).
    """
    w = weight.reshape(weight.shape[0], -1)
    e, k = w.shape
    b, t, _ = xz.shape
    if ctx is None:
        ctx = torch.zeros(b, k - 1, e, dtype=torch.float32)
    bias_f = bias if bias is not None else w.new_zeros(e)
    out, out_np = _out_buffer((b, t, e), out_dtype)
    kernel_threads()
    launch(_conv_kernel, _act(xz), _c32(w.t()), _c32(bias_f), _c32(ctx), out_np, reverse)
    # next context: the last k-1 inputs in scan order (oldest first)
    xs = xz[..., :e]
    if t >= k - 1:
        tail = xs[:, : k - 1].flip(1) if reverse else xs[:, t - (k - 1) :]
        new_ctx = tail.float().contiguous()
    else:
        seen = (xs.flip(1) if reverse else xs).float()
        new_ctx = torch.cat([ctx, seen], dim=1)[:, -(k - 1) :].contiguous()
    return out, new_ctx


def scan(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    bc: torch.Tensor,
    bc_off: int,
    D: torch.Tensor,
    delta_bias: torch.Tensor,
    z_src: torch.Tensor,
    z_off: int,
    h0: torch.Tensor | None,
    reverse: bool,
    acc: torch.Tensor | None = None,
    out_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective scan of a piece in channels-last layout (inference only), from state ``h0``.

    Args:
        x, delta: (b, t, e) conv output and step sizes before bias/softplus (float32 or bf16).
        A: (e, n) negative; D, delta_bias: (e,).
        bc: (b, t, *) with B in channels ``[bc_off, bc_off + n)`` and C right after (the x_proj output).
        z_src: (b, t, *) with the gate in channels ``[z_off, z_off + e)`` (the in_proj output; float32 or bf16).
        h0: (b, e, n) state before the piece in scan order (zeros when None).
        reverse: scan from the last row to the first.
        acc: (b, t, e) float32 added to the output (e.g. the other direction's, before a shared projection).
        out_dtype: float32, or bf16 (the float32 result, sum with ``acc`` included, rounded once).

    Returns:
        ``(y, h)``: gated output (b, t, e) in ``out_dtype`` in physical row order, and the state after the piece.
    """
    b, t, e = x.shape
    n = A.shape[1]
    out, out_np = _out_buffer((b, t, e), out_dtype)
    hlast = torch.empty(b, e, n)
    h0_np = _c32(h0) if h0 is not None else _NO_STATE
    nblk = n_blocks(b, e, kernel_threads())
    launch(
        _scan_kernel,
        _act(x), _act(delta), _c32(A), _c32(bc), bc_off, _c32(D), _c32(delta_bias), _act(z_src), z_off,
        _NO_STATE if acc is None else _c32(acc), acc is not None, out_np, reverse, nblk, h0_np, h0 is not None,
        hlast.numpy(), _NO_CKPT, False, _SCAN_CHUNK, _SCAN_CHUNK,
    )  # fmt: skip
    return out, hlast


@njit(inline="always", **JIT)
def _strand_row(task, nb, nt, nl, s, off0, off1):  # type: ignore[no-untyped-def]
    """Task -> (strand k, batch row bi, piece row j, the strand's first channel, its source row): tasks run strand
    by strand, then batch row, then piece row; strand 1 (the reverse complement) reads rows from the end."""
    k = task // (nb * nt)
    rem = task - k * nb * nt
    bi = rem // nt
    j = rem - bi * nt
    if k == 1:
        return k, bi, j, off1, nl - 1 - (s + j)
    return k, bi, j, off0, s + j


@njit(parallel=True, **JIT)
def _norm_gather_kernel(res, out, add, s, nt, ns, off0, off1, d, w, bias, has_bias, rms, eps, dst):  # type: ignore[no-untyped-def]
    """For strand k < ns, batch row bi and piece row j: the source row is ``s + j`` (strand 0, channels
    ``off0 + c``) or ``nl - 1 - (s + j)`` (strand 1, channels ``off1 + d - 1 - c``: the reverse complement's
    order); with ``add`` the source first gets ``out`` added in place (the residual add, each row once); then
    ``dst[k * nb + bi, j, c]`` = the RMS norm (``rms``) or layer norm of the source channels, times ``w[c]``,
    plus ``bias[c]`` when ``has_bias``. Sums in float64 (one row's statistics over ``d`` channels)."""
    nb, nl, _ = res.shape
    for task in prange(ns * nb * nt):
        k, bi, j, off, row = _strand_row(task, nb, nt, nl, s, off0, off1)
        rc = k == 1
        if add:
            for c in range(d):
                res[bi, row, off + c] += out[bi, row, off + c]
        mu = 0.0
        if not rms:
            for c in range(d):
                mu += np.float64(res[bi, row, off + c])
            mu /= d
        ss = 0.0
        for c in range(d):
            v = np.float64(res[bi, row, off + c]) - mu
            ss += v * v
        rstd = np.float32(1.0 / np.sqrt(ss / d + eps))
        mu32 = np.float32(mu)
        o = k * nb + bi
        for c in range(d):
            src = off + d - 1 - c if rc else off + c
            v = ((res[bi, row, src] - mu32) * rstd) * w[c]
            dst[o, j, c] = v + bias[c] if has_bias else v


@njit(parallel=True, **JIT)
def _scatter_kernel(o, dst, s, nt, ns, off0, off1, d, mode):  # type: ignore[no-untyped-def]
    """The inverse map of :func:`_norm_gather_kernel`'s gather: ``o[k * nb + bi, j, c]`` goes to strand k's source
    position (strand 1: row ``nl - 1 - (s + j)``, channel ``off1 + d - 1 - c``) of ``dst``; ``mode`` 0 sets, 1 adds,
    2 multiplies."""
    nb, nl, _ = dst.shape
    for task in prange(ns * nb * nt):
        k, bi, j, off, row = _strand_row(task, nb, nt, nl, s, off0, off1)
        rc = k == 1
        src = k * nb + bi
        for c in range(d):
            v = o[src, j, d - 1 - c] if rc else o[src, j, c]
            if mode == 0:
                dst[bi, row, off + c] = v
            elif mode == 1:
                dst[bi, row, off + c] += v
            else:
                dst[bi, row, off + c] *= v


def norm_gather(
    res: torch.Tensor,
    out: torch.Tensor,
    add: bool,
    s: int,
    e: int,
    offsets: tuple[int, ...],
    d: int,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    eps: float,
    rms: bool,
) -> torch.Tensor:
    """One piece's normed input to a layer's mixer, gathered from the residual stream (CPU, float32, in place).

    Args:
        res: (b, l, C) float32 contiguous, the residual stream; with ``add`` its rows of the piece get ``out`` added
            first (in place), which is the layer's residual add done in the same pass.
        out: (b, l, C) float32 contiguous, the previous layer's mixer output (read only with ``add``).
        s, e: the piece, rows ``[s, e)`` in the forward strand's coordinates.
        offsets: the first channel of each strand's ``d`` channels: ``(off,)`` for one strand, ``(off0, off1)`` for
            RCPS, whose strand 1 is read in reverse-complement order (rows ``[l-e, l-s)`` reversed, channels
            reversed).
        weight, bias: the norm's (d,) parameters (bias None for RMS norm); ``eps``; ``rms``: RMS norm, else layer
            norm.

    Returns:
        (len(offsets) * b, e - s, d) float32: strand 0's rows first, then strand 1's in scan order. The same as
        ``norm(cat([r0[:, s:e], r1[:, l-e:l-s].flip(1, 2)]))`` (tested against it).
    """
    b, _, _ = res.shape
    t = e - s
    ns = len(offsets)
    dst = torch.empty(ns * b, t, d)
    kernel_threads()
    launch(
        _norm_gather_kernel, res.numpy(), out.numpy(), add, s, t, ns, offsets[0], offsets[-1], d, _c32(weight),
        _c32(bias) if bias is not None else _c32(weight), bias is not None, rms, float(eps), dst.numpy(),
    )  # fmt: skip
    return dst


_MODES = {"set": 0, "add": 1, "mul": 2}


def scatter(dst: torch.Tensor, o: torch.Tensor, s: int, e: int, offsets: tuple[int, ...], d: int, mode: str) -> None:
    """Write a mixer's output piece ``o`` (len(offsets) * b, e - s, d) float32 back into ``dst`` (b, l, C) float32
    contiguous at the positions :func:`norm_gather` read (strand 1 flipped back), by ``mode`` ``set``, ``add`` or
    ``mul``."""
    t = e - s
    kernel_threads()
    launch(
        _scatter_kernel, _c32(o), dst.numpy(), s, t, len(offsets), offsets[0], offsets[-1], d, _MODES[mode]
    )  # fmt: skip


__all__ = ["conv_silu", "norm_gather", "scan", "scatter"]
