"""Channels-last inference kernels for one Mamba direction, piece by piece (numba, CPU, float32, no autograd).

The length-chunked inference path (:mod:`caduceus_plugin.models.streaming`) keeps activations as ``(b, t, c)``
(the layout the projections produce and consume), so these kernels read and write that layout directly: no
transposes, no flips. Both take ``reverse``: the piece is walked from its last row to its first, which is how
``mamba_rev`` scans the sequence without materialising ``flip``.

* :func:`conv_silu` — depthwise causal conv + SiLU over a piece, given the previous ``k-1`` inputs (``ctx``).
* :func:`scan` — softplus(delta + bias), the selective scan from state ``h0``, ``D`` skip and ``silu(z)`` gate;
  returns the output and the last state.

Both compute exactly the function of :func:`caduceus_plugin.ops.scan.selective_scan_ref` and
:func:`caduceus_plugin.ops.conv.causal_conv1d_ref` (tests compare them), sharing the vectorised ``exp`` of
:mod:`caduceus_plugin.ops.scan_numba`.

bf16. The activations they read (``xz``, ``x``, ``delta``) may be bf16 tensors, as the projections give them with
bf16 matmuls, and :func:`conv_silu` can write bf16: the kernels read and write the bf16 bit patterns (as int16)
and do all arithmetic in float32, so bf16 projections need no separate conversion passes. The scan state, the
output ``y`` and all sums stay float32.
"""

from __future__ import annotations

import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from caduceus_plugin.ops.scan_numba import (
    _JIT,
    _NO_STATE,
    _SOFTPLUS_THRESHOLD,
    _W,
    _ZERO,
    _exp,
    _fill_lanes,
    _launch,
    _log1p_small,
    _n_blocks,
    _recur_step,
    _recur_step4,
    _sigmoid_from,
    _threads,
)

_TB = 64  # time rows per conv task
_SCAN_CHUNK = 256  # time steps staged at a time by the scan


def _const(ty: ir.Type, v: int) -> ir.Constant:
    """An integer constant of scalar type ``ty``, or splat across vector type ``ty``."""
    return ir.Constant(ty, [v] * ty.count) if isinstance(ty, ir.VectorType) else ir.Constant(ty, v)


def _bf16_to_f32(builder: ir.IRBuilder, bits: ir.Value, i32: ir.Type, f32: ir.Type) -> ir.Value:
    """bf16 bit patterns (i16, scalar or vector) widened exactly to float32: the bits move to the high half."""
    return builder.bitcast(builder.shl(builder.zext(bits, i32), _const(i32, 16)), f32)


def _f32_to_bf16(builder: ir.IRBuilder, v: ir.Value, i32: ir.Type, i16: ir.Type) -> ir.Value:
    """float32 (scalar or vector) rounded to the nearest bf16, ties to even, as bit patterns (i16)."""
    bits = builder.bitcast(v, i32)
    odd = builder.and_(builder.lshr(bits, _const(i32, 16)), _const(i32, 1))
    rounded = builder.add(builder.add(bits, _const(i32, 0x7FFF)), odd)
    return builder.trunc(builder.lshr(rounded, _const(i32, 16)), i16)


@intrinsic
def _ld(typingctx, v):  # type: ignore[no-untyped-def]
    """An element read from a float32 array as is, or from an int16 array holding bf16 bit patterns widened to
    float32 (exact: the bits move to the high half)."""
    if v == types.float32:
        return types.float32(v), lambda context, builder, sig, args: args[0]
    if v != types.int16:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return _bf16_to_f32(builder, args[0], ir.IntType(32), ir.FloatType())

    return types.float32(v), codegen


