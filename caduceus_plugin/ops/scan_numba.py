"""Selective scan on CPU with fused numba kernels (forward and backward), memory O(b*e*l).

Same contract as :func:`caduceus_plugin.ops.scan.selective_scan_ref` (shapes, float32 math inside, output in
``x.dtype``). The whole op runs in two kernels, softplus(delta + delta_bias), the ``D`` skip and the ``silu(z)`` gate
included; :func:`selective_scan_numba` is differentiable w.r.t. every tensor argument.

Layout. Channels are processed in groups of ``W = 16`` (one AVX-512 register of float32): lane ``q`` of every vector
is channel ``c0 + q``, so the state update ``h = exp(dt * A) * h + dt * x * B`` for one state index and one time step
is a single 16-wide vector operation with no horizontal reduction, and the output ``y = <C, h>`` accumulates in a
register over the state index. Time is staged in chunks: for each chunk and group, ``x``, ``delta``, ``z`` (and the
output gradient) are transposed into small ``(T, W)`` buffers with an in-register 16 x 16 transpose (an LLVM
intrinsic), all per-step work happens there, and results are transposed back.

Parallelism. ``prange`` runs over (batch row, block of channel groups) tasks; every task owns its channels, so the
forward has no shared writes. The backward's ``dB``/``dC`` (sums over channels) go to per-task partial buffers
``(b, n_blocks, l, n)`` (``n_blocks`` <= threads) summed in torch, ``dA``, ``dD``, ``d delta_bias`` to per-batch-row
partials. numba's thread count follows ``torch.get_num_threads()``.

Memory. The forward keeps only the state (``n x W`` per group); when a backward will follow it also saves the state
every ``T = chunk_length(n)`` steps (``b * e * l * n / T`` floats, ``T * n ~ 2048``: an eighth of ``x`` for n = 16).
The backward walks these intervals in reverse, recomputes each one's decays and states from its checkpoint into
L2-resident ``(T, n, W)`` buffers and runs the adjoint recurrence through them. Nothing of size ``b * e * l * n`` is
ever allocated.

exp. ``b * e * l * n`` of them make it the cost centre, and numba has no vector math library here, so the kernels
use their own float32 ``exp``/``2**t`` written to vectorise: range reduction, a degree-6 minimax polynomial and a
``2**k`` scale built from the exponent bits (i32 -> f32 bitcast intrinsic). Relative error < 1e-7 (exp on [-87, 0]),
< 2e-7 (2**t on [-126, 0]); arguments below the normal range (and -inf) give exactly 0.

All per-task scratch is allocated outside the parallel loop and indexed with scalar indices only (no array views
inside the loop): numba then marks the loop body's array pointers ``noalias`` and LLVM vectorises the 16-lane loops
without runtime overlap checks.

numba is imported at this module's import; nothing else in the package imports this module at import time. Kernels
are compiled on first use (~20 s) and cached on disk (``cache=True``).
"""

from __future__ import annotations

import math
import platform

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic
from torch.autograd.function import once_differentiable

__all__ = ["chunk_length", "exp2_f32", "exp_f32", "selective_scan_numba"]

# Fast-math without nnan/ninf: reassociation (vectorised reductions), contraction (FMA) and cheap division, while
# comparisons and selects keep their IEEE meaning for inf and NaN. error_model="numpy": no zero-division branches.
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
_JIT = {"fastmath": _FM, "error_model": "numpy", "cache": True}

_W = 16  # lanes: channels per group (one 512-bit register of float32)
_X86 = platform.machine().lower() in ("x86_64", "amd64")

_f32 = np.float32
_ZERO = _f32(0.0)
_ONE = _f32(1.0)
_TWO = _f32(2.0)

# --------------------------------------------------------------------------------------------------------------------
# LLVM helpers


@intrinsic
def _rint(typingctx, x):  # type: ignore[no-untyped-def]
    """Round a float32 to the nearest integer value (ties to even), as float32."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        fnty = ir.FunctionType(ir.FloatType(), [ir.FloatType()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.rint.f32")
        return builder.call(fn, [args[0]])

    return types.float32(types.float32), codegen


@intrinsic
def _fma(typingctx, a, b, c):  # type: ignore[no-untyped-def]
    """a * b + c with one rounding and no fast-math flags: fast-math reassociation cannot merge the two halves of
    ln 2 in the range reduction (that would cost ~2e-9 * |k| of accuracy)."""
    if not (a == types.float32 and b == types.float32 and c == types.float32):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        fnty = ir.FunctionType(ir.FloatType(), [ir.FloatType()] * 3)
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.f32")
        return builder.call(fn, list(args))

    return types.float32(types.float32, types.float32, types.float32), codegen


@intrinsic
def _pow2(typingctx, k):  # type: ignore[no-untyped-def]
    """2**k for an integer-valued float32 k in [-126, 127]: the exponent field built directly (i32 -> f32 bitcast)."""
    if k != types.float32:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i32 = ir.IntType(32)
        ki = builder.fptosi(args[0], i32)
        bits = builder.shl(builder.add(ki, ir.Constant(i32, 127)), ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(types.float32), codegen


@intrinsic
def _opaque(typingctx, v):  # type: ignore[no-untyped-def]
    """Identity that LLVM cannot see through: keeps strided scalar copies scalar (x86 gathers/scatters are slower).
    An empty inline-asm statement on x86-64 (float in an SSE register), a plain identity elsewhere."""
    if v != types.float32:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        if not _X86:
            return args[0]
        fnty = ir.FunctionType(ir.FloatType(), [ir.FloatType()])
        return builder.asm(fnty, "", "=x,0", [args[0]], side_effect=False, name="opaque")

    return types.float32(types.float32), codegen


@intrinsic
def _prefetch(typingctx, arr, off):  # type: ignore[no-untyped-def]
    """Prefetch the cache line holding flat element ``off`` of ``arr`` (a hint: never faults)."""
    if not (isinstance(arr, types.Array) and isinstance(off, types.Integer)):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        o = context.cast(builder, args[1], signature.args[1], types.int64)
        i8p = ir.IntType(8).as_pointer()
        ptr = builder.bitcast(builder.gep(ary.data, [o]), i8p)
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(arr, off), codegen


@intrinsic
def _transpose16(typingctx, src, soff, sstride, dst, doff, dstride):  # type: ignore[no-untyped-def]
    """Copy a 16 x 16 float32 tile transposed: ``dst[doff + c * dstride + r] = src[soff + r * sstride + c]``.

    Offsets and row strides are in elements of the arrays' flat (C-contiguous) storage. Sixteen vector loads, a
    4-stage shuffle network (each stage swaps one bit of the row index with the same bit of the column index) and
    sixteen vector stores.
    """
    arrays_ok = all(isinstance(a, types.Array) and a.dtype == types.float32 for a in (src, dst))
    ints_ok = all(isinstance(t, types.Integer) for t in (soff, sstride, doff, dstride))
    if not (arrays_ok and ints_ok):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i32, i64 = ir.IntType(32), ir.IntType(64)
        vec = ir.VectorType(ir.FloatType(), 16)
        sa = context.make_array(signature.args[0])(context, builder, args[0])
        da = context.make_array(signature.args[3])(context, builder, args[3])
        so, ss, do, ds = (context.cast(builder, args[k], signature.args[k], types.int64) for k in (1, 2, 4, 5))
        rows = []
        for r in range(16):
            ptr = builder.gep(sa.data, [builder.add(so, builder.mul(ss, ir.Constant(i64, r)))])
            rows.append(builder.load(builder.bitcast(ptr, vec.as_pointer()), align=4))
        for k in (8, 4, 2, 1):
            lo = ir.Constant(ir.VectorType(i32, 16), [c if c & k == 0 else 16 + c - k for c in range(16)])
            hi = ir.Constant(ir.VectorType(i32, 16), [c + k if c & k == 0 else 16 + c for c in range(16)])
            for i in range(16):
                if i & k == 0:
                    a, b = rows[i], rows[i + k]
                    rows[i] = builder.shuffle_vector(a, b, lo)
                    rows[i + k] = builder.shuffle_vector(a, b, hi)
        for r in range(16):
            ptr = builder.gep(da.data, [builder.add(do, builder.mul(ds, ir.Constant(i64, r)))])
            builder.store(rows[r], builder.bitcast(ptr, vec.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.void(src, soff, sstride, dst, doff, dstride), codegen


# --------------------------------------------------------------------------------------------------------------------
# vectorisable float32 elementary functions

_LOG2E_F64 = 1.4426950408889634
_LOG2E = _f32(_LOG2E_F64)
_LN2 = _f32(0.6931471805599453)
_NLN2_HI = _f32(-0.693359375)  # -ln2 split: hi has 9 significant bits so k * hi is exact for |k| < 2**15
_NLN2_LO = _f32(2.1219444005469057e-04)
_EXP_LO = _f32(-87.33)  # below this 2**k would leave the normal range; the result is flushed to 0
_EXP_HI = _f32(88.3)  # keeps k <= 127
# exp(r) ~ 1 + r * (1 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * c6))))) on |r| <= ln2/2: a relative minimax fit
# made for this module (max fit error 3.1e-9, far below float32 rounding).
_E2 = _f32(0.499999934512636)
_E3 = _f32(0.16666520684569303)
_E4 = _f32(0.04166838744243725)
_E5 = _f32(0.008368710370617424)
_E6 = _f32(0.0013814610279999273)
# log1p(u) = 2 * atanh(s) with s = u / (2 + u) in [0, 1/3] for u in [0, 1]: 2 s (1 + w q(w)), w = s**2, q fitted
# (max fit error 4.6e-9).
_L0 = _f32(0.33333205220314)
_L1 = _f32(0.200108963163242)
_L2 = _f32(0.13999070628923993)
_L3 = _f32(0.1401390511906696)
# 2**f ~ 1 + f * (d1 + f * (d2 + ... + f * d6)) on |f| <= 1/2 (relative minimax fit, max fit error 2.0e-9).
_P1 = _f32(0.6931472028554141)
_P2 = _f32(0.24022647913583436)
_P3 = _f32(0.0555033247046706)
_P4 = _f32(0.009618437360522245)
_P5 = _f32(0.0013398874655545696)
_P6 = _f32(0.00015353361685412515)
_EXP2_LO = _f32(-126.0)
_EXP2_HI = _f32(127.0)
_SOFTPLUS_THRESHOLD = _f32(20.0)  # as torch.nn.functional.softplus: identity above


@njit(inline="always", fastmath=_FM, error_model="numpy")
def _exp(x):  # type: ignore[no-untyped-def]
    """float32 exp, vectorisable; 0 for x < -87.33 (and -inf), finite up to x = 88.5 (clamped above)."""
    xc = min(max(x, _EXP_LO), _EXP_HI)
    k = _rint(xc * _LOG2E)
    r = _fma(k, _NLN2_HI, xc)
    r = _fma(k, _NLN2_LO, r)
    p = _E5 + r * _E6
    p = _E4 + r * p
    p = _E3 + r * p
    p = _E2 + r * p
    p = _ONE + r * p
    p = _ONE + r * p
    y = p * _pow2(k)
    return y if x >= _EXP_LO else _ZERO


@njit(inline="always", fastmath=_FM, error_model="numpy")
def _exp2(t):  # type: ignore[no-untyped-def]
    """float32 2**t, vectorisable; 0 for t < -126 (and -inf), clamped at t = 127 above.

    The scan calls it as ``_exp2(dt * (A * log2 e))`` with ``A * log2 e`` rounded once per channel: one multiply less
    than ``exp`` and no range-reduction FMAs (the reduction ``t - rint(t)`` is exact). The extra error, ~6e-8 * |t|
    relative, is of the order of the rounding of ``dt * A`` itself.
    """
    tc = min(t, _EXP2_HI)
    k = _rint(tc)
    f = tc - k
    p = _P5 + f * _P6
    p = _P4 + f * p
    p = _P3 + f * p
    p = _P2 + f * p
    p = _P1 + f * p
    p = _ONE + f * p
    y = p * _pow2(k)
    return y if t >= _EXP2_LO else _ZERO


@njit(inline="always", fastmath=_FM, error_model="numpy")
def _log1p_small(u):  # type: ignore[no-untyped-def]
    """log(1 + u) for u in [0, 1], with full relative accuracy for tiny u."""
    s = u / (_TWO + u)
    w = s * s
    q = _L2 + w * _L3
    q = _L1 + w * q
    q = _L0 + w * q
    return _TWO * s * (_ONE + w * q)


@njit(inline="always", fastmath=_FM, error_model="numpy")
def _sigmoid_from(v, e):  # type: ignore[no-untyped-def]
    """sigmoid(v) given e = exp(-|v|)."""
    inv = _ONE / (_ONE + e)
    return inv if v >= _ZERO else e * inv


@njit(**_JIT)
def _exp_array(x, out, base2):  # type: ignore[no-untyped-def]
    if base2:
        for i in range(x.shape[0]):
            out[i] = _exp2(x[i])
    else:
        for i in range(x.shape[0]):
            out[i] = _exp(x[i])


def exp_f32(x: torch.Tensor) -> torch.Tensor:
    """The kernels' float32 exp (used for softplus and the gate) applied to a tensor, for tests and inspection."""
    xf = x.detach().to(torch.float32).contiguous().reshape(-1)
    out = torch.empty_like(xf)
    _exp_array(xf.numpy(), out.numpy(), False)
    return out.reshape(x.shape)