@intrinsic
def _st(typingctx, v, like):  # type: ignore[no-untyped-def]
    """A float32 value in the element type of the array ``like``: as is for float32; for int16 (bf16 bits), rounded
    to the nearest bf16, ties to even (what ``torch.Tensor.to(torch.bfloat16)`` does for finite values)."""
    if v != types.float32 or not isinstance(like, types.Array):
        return None
    if like.dtype == types.float32:
        return types.float32(v, like), lambda context, builder, sig, args: args[0]
    if like.dtype != types.int16:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return _f32_to_bf16(builder, args[0], ir.IntType(32), ir.IntType(16))

    return types.int16(v, like), codegen


def _vec16_codegen(context, builder, sig, args, add: bool):  # type: ignore[no-untyped-def]
    """``dst[doff : doff + 16] (+)= src[soff : soff + 16]`` as one vector load and one vector store; int16 (bf16
    bits) sources are widened exactly, int16 destinations rounded to the nearest bf16 (ties to even) as in
    :func:`_st`."""
    f32v, i16v, i32v = (ir.VectorType(t, 16) for t in (ir.FloatType(), ir.IntType(16), ir.IntType(32)))

    def ptr(k: int) -> ir.Value:
        ary = context.make_array(sig.args[k])(context, builder, args[k])
        off = context.cast(builder, args[k + 1], sig.args[k + 1], types.int64)
        vty = f32v if sig.args[k].dtype == types.float32 else i16v
        return builder.bitcast(builder.gep(ary.data, [off]), vty.as_pointer())

    def load_f32(k: int) -> ir.Value:
        v = builder.load(ptr(k), align=2)
        return v if sig.args[k].dtype == types.float32 else _bf16_to_f32(builder, v, i32v, f32v)

    v = load_f32(0)
    if add:
        v = builder.fadd(v, load_f32(2))
    if sig.args[2].dtype == types.float32:
        builder.store(v, ptr(2), align=4)
    else:
        builder.store(_f32_to_bf16(builder, v, i32v, i16v), ptr(2), align=2)
    return context.get_dummy_value()


def _vec16_ok(src, soff, dst, doff) -> bool:  # type: ignore[no-untyped-def]
    dtypes = (types.float32, types.int16)
    arrays = all(isinstance(a, types.Array) and a.layout == "C" and a.dtype in dtypes for a in (src, dst))
    return arrays and all(isinstance(o, types.Integer) for o in (soff, doff))


@intrinsic
def _copy16(typingctx, src, soff, dst, doff):  # type: ignore[no-untyped-def]
    """``dst.flat[doff + k] = src.flat[soff + k]`` for k < 16 (float32 or bf16 bits on either side, converted):
    one vector load and store. Written out as 16 indexed element copies, numba's index arithmetic keeps LLVM from
    combining them, and the copies in and out of the staging buffers cost as much as the scan's arithmetic."""
    if not _vec16_ok(src, soff, dst, doff):
        return None
    return types.void(src, soff, dst, doff), lambda c, b, sig, args: _vec16_codegen(c, b, sig, args, add=False)


@intrinsic
def _add16(typingctx, src, soff, dst, doff):  # type: ignore[no-untyped-def]
    """``dst.flat[doff + k] = src.flat[soff + k] + dst.flat[doff + k]`` for k < 16, as :func:`_copy16`."""
    if not _vec16_ok(src, soff, dst, doff):
        return None
    return types.void(src, soff, dst, doff), lambda c, b, sig, args: _vec16_codegen(c, b, sig, args, add=True)


@njit(parallel=True, **_JIT)
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
                    v = bias[c] + wt[0, c] * _ld(x[bi, r0, c]) + wt[1, c] * _ld(x[bi, r1, c])
                    v += wt[2, c] * _ld(x[bi, r2, c]) + wt[3, c] * _ld(x[bi, orow, c])
                    out[bi, orow, c] = _st(v * _sigmoid_from(v, _exp(-abs(v))), out)
            elif i >= k1:  # every tap inside the piece
                for c in range(ne):
                    v = bias[c]
                    for k in range(nk):
                        j = i - k1 + k
                        v += wt[k, c] * _ld(x[bi, nt - 1 - j if reverse else j, c])
                    out[bi, orow, c] = _st(v * _sigmoid_from(v, _exp(-abs(v))), out)
            else:  # the first k-1 rows also read the context
                for c in range(ne):
                    v = bias[c]
                    for k in range(nk):
                        j = i - k1 + k
                        if j >= 0:
                            v += wt[k, c] * _ld(x[bi, nt - 1 - j if reverse else j, c])
                        else:
                            v += wt[k, c] * ctx[bi, k1 + j, c]
                    out[bi, orow, c] = _st(v * _sigmoid_from(v, _exp(-abs(v))), out)


@njit(inline="always", **_JIT)
def _stage(xv, dv, PW, DB, UB, YB, task, gi, i, q):  # type: ignore[no-untyped-def]
    """Lane q of step i: dt = softplus(delta + bias) into DB, dt * x into UB, D * x (the skip) into YB."""
    v = dv + PW[task, gi, 1, q]
    sp = max(v, _ZERO) + _log1p_small(_exp(-abs(v)))
    v = sp if v <= _SOFTPLUS_THRESHOLD else v  # NaN stays NaN
    DB[task, i, q] = v
    UB[task, i, q] = v * xv
    YB[task, i, q] = PW[task, gi, 0, q] * xv