def exp2_f32(t: torch.Tensor) -> torch.Tensor:
    """The kernels' float32 2**t (used for the decays exp(dt * A)) applied to a tensor, for tests and inspection."""
    tf = t.detach().to(torch.float32).contiguous().reshape(-1)
    out = torch.empty_like(tf)
    _exp_array(tf.numpy(), out.numpy(), True)
    return out.reshape(t.shape)


# --------------------------------------------------------------------------------------------------------------------
# tile staging: (b, e, l) rows <-> (task, T, W) lane buffers


@njit(**_JIT)
def _load_tile(src, bi, c0, t0, m, lc, buf, task):  # type: ignore[no-untyped-def]
    """buf[task, i, q] = src[bi, c0 + q, t0 + i] for i < lc, q < m; lanes q >= m are zeroed."""
    ne, nl = src.shape[1], src.shape[2]
    chunk = buf.shape[1]
    if m == _W and lc % 16 == 0:
        base = (bi * ne + c0) * nl + t0
        for i0 in range(0, lc, 16):
            _transpose16(src, base + i0, nl, buf, (task * chunk + i0) * _W, _W)
    else:
        for i in range(lc):
            for q in range(_W):
                buf[task, i, q] = _ZERO
        for q in range(m):
            for i in range(lc):
                buf[task, i, q] = _opaque(src[bi, c0 + q, t0 + i])


@njit(**_JIT)
def _prefetch_tile(src, bi, c0, t0, m, lc):  # type: ignore[no-untyped-def]
    """Prefetch rows src[bi, c0 + q, t0 : t0 + lc] (q < m): the next chunk's tile, so that it is in cache when its
    turn comes (each row is read in short bursts, too many streams for the hardware prefetcher)."""
    ne, nl = src.shape[1], src.shape[2]
    for q in range(m):
        base = (bi * ne + c0 + q) * nl + t0
        for i in range(0, lc, 16):
            _prefetch(src, base + i)
        _prefetch(src, base + lc - 1)


@njit(**_JIT)
def _fill_lanes(A, D, bias, has_D, has_bias, c0, AW, PW, task, gi):  # type: ignore[no-untyped-def]
    """Per-channel parameters of group ``gi`` in lane layout: AW = A * log2(e), PW = (D, delta_bias); 0 in padding."""
    ne, nn = A.shape
    for q in range(_W):
        ch = c0 + q
        live = ch < ne
        for j in range(nn):
            AW[task, gi, j, q] = _f32(np.float64(A[ch, j]) * _LOG2E_F64) if live else _ZERO
        PW[task, gi, 0, q] = D[ch] if (live and has_D) else _ZERO
        PW[task, gi, 1, q] = bias[ch] if (live and has_bias) else _ZERO


@njit(**_JIT)
def _store_tile(buf, task, dst, bi, c0, t0, m, lc):  # type: ignore[no-untyped-def]
    """dst[bi, c0 + q, t0 + i] = buf[task, i, q] for i < lc, q < m."""
    ne, nl = dst.shape[1], dst.shape[2]
    chunk = buf.shape[1]
    if m == _W and lc % 16 == 0:
        base = (bi * ne + c0) * nl + t0
        for i0 in range(0, lc, 16):
            _transpose16(buf, (task * chunk + i0) * _W, _W, dst, base + i0, nl)
    else:
        for q in range(m):
            for i in range(lc):
                dst[bi, c0 + q, t0 + i] = _opaque(buf[task, i, q])


@njit(inline="always", **_JIT)
def _recur_step(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i):  # type: ignore[no-untyped-def]
    """One step of the recurrence for state index ``j`` of group ``gi``, 16 channels per vector:
    ``h = 2**(dt * A log2 e) * h + dt x B``, ``y += C h``. Staged buffers (see the kernels): DB dt, UB dt * x,
    YB y (lane layout, step i); AW, HS (state index j); BB, CB (B and C, state index first)."""
    bb = BB[task, j, i]
    cc = CB[task, j, i]
    for q in range(_W):
        hv = _exp2(DB[task, i, q] * AW[task, gi, j, q]) * HS[task, gi, j, q]
        hv += UB[task, i, q] * bb
        HS[task, gi, j, q] = hv
        YB[task, i, q] += cc * hv