@njit(parallel=True, **_JIT)
def _scan_kernel(  # type: ignore[no-untyped-def]
    x, delta, A, bc, b_off, D, bias, z, z_off, acc, has_acc, out, reverse, nblk, h0, has_h0, hlast,
):  # fmt: skip
    """Channels-last selective scan of one piece (inference): softplus(delta + bias), the recurrence from ``h0``, the
    ``D`` skip and the ``silu(z)`` gate. ``x``, ``delta`` (b, t, e) and ``z`` (b, t, *, gate at ``z_off``) are
    float32 or bf16 bits (int16); ``bc`` (b, t, *) float32 with B at ``b_off`` and C right after; ``acc`` (b, t, e)
    float32 is added to the output when ``has_acc``; ``out`` (b, t, e) float32 or bf16 bits; ``h0``/``hlast``
    (b, e, n) float32. ``reverse`` walks the rows from last to first.

    Tasks are (batch row, block of 16-channel groups). Per chunk of ``_SCAN_CHUNK`` steps and group: x, dt and
    dt * x are staged in lane layout (16 channels per vector; rows move as whole vectors, :func:`_copy16`), then the
    recurrence runs state indices outermost, four at a time, so that four state vectors stay in registers through
    the chunk, the output accumulating in the staged ``y``.
    """
    nb, nl, ne = x.shape
    nn = A.shape[1]
    nz = z.shape[2]
    chunk = _SCAN_CHUNK
    ngr = (ne + _W - 1) // _W
    nch = (nl + chunk - 1) // chunk
    ntask = nb * nblk
    gmax = (ngr + nblk - 1) // nblk
    HS = np.empty((ntask, gmax, nn, _W), np.float32)  # state of each group
    AW = np.empty((ntask, gmax, nn, _W), np.float32)  # A * log2(e) in lane layout (0 in padding lanes)
    PW = np.empty((ntask, gmax, 2, _W), np.float32)  # D and delta_bias in lane layout
    DB = np.empty((ntask, chunk, _W), np.float32)  # delta, then dt
    UB = np.empty((ntask, chunk, _W), np.float32)  # dt * x
    YB = np.empty((ntask, chunk, _W), np.float32)  # output, from D * x
    XB = np.empty((ntask, chunk, _W), np.float32)  # x
    ZB = np.empty((ntask, chunk, _W), np.float32)  # the gate's input z
    BB = np.empty((ntask, nn, chunk), np.float32)  # B and C of the chunk in scan order, state index first
    CB = np.empty((ntask, nn, chunk), np.float32)
    for task in prange(ntask):
        bi = task // nblk
        blk = task - bi * nblk
        g0 = blk * ngr // nblk
        g1 = (blk + 1) * ngr // nblk
        for gi in range(g1 - g0):
            c0 = (g0 + gi) * _W
            _fill_lanes(A, D, bias, True, True, c0, AW, PW, task, gi)
            for q in range(_W):
                for j in range(nn):
                    HS[task, gi, j, q] = h0[bi, c0 + q, j] if (c0 + q < ne and has_h0) else _ZERO
        for c in range(nch):
            t0 = c * chunk
            lc = min(chunk, nl - t0)
            for i in range(lc):
                row = nl - 1 - (t0 + i) if reverse else t0 + i
                for j in range(nn):
                    BB[task, j, i] = bc[bi, row, b_off + j]
                    CB[task, j, i] = bc[bi, row, b_off + nn + j]
            for gi in range(g1 - g0):
                c0 = (g0 + gi) * _W
                m = min(_W, ne - c0)
                # loads first, nothing else: many independent cache misses in flight (the rows were written by
                # the projections a while ago and are usually not in cache)
                for i in range(lc):
                    row = nl - 1 - (t0 + i) if reverse else t0 + i
                    if m == _W:
                        xo = (bi * nl + row) * ne + c0
                        so = (task * chunk + i) * _W
                        _copy16(x, xo, XB, so)
                        _copy16(delta, xo, DB, so)
                        _copy16(z, (bi * nl + row) * nz + z_off + c0, ZB, so)
                    else:  # a partial group: padding lanes read as 0
                        for q in range(_W):
                            XB[task, i, q] = _ld(x[bi, row, c0 + q]) if q < m else _ZERO
                            DB[task, i, q] = _ld(delta[bi, row, c0 + q]) if q < m else _ZERO
                            ZB[task, i, q] = _ld(z[bi, row, z_off + c0 + q]) if q < m else _ZERO
                for i in range(lc):
                    for q in range(_W):
                        _stage(XB[task, i, q], DB[task, i, q], PW, DB, UB, YB, task, gi, i, q)
                for j in range(0, nn - 3, 4):  # four state indices per pass (see _recur_step4), then the rest
                    for i in range(lc):
                        _recur_step4(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i)
                for j in range(nn - nn % 4, nn):
                    for i in range(lc):
                        _recur_step(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i)
                for i in range(lc):  # the gate
                    for q in range(_W):
                        zq = ZB[task, i, q]
                        YB[task, i, q] *= zq * _sigmoid_from(zq, _exp(-abs(zq)))
                for i in range(lc):  # (+ acc) out
                    row = nl - 1 - (t0 + i) if reverse else t0 + i
                    if m == _W:
                        oo = (bi * nl + row) * ne + c0
                        so = (task * chunk + i) * _W
                        if has_acc:
                            _add16(acc, oo, YB, so)
                        _copy16(YB, so, out, oo)
                    else:
                        for q in range(m):
                            v = YB[task, i, q] + acc[bi, row, c0 + q] if has_acc else YB[task, i, q]
                            out[bi, row, c0 + q] = _st(v, out)
        for gi in range(g1 - g0):
            c0 = (g0 + gi) * _W
            for j in range(nn):
                for q in range(min(_W, ne - c0)):
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
    _threads()
    _launch(_conv_kernel, _act(xz), _c32(w.t()), _c32(bias_f), _c32(ctx), out_np, reverse)
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
    nblk = _n_blocks(b, e, _threads())
    _launch(
        _scan_kernel,
        _act(x), _act(delta), _c32(A), _c32(bc), bc_off, _c32(D), _c32(delta_bias), _act(z_src), z_off,
        _NO_STATE if acc is None else _c32(acc), acc is not None, out_np, reverse, nblk, h0_np, h0 is not None,
        hlast.numpy(),
    )  # fmt: skip
    return out, hlast


__all__ = ["conv_silu", "scan"]