@njit(inline="always", **_JIT)
def _recur_step4(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i):  # type: ignore[no-untyped-def]
    """:func:`_recur_step` for the four state indices ``j .. j+3`` at once. Four independent decay-and-update
    chains in one loop body give the core work to overlap (one chain leaves it waiting on the latency of the
    ``2**t`` polynomial; measured ~1.3-1.7x faster per update on Zen 4), and ``dt``, ``dt x`` and ``y`` are read
    and written once for four states."""
    b0 = BB[task, j, i]
    b1 = BB[task, j + 1, i]
    b2 = BB[task, j + 2, i]
    b3 = BB[task, j + 3, i]
    c0 = CB[task, j, i]
    c1 = CB[task, j + 1, i]
    c2 = CB[task, j + 2, i]
    c3 = CB[task, j + 3, i]
    for q in range(_W):
        d = DB[task, i, q]
        u = UB[task, i, q]
        h0 = _exp2(d * AW[task, gi, j, q]) * HS[task, gi, j, q] + u * b0
        h1 = _exp2(d * AW[task, gi, j + 1, q]) * HS[task, gi, j + 1, q] + u * b1
        h2 = _exp2(d * AW[task, gi, j + 2, q]) * HS[task, gi, j + 2, q] + u * b2
        h3 = _exp2(d * AW[task, gi, j + 3, q]) * HS[task, gi, j + 3, q] + u * b3
        HS[task, gi, j, q] = h0
        HS[task, gi, j + 1, q] = h1
        HS[task, gi, j + 2, q] = h2
        HS[task, gi, j + 3, q] = h3
        YB[task, i, q] += (c0 * h0 + c1 * h1) + (c2 * h2 + c3 * h3)


# --------------------------------------------------------------------------------------------------------------------
# kernels
#
# Shapes (all float32, C-contiguous): x, delta, out, gy, dx, ddelta, dz (b, e, l); A (e, n); Bt, Ct (b, l, n);
# D, bias (e,) (or dummies when absent); z (b, e, l) (or a dummy); ckpt (b, n_groups, n_checkpoints, n, W): the
# state entering steps 0, ck_len, 2 ck_len, ... The forward stages ``chunk`` steps at a time (a multiple of ck_len,
# longer bursts per row read better); the backward works one checkpoint interval at a time.
# Inside the prange loops arrays are only ever indexed with scalars (no views), see the module docstring.


@njit(parallel=True, **_JIT)
def _fwd_kernel(  # type: ignore[no-untyped-def]
    x, delta, A, Bt, Ct, D, z, bias, out, ckpt, has_D, has_z, has_bias, softplus, save, chunk, ck_len, nblk,
):  # fmt: skip
    nb, ne, nl = x.shape
    nn = A.shape[1]
    ngr = (ne + _W - 1) // _W
    nch = (nl + chunk - 1) // chunk
    ntask = nb * nblk
    gmax = (ngr + nblk - 1) // nblk
    HS = np.empty((ntask, gmax, nn, _W), np.float32)  # state of each group
    AW = np.empty((ntask, gmax, nn, _W), np.float32)  # A in lane layout (zero in padding lanes)
    PW = np.empty((ntask, gmax, 2, _W), np.float32)  # D and delta_bias in lane layout
    XB = np.empty((ntask, chunk, _W), np.float32)  # x
    DB = np.empty((ntask, chunk, _W), np.float32)  # delta, then dt
    UB = np.empty((ntask, chunk, _W), np.float32)  # dt * x
    ZB = np.empty((ntask, chunk, _W), np.float32)  # z
    YB = np.empty((ntask, chunk, _W), np.float32)  # output
    BB = np.empty((ntask, nn, chunk), np.float32)  # B and C of the chunk in scan order, state index first
    CB = np.empty((ntask, nn, chunk), np.float32)
    for task in prange(ntask):
        bi = task // nblk
        blk = task - bi * nblk
        g0 = blk * ngr // nblk
        g1 = (blk + 1) * ngr // nblk
        for gi in range(g1 - g0):
            c0 = (g0 + gi) * _W
            _fill_lanes(A, D, bias, has_D, has_bias, c0, AW, PW, task, gi)
            for j in range(nn):
                for q in range(_W):
                    HS[task, gi, j, q] = _ZERO
        for c in range(nch):
            t0 = c * chunk
            lc = min(chunk, nl - t0)
            for i in range(lc):
                for j in range(nn):
                    BB[task, j, i] = Bt[bi, t0 + i, j]
                    CB[task, j, i] = Ct[bi, t0 + i, j]
            for gi in range(g1 - g0):
                c0 = (g0 + gi) * _W
                m = min(_W, ne - c0)
                _load_tile(x, bi, c0, t0, m, lc, XB, task)
                _load_tile(delta, bi, c0, t0, m, lc, DB, task)
                if has_z:
                    _load_tile(z, bi, c0, t0, m, lc, ZB, task)
                if c + 1 < nch:
                    tn = t0 + chunk
                    ln = min(chunk, nl - tn)
                    _prefetch_tile(x, bi, c0, tn, m, ln)
                    _prefetch_tile(delta, bi, c0, tn, m, ln)
                    if has_z:
                        _prefetch_tile(z, bi, c0, tn, m, ln)
                # step sizes
                if softplus:
                    for i in range(lc):
                        for q in range(_W):
                            v = DB[task, i, q] + PW[task, gi, 1, q]
                            sp = max(v, _ZERO) + _log1p_small(_exp(-abs(v)))
                            v = sp if v <= _SOFTPLUS_THRESHOLD else v  # NaN stays NaN
                            DB[task, i, q] = v
                            UB[task, i, q] = v * XB[task, i, q]
                else:
                    for i in range(lc):
                        for q in range(_W):
                            v = DB[task, i, q] + PW[task, gi, 1, q]
                            DB[task, i, q] = v
                            UB[task, i, q] = v * XB[task, i, q]
                # the recurrence: 16 channels per vector. State index outermost: one state vector lives in a
                # register through the whole chunk (a single FMA chain per step), the output accumulates in YB
                for i in range(lc):
                    for q in range(_W):
                        YB[task, i, q] = _ZERO
                # four state indices per pass (see _recur_step4), then the rest one by one
                for j in range(0, nn - 3, 4):
                    if save:  # the state entering every ck_len-th step is kept for the backward
                        for s0 in range(0, lc, ck_len):  # chunk is a multiple of ck_len: s0 is a checkpoint step
                            for jj in range(j, j + 4):
                                for q in range(_W):
                                    ckpt[bi, g0 + gi, (t0 + s0) // ck_len, jj, q] = HS[task, gi, jj, q]
                            for i in range(s0, min(s0 + ck_len, lc)):
                                _recur_step4(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i)
                    else:  # the same loop from 0: numba then knows i >= 0 and indexes without wraparound fixes
                        for i in range(lc):
                            _recur_step4(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i)
                for j in range(nn - nn % 4, nn):
                    if save:
                        for s0 in range(0, lc, ck_len):
                            for q in range(_W):
                                ckpt[bi, g0 + gi, (t0 + s0) // ck_len, j, q] = HS[task, gi, j, q]
                            for i in range(s0, min(s0 + ck_len, lc)):
                                _recur_step(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i)
                    else:
                        for i in range(lc):
                            _recur_step(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i)
                # D skip and gate
                if has_z:
                    for i in range(lc):
                        for q in range(_W):
                            zq = ZB[task, i, q]
                            y = YB[task, i, q] + PW[task, gi, 0, q] * XB[task, i, q]
                            YB[task, i, q] = y * zq * _sigmoid_from(zq, _exp(-abs(zq)))
                elif has_D:
                    for i in range(lc):
                        for q in range(_W):
                            YB[task, i, q] += PW[task, gi, 0, q] * XB[task, i, q]
                _store_tile(YB, task, out, bi, c0, t0, m, lc)


@njit(parallel=True, **_JIT)
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
    ngr = (ne + _W - 1) // _W
    nch = (nl + chunk - 1) // chunk
    ntask = nb * nblk
    gmax = (ngr + nblk - 1) // nblk
    GS = np.empty((ntask, gmax, nn, _W), np.float32)  # adjoint carried into a chunk from the chunk after it
    AW = np.empty((ntask, gmax, nn, _W), np.float32)
    PW = np.empty((ntask, gmax, 2, _W), np.float32)  # D, delta_bias
    DAW = np.empty((ntask, gmax, nn, _W), np.float32)  # dA accumulators
    PD = np.empty((ntask, gmax, 2, _W), np.float32)  # dD, d delta_bias accumulators
    XB = np.empty((ntask, chunk, _W), np.float32)  # x
    DB = np.empty((ntask, chunk, _W), np.float32)  # delta, then dt
    UB = np.empty((ntask, chunk, _W), np.float32)  # dt * x
    SG = np.empty((ntask, chunk, _W), np.float32)  # d dt / d delta
    ZB = np.empty((ntask, chunk, _W), np.float32)  # z
    GB = np.empty((ntask, chunk, _W), np.float32)  # output gradient, then gradient of the scan output
    SB = np.empty((ntask, chunk, _W), np.float32)  # scan output <C, h> (recomputed)
    SAB = np.empty((ntask, chunk, _W), np.float32)  # sum_n G a h_prev A log2(e)  (d loss / d dt via the decay)
    SBB = np.empty((ntask, chunk, _W), np.float32)  # sum_n G B            (d loss / d (dt x))
    DXO = np.empty((ntask, chunk, _W), np.float32)
    DDO = np.empty((ntask, chunk, _W), np.float32)
    DZO = np.empty((ntask, chunk, _W), np.float32)
    AB = np.empty((ntask, chunk, nn, _W), np.float32)  # exp(dt A) of the chunk
    HB = np.empty((ntask, chunk + 1, nn, _W), np.float32)  # states: row 0 entering the chunk, row i + 1 after step i
    DBA = np.empty((ntask, chunk, nn, _W), np.float32)  # dB of the chunk, per lane (summed over groups)
    DCA = np.empty((ntask, chunk, nn, _W), np.float32)
    for task in prange(ntask):
        bi = task // nblk
        blk = task - bi * nblk
        g0 = blk * ngr // nblk
        g1 = (blk + 1) * ngr // nblk
        for gi in range(g1 - g0):
            c0 = (g0 + gi) * _W
            _fill_lanes(A, D, bias, has_D, has_bias, c0, AW, PW, task, gi)
            for j in range(nn):
                for q in range(_W):
                    GS[task, gi, j, q] = _ZERO
                    DAW[task, gi, j, q] = _ZERO
            for q in range(_W):
                PD[task, gi, 0, q] = _ZERO
                PD[task, gi, 1, q] = _ZERO
        for cr in range(nch):
            c = nch - 1 - cr
            t0 = c * chunk
            lc = min(chunk, nl - t0)
            for i in range(lc):
                for j in range(nn):
                    for q in range(_W):
                        DBA[task, i, j, q] = _ZERO
                        DCA[task, i, j, q] = _ZERO
            for gi in range(g1 - g0):
                c0 = (g0 + gi) * _W
                m = min(_W, ne - c0)
                _load_tile(x, bi, c0, t0, m, lc, XB, task)
                _load_tile(delta, bi, c0, t0, m, lc, DB, task)
                _load_tile(gy, bi, c0, t0, m, lc, GB, task)
                if has_z:
                    _load_tile(z, bi, c0, t0, m, lc, ZB, task)
                if c > 0:
                    tn = t0 - chunk
                    _prefetch_tile(x, bi, c0, tn, m, chunk)
                    _prefetch_tile(delta, bi, c0, tn, m, chunk)
                    _prefetch_tile(gy, bi, c0, tn, m, chunk)
                    if has_z:
                        _prefetch_tile(z, bi, c0, tn, m, chunk)
                # step sizes and their derivative
                if softplus:
                    for i in range(lc):
                        for q in range(_W):
                            v = DB[task, i, q] + PW[task, gi, 1, q]
                            ev = _exp(-abs(v))
                            sp = max(v, _ZERO) + _log1p_small(ev)
                            sg = _sigmoid_from(v, ev)
                            small = v <= _SOFTPLUS_THRESHOLD  # False for NaN, which then stays NaN
                            v = sp if small else v
                            DB[task, i, q] = v
                            SG[task, i, q] = sg if small else _ONE
                            UB[task, i, q] = v * XB[task, i, q]
                else:
                    for i in range(lc):
                        for q in range(_W):
                            v = DB[task, i, q] + PW[task, gi, 1, q]
                            DB[task, i, q] = v
                            SG[task, i, q] = _ONE
                            UB[task, i, q] = v * XB[task, i, q]
                # gate and skip: gradient of the scan output (gs), dD, and dz up to its factor (s + D x)
                if has_z:
                    for i in range(lc):
                        for q in range(_W):
                            zq = ZB[task, i, q]
                            sig = _sigmoid_from(zq, _exp(-abs(zq)))
                            g = GB[task, i, q]
                            DZO[task, i, q] = g * sig * (_ONE + zq * (_ONE - sig))
                            gs = g * zq * sig
                            GB[task, i, q] = gs
                            PD[task, gi, 0, q] += gs * XB[task, i, q]
                else:
                    for i in range(lc):
                        for q in range(_W):
                            PD[task, gi, 0, q] += GB[task, i, q] * XB[task, i, q]
                # recompute the chunk's decays and states from its checkpoint; dC needs only the states
                for j in range(nn):
                    for q in range(_W):
                        HB[task, 0, j, q] = ckpt[bi, g0 + gi, c, j, q]
                for i in range(lc):
                    for q in range(_W):
                        SB[task, i, q] = _ZERO
                    for j in range(nn):
                        bb = Bt[bi, t0 + i, j]
                        cc = Ct[bi, t0 + i, j]
                        for q in range(_W):
                            a = _exp2(DB[task, i, q] * AW[task, gi, j, q])
                            AB[task, i, j, q] = a
                            hv = a * HB[task, i, j, q] + UB[task, i, q] * bb
                            HB[task, i + 1, j, q] = hv
                            SB[task, i, q] += cc * hv
                            DCA[task, i, j, q] += GB[task, i, q] * hv
                if has_z:
                    for i in range(lc):
                        for q in range(_W):
                            DZO[task, i, q] *= SB[task, i, q] + PW[task, gi, 0, q] * XB[task, i, q]
                # adjoint recurrence, backwards through the chunk, and the gradients it feeds
                for ir_ in range(lc):
                    i = lc - 1 - ir_
                    for q in range(_W):
                        SAB[task, i, q] = _ZERO
                        SBB[task, i, q] = _ZERO
                    for j in range(nn):
                        bb = Bt[bi, t0 + i, j]
                        cc = Ct[bi, t0 + i, j]
                        for q in range(_W):
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
                    for q in range(_W):
                        sbb = SBB[task, i, q]
                        DXO[task, i, q] = GB[task, i, q] * PW[task, gi, 0, q] + sbb * DB[task, i, q]
                        ddt = (sbb * XB[task, i, q] + SAB[task, i, q] * _LN2) * SG[task, i, q]
                        DDO[task, i, q] = ddt
                        PD[task, gi, 1, q] += ddt
                _store_tile(DXO, task, dx_out, bi, c0, t0, m, lc)
                _store_tile(DDO, task, ddelta_out, bi, c0, t0, m, lc)
                if has_z:
                    _store_tile(DZO, task, dz_out, bi, c0, t0, m, lc)
            # dB, dC of this chunk: sum over lanes (the groups were already summed into the lanes)
            for i in range(lc):
                for j in range(nn):
                    sb_ = _ZERO
                    sc_ = _ZERO
                    for q in range(_W):
                        sb_ += DBA[task, i, j, q]
                        sc_ += DCA[task, i, j, q]
                    dB_p[bi, blk, t0 + i, j] = sb_
                    dC_p[bi, blk, t0 + i, j] = sc_
        for gi in range(g1 - g0):
            c0 = (g0 + gi) * _W
            for q in range(min(_W, ne - c0)):
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


def _threads() -> int:
    """numba's thread count for the next kernel: torch's, clipped to the size of numba's pool.

    Starting numba's thread pool (on the first call) resets the process-wide OpenMP thread count that
    ``torch.get_num_threads()`` reports; torch's setting is put back.
    """
    torch_threads = torch.get_num_threads()
    nt = max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(nt)
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    return nt


def _launch(kernel, *args) -> None:  # type: ignore[no-untyped-def]
    """Run a parallel kernel, putting torch's thread count back should numba's OpenMP runtime have changed it."""
    torch_threads = torch.get_num_threads()
    try:
        kernel(*args)
    finally:
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)


def _n_blocks(b: int, e: int, threads: int) -> int:
    """Blocks of channel groups per batch row: b * n_blocks is a multiple of the thread count when e allows it."""
    groups = (e + _W - 1) // _W
    return max(1, min(groups, threads // math.gcd(b, threads)))


_NO_STATE = np.zeros((1, 1, 1), np.float32)


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
    nblk = _n_blocks(b, e, _threads())
    xf, df, Af = _f32c(x), _f32c(delta), _f32c(A)
    Bt = B.detach().to(torch.float32).transpose(1, 2).contiguous()  # (b, l, n): a time step's n values adjacent
    Ct = C.detach().to(torch.float32).transpose(1, 2).contiguous()
    Df = _f32c(D) if D is not None else _dummy(1)
    zf = _f32c(z) if z is not None else _dummy(1, 1, 1)
    bf = _f32c(delta_bias) if delta_bias is not None else _dummy(1)
    ngr = (e + _W - 1) // _W
    nck = (l + ck_len - 1) // ck_len
    ckpt = torch.empty(b, ngr, nck, n, _W) if save else _dummy(1, 1, 1, 1, 1)
    out = torch.empty(b, e, l)
    _launch(
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
        nblk = _n_blocks(b, e, _threads())
        gyf = _f32c(gy)
        dx = torch.empty_like(x)
        ddelta = torch.empty_like(x)
        dz = torch.empty_like(x) if has_z else _dummy(1, 1, 1)
        dA_p = torch.empty(b, e, n)
        dD_p = torch.empty(b, e)
        dbias_p = torch.empty(b, e)
        dB_p = torch.empty(b, nblk, l, n)
        dC_p = torch.empty(b, nblk, l, n)
        _launch(
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
            strides; CPU tensors only. Computed in float32.
        delta_softplus: apply softplus to ``delta + delta_bias``.

    Returns:
        (b, e, l) in ``x.dtype``.
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
    if b == 0 or e == 0 or l == 0 or n == 0:  # nothing to scan: the reference is exact and trivial here
        from caduceus_plugin.ops.scan import selective_scan_ref

        return selective_scan_ref(x, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _SelectiveScanNumba.apply(x, delta, A, B, C, D, z, delta_bias, delta_softplus)
    out, _ = _forward(x, delta, A, B, C, D, z, delta_bias, delta_softplus, save=False)
    return out
