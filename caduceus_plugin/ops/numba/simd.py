"""Building blocks of the numba CPU scan kernels (:mod:`.scan` for training, :mod:`.stream` for inference).

Everything here is shared by both kernel modules: compile options, LLVM intrinsics, a vectorisable float32 ``exp``,
bf16 widening and rounding, 16-wide copies, the staging of ``(b, e, l)`` rows into lane buffers and back, the
recurrence step, and the torch-side thread handling around a parallel kernel.

Lanes. Channels are processed in groups of ``W = 16`` (one AVX-512 register of float32): lane ``q`` of every vector
is channel ``c0 + q``, so the state update ``h = exp(dt * A) * h + dt * x * B`` for one state index and one time step
is a single 16-wide vector operation with no horizontal reduction (:func:`recur_step`). Lane buffers are
``(task, T, W)``; :func:`load_tile` / :func:`store_tile` move ``(b, e, l)`` rows in and out of them with an
in-register 16 x 16 transpose (an LLVM intrinsic).

exp. ``b * e * l * n`` of them make it the cost centre, and numba has no vector math library here, so the kernels
use their own float32 ``exp``/``2**t`` (:func:`vexp`, :func:`vexp2`) written to vectorise: range reduction, a
degree-6 minimax polynomial and a ``2**k`` scale built from the exponent bits (i32 -> f32 bitcast intrinsic).
Relative error < 1e-7 (exp on [-87, 0]), < 2e-7 (2**t on [-126, 0]); arguments below the normal range (and -inf)
give exactly 0. :func:`exp_f32` / :func:`exp2_f32` apply them to tensors, for tests and inspection.

bf16. Activations may arrive as bf16 bit patterns in int16 arrays: :func:`as_f32`, :func:`as_elem`,
:func:`copy16` and :func:`add16` widen them exactly to float32 on read and round to the nearest bf16 (ties to even)
on write, so all arithmetic stays float32.

numba is imported at this module's import; nothing in the package imports the numba kernels at import time.
Functions are compiled on first use and cached on disk (``cache=True`` in :data:`JIT`), keyed by the source of every
kernel module (:func:`njit`: numba alone would key a kernel on its own file and miss a change to a helper here).

Vector width. LLVM's tuning for Intel cores with AVX-512 (Skylake-X to Sapphire Rapids, and the virtual
"Xeon Processor" of cloud machines) prefers 256-bit vectors in auto-vectorised loops (``prefer-256-bit``: early
AVX-512 parts lowered their clock on 512-bit instructions), so there the 16-lane loops of these kernels compile to
pairs of ymm operations and use half of each FMA unit. Before the first kernel is compiled this module turns that
preference off (:func:`wide_vectors`), unless ``$CADUCEUS_NUMBA_AVX512`` is off, ``$NUMBA_CPU_NAME`` or
``$NUMBA_CPU_FEATURES`` is set, the CPU has no AVX-512, the CPU is a Skylake-SP / Cascade Lake part (LLVM names
``skylake-avx512``, ``cascadelake``: the ones whose clock drops most under 512-bit arithmetic; not measured here,
so LLVM's choice is kept there), or numba has already built its CPU target (another library compiled first).
Measured on an Intel Xeon with AMX: 1.09x (PS) and 1.12x (Ph) faster inference at 32 kbp
(``benchmarks/results/README.md``). The results agree to float32 rounding (same operations per lane; a few sums
may be ordered differently).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import platform
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from caduceus_plugin import settings

__all__ = [
    "FM",
    "JIT",
    "KERNEL_SOURCES_DIGEST",
    "LN2",
    "ONE",
    "SOFTPLUS_THRESHOLD",
    "ZERO",
    "W",
    "add16",
    "as_elem",
    "as_f32",
    "copy16",
    "exp2_f32",
    "exp_f32",
    "fill_lanes",
    "kernel_threads",
    "launch",
    "load_tile",
    "log1p_small",
    "n_blocks",
    "njit",
    "prefetch_tile",
    "recur_step",
    "recur_step4",
    "sigmoid_from",
    "store_tile",
    "vexp",
    "vexp2",
]

# Fast-math without nnan/ninf: reassociation (vectorised reductions), contraction (FMA) and cheap division, while
# comparisons and selects keep their IEEE meaning for inf and NaN. error_model="numpy": no zero-division branches.
FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
JIT = {"fastmath": FM, "error_model": "numpy", "cache": True}

#: LLVM CPU names where LLVM's 256-bit preference is kept (see the module docstring).
_KEEP_256 = frozenset({"skylake-avx512", "cascadelake"})


def wide_vectors() -> str:
    """Let LLVM use 512-bit vectors in this process's numba kernels where the CPU has AVX-512 (see the module
    docstring); says what it did. Must run before numba's CPU target is built (the first ``@njit`` of the process)."""
    from numba.core import config, registry

    if not settings.NUMBA_AVX512.get():
        return "LLVM's tuning ($CADUCEUS_NUMBA_AVX512 is off)"
    if config.CPU_NAME is not None or config.CPU_FEATURES is not None:
        return "as $NUMBA_CPU_NAME / $NUMBA_CPU_FEATURES say"
    if "_toplevel_target_context" in vars(registry.cpu_target):
        return "LLVM's tuning (numba's CPU target was built before this module was imported)"
    from llvmlite import binding as ll

    features = ll.get_host_cpu_features().flatten()
    if "+avx512f" not in features.split(","):
        return "LLVM's tuning (no AVX-512)"
    if ll.get_host_cpu_name() in _KEEP_256:
        return f"LLVM's tuning ({ll.get_host_cpu_name()}: 512-bit arithmetic lowers its clock)"
    config.CPU_FEATURES = features + ",-prefer-256-bit"
    return "512-bit (prefer-256-bit off)"


#: What :func:`wide_vectors` did at this module's import (``caduceus info`` prints it).
VECTOR_WIDTH = wide_vectors()

# --------------------------------------------------------------------------------------------------------------------
# the disk cache: keyed by every kernel module's source, not only the decorated function's own file


def _kernel_sources_digest() -> str:
    """SHA-256 (16 hex digits) of the name and bytes of every ``.py`` file in this folder (the kernel modules)."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


#: Part of every cached kernel's source stamp (see :func:`njit`).
KERNEL_SOURCES_DIGEST = _kernel_sources_digest()


def _stamped_locators() -> tuple[Any, list[Any]] | None:
    """numba's cache implementation class and its locator list with the source-file locators (user-provided,
    in-tree, user-wide) subclassed to add :data:`KERNEL_SOURCES_DIGEST` to their source stamp, the others as they
    are; None where this numba's caching module looks different."""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)  # the latter: older numba
    own = getattr(impl, "_locator_classes", None)
    if not isinstance(own, list):
        return None
    stamped = []
    for base in own:
        if base.__name__.lstrip("_") not in ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator"):
            stamped.append(base)
            continue

        def get_source_stamp(self: Any, _base: Any = base) -> Any:
            return (_base.get_source_stamp(self), KERNEL_SOURCES_DIGEST)

        stamped.append(type(f"Stamped{base.__name__.lstrip('_')}", (base,), {"get_source_stamp": get_source_stamp}))
    return impl, stamped


_LOCATORS = _stamped_locators()


@contextlib.contextmanager
def _kernel_locators() -> Iterator[None]:
    """numba's cache implementation uses the stamped locators while a kernel is decorated (its cache picks a locator
    then), and numba's own after: other numba code in the process is not touched. A user's
    ``$NUMBA_CACHE_LOCATOR_CLASSES`` (numba >= 0.68) still wins, as numba reads it first."""
    if _LOCATORS is None:
        yield
        return
    impl, stamped = _LOCATORS
    own = impl._locator_classes
    impl._locator_classes = stamped
    try:
        yield
    finally:
        impl._locator_classes = own


def njit(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """``numba.njit`` for the kernel modules. numba keys a cached function on its own file only, so a kernel in
    ``stream.py`` that inlines a helper of this module would load its old machine code after this module changed
    (numba#9563 would extend its invalidation to other files; an editable install after ``git pull`` would run
    stale kernels with no sign of it). With
    ``cache=True`` the source stamp also carries :data:`KERNEL_SOURCES_DIGEST`: a change to any kernel module
    recompiles every cached kernel. Same locations as numba's (``__pycache__`` beside the source, else the user-wide
    cache, or ``$NUMBA_CACHE_DIR``)."""

    def decorate(f: Callable[..., Any]) -> Any:
        if not options.get("cache"):
            return numba.njit(**options)(f)
        with _kernel_locators():
            return numba.njit(**options)(f)

    return decorate if fn is None else decorate(fn)


W = 16  # lanes: channels per group (one 512-bit register of float32)
_X86 = platform.machine().lower() in ("x86_64", "amd64")

_f32 = np.float32
ZERO = _f32(0.0)
ONE = _f32(1.0)
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
def _pow2_biased(typingctx, s):  # type: ignore[no-untyped-def]
    """2**k from ``s = k + POW2_BIAS`` (k an integer in [-127, 128]; the sum is exact): the low 9 mantissa bits of
    ``s`` hold ``k + 127``, the biased exponent of 2**k, and one left shift by 23 moves them into the exponent field
    and everything above out of the word (k = -127 gives the bit pattern of +0.0). One integer shift where
    :func:`_pow2` needs a float -> int conversion, an add and a shift, and no integer constant to keep in a register
    (the scan's loop runs out of AVX2's 16 vector registers)."""
    if s != types.float32:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i32 = ir.IntType(32)
        bits = builder.shl(builder.bitcast(args[0], i32), ir.Constant(i32, 23))
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
LN2 = _f32(0.6931471805599453)
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
_EXP2_LO = _f32(-127.0)  # clamp: k = -127 gives exactly 0 (for t < -126.5; -126.5 rounds to k = -126)
_EXP2_HI = _f32(127.0)
POW2_BIAS = _f32(1.5 * 2**23 + 127)  # k + POW2_BIAS is exact for |k| < 2**22; see _pow2_biased
SOFTPLUS_THRESHOLD = _f32(20.0)  # as torch.nn.functional.softplus: identity above


@njit(inline="always", fastmath=FM, error_model="numpy")
def vexp(x):  # type: ignore[no-untyped-def]
    """float32 exp, vectorisable; 0 for x < -87.33 (and -inf), finite up to x = 88.5 (clamped above)."""
    xc = min(max(x, _EXP_LO), _EXP_HI)
    k = _rint(xc * _LOG2E)
    r = _fma(k, _NLN2_HI, xc)
    r = _fma(k, _NLN2_LO, r)
    p = _E5 + r * _E6
    p = _E4 + r * p
    p = _E3 + r * p
    p = _E2 + r * p
    p = ONE + r * p
    p = ONE + r * p
    y = p * _pow2(k)
    return y if x >= _EXP_LO else ZERO


@njit(inline="always", fastmath=FM, error_model="numpy")
def vexp2(t):  # type: ignore[no-untyped-def]
    """float32 2**t, vectorisable; 0 for t < -126.5 (and -inf; from -126.5 to -126 a subnormal), clamped at
    t = 127 above.

    The scan calls it as ``vexp2(dt * (A * log2 e))`` with ``A * log2 e`` rounded once per channel: one multiply less
    than ``exp`` and no range-reduction FMAs (the reduction ``t - rint(t)`` is exact). The extra error, ~6e-8 * |t|
    relative, is of the order of the rounding of ``dt * A`` itself. Underflow is a clamp, not a compare and select,
    and the scale ``2**k`` is built from ``k + POW2_BIAS`` (:func:`_pow2_biased`): three vector operations and a
    register fewer per decay than a select and :func:`_pow2`, and the same value for every float32 t >= -126
    (all 2.25e9 of [-126, 127] compared when it changed; integers and clamps tested). On AVX2 the stream scan's
    hot loop has 229 instructions where it had 263 (many of the rest are spills: 16 ymm registers hold too little of
    a 16-lane, 4-state step); the whole scan of a 2M-model forward on 2 Zen 3 cores showed no change beyond that
    machine's noise (paired ratios 0.90-1.02 over 4 alternating runs of ``benchmarks/profile_inference.py``).
    """
    tc = min(max(t, _EXP2_LO), _EXP2_HI)
    k = _rint(tc)
    f = tc - k
    p = _P5 + f * _P6
    p = _P4 + f * p
    p = _P3 + f * p
    p = _P2 + f * p
    p = _P1 + f * p
    p = ONE + f * p
    return p * _pow2_biased(k + POW2_BIAS)


@njit(inline="always", fastmath=FM, error_model="numpy")
def log1p_small(u):  # type: ignore[no-untyped-def]
    """log(1 + u) for u in [0, 1], with full relative accuracy for tiny u."""
    s = u / (_TWO + u)
    w = s * s
    q = _L2 + w * _L3
    q = _L1 + w * q
    q = _L0 + w * q
    return _TWO * s * (ONE + w * q)


@njit(inline="always", fastmath=FM, error_model="numpy")
def sigmoid_from(v, e):  # type: ignore[no-untyped-def]
    """sigmoid(v) given e = exp(-|v|)."""
    inv = ONE / (ONE + e)
    return inv if v >= ZERO else e * inv


@njit(**JIT)
def _exp_array(x, out, base2):  # type: ignore[no-untyped-def]
    if base2:
        for i in range(x.shape[0]):
            out[i] = vexp2(x[i])
    else:
        for i in range(x.shape[0]):
            out[i] = vexp(x[i])


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
# lane buffers: tile staging ((b, e, l) rows <-> (task, T, W)), per-channel parameters, the recurrence step


@njit(**JIT)
def load_tile(src, bi, c0, t0, m, lc, buf, task):  # type: ignore[no-untyped-def]
    """buf[task, i, q] = src[bi, c0 + q, t0 + i] for i < lc, q < m; lanes q >= m are zeroed."""
    ne, nl = src.shape[1], src.shape[2]
    chunk = buf.shape[1]
    if m == W and lc % 16 == 0:
        base = (bi * ne + c0) * nl + t0
        for i0 in range(0, lc, 16):
            _transpose16(src, base + i0, nl, buf, (task * chunk + i0) * W, W)
    else:
        for i in range(lc):
            for q in range(W):
                buf[task, i, q] = ZERO
        for q in range(m):
            for i in range(lc):
                buf[task, i, q] = _opaque(src[bi, c0 + q, t0 + i])


@njit(**JIT)
def prefetch_tile(src, bi, c0, t0, m, lc):  # type: ignore[no-untyped-def]
    """Prefetch rows src[bi, c0 + q, t0 : t0 + lc] (q < m): the next chunk's tile, so that it is in cache when its
    turn comes (each row is read in short bursts, too many streams for the hardware prefetcher)."""
    ne, nl = src.shape[1], src.shape[2]
    for q in range(m):
        base = (bi * ne + c0 + q) * nl + t0
        for i in range(0, lc, 16):
            _prefetch(src, base + i)
        _prefetch(src, base + lc - 1)


@njit(**JIT)
def fill_lanes(A, D, bias, has_D, has_bias, c0, AW, PW, task, gi):  # type: ignore[no-untyped-def]
    """Per-channel parameters of group ``gi`` in lane layout: AW = A * log2(e), PW = (D, delta_bias); 0 in padding."""
    ne, nn = A.shape
    for q in range(W):
        ch = c0 + q
        live = ch < ne
        for j in range(nn):
            AW[task, gi, j, q] = _f32(np.float64(A[ch, j]) * _LOG2E_F64) if live else ZERO
        PW[task, gi, 0, q] = D[ch] if (live and has_D) else ZERO
        PW[task, gi, 1, q] = bias[ch] if (live and has_bias) else ZERO


@njit(**JIT)
def store_tile(buf, task, dst, bi, c0, t0, m, lc):  # type: ignore[no-untyped-def]
    """dst[bi, c0 + q, t0 + i] = buf[task, i, q] for i < lc, q < m."""
    ne, nl = dst.shape[1], dst.shape[2]
    chunk = buf.shape[1]
    if m == W and lc % 16 == 0:
        base = (bi * ne + c0) * nl + t0
        for i0 in range(0, lc, 16):
            _transpose16(buf, (task * chunk + i0) * W, W, dst, base + i0, nl)
    else:
        for q in range(m):
            for i in range(lc):
                dst[bi, c0 + q, t0 + i] = _opaque(buf[task, i, q])


@njit(inline="always", **JIT)
def recur_step(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i):  # type: ignore[no-untyped-def]
    """One step of the recurrence for state index ``j`` of group ``gi``, 16 channels per vector:
    ``h = 2**(dt * A log2 e) * h + dt x B``, ``y += C h``. Staged buffers (see the kernels): DB dt, UB dt * x,
    YB y (lane layout, step i); AW, HS (state index j); BB, CB (B and C, state index first)."""
    bb = BB[task, j, i]
    cc = CB[task, j, i]
    for q in range(W):
        hv = vexp2(DB[task, i, q] * AW[task, gi, j, q]) * HS[task, gi, j, q]
        hv += UB[task, i, q] * bb
        HS[task, gi, j, q] = hv
        YB[task, i, q] += cc * hv


@njit(inline="always", **JIT)
def recur_step4(DB, UB, YB, AW, HS, BB, CB, task, gi, j, i):  # type: ignore[no-untyped-def]
    """:func:`recur_step` for the four state indices ``j .. j+3`` at once. Four independent decay-and-update
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
    for q in range(W):
        d = DB[task, i, q]
        u = UB[task, i, q]
        h0 = vexp2(d * AW[task, gi, j, q]) * HS[task, gi, j, q] + u * b0
        h1 = vexp2(d * AW[task, gi, j + 1, q]) * HS[task, gi, j + 1, q] + u * b1
        h2 = vexp2(d * AW[task, gi, j + 2, q]) * HS[task, gi, j + 2, q] + u * b2
        h3 = vexp2(d * AW[task, gi, j + 3, q]) * HS[task, gi, j + 3, q] + u * b3
        HS[task, gi, j, q] = h0
        HS[task, gi, j + 1, q] = h1
        HS[task, gi, j + 2, q] = h2
        HS[task, gi, j + 3, q] = h3
        YB[task, i, q] += (c0 * h0 + c1 * h1) + (c2 * h2 + c3 * h3)


# --------------------------------------------------------------------------------------------------------------------
# bf16 bit patterns (int16 arrays) <-> float32, and 16-wide vector copies


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
def as_f32(typingctx, v):  # type: ignore[no-untyped-def]
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
def as_elem(typingctx, v, like):  # type: ignore[no-untyped-def]
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
    :func:`as_elem`."""
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
def copy16(typingctx, src, soff, dst, doff):  # type: ignore[no-untyped-def]
    """``dst.flat[doff + k] = src.flat[soff + k]`` for k < 16 (float32 or bf16 bits on either side, converted):
    one vector load and store. Written out as 16 indexed element copies, numba's index arithmetic keeps LLVM from
    combining them, and the copies in and out of the staging buffers cost as much as the scan's arithmetic."""
    if not _vec16_ok(src, soff, dst, doff):
        return None
    return types.void(src, soff, dst, doff), lambda c, b, sig, args: _vec16_codegen(c, b, sig, args, add=False)


@intrinsic
def add16(typingctx, src, soff, dst, doff):  # type: ignore[no-untyped-def]
    """``dst.flat[doff + k] = src.flat[soff + k] + dst.flat[doff + k]`` for k < 16, as :func:`copy16`."""
    if not _vec16_ok(src, soff, dst, doff):
        return None
    return types.void(src, soff, dst, doff), lambda c, b, sig, args: _vec16_codegen(c, b, sig, args, add=True)


# --------------------------------------------------------------------------------------------------------------------
# running a parallel kernel from torch


def kernel_threads() -> int:
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


def launch(kernel, *args) -> None:  # type: ignore[no-untyped-def]
    """Run a parallel kernel, putting torch's thread count back should numba's OpenMP runtime have changed it."""
    torch_threads = torch.get_num_threads()
    try:
        kernel(*args)
    finally:
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)


def n_blocks(b: int, e: int, threads: int) -> int:
    """Blocks of channel groups per batch row: b * n_blocks is a multiple of the thread count when e allows it."""
    groups = (e + W - 1) // W
    return max(1, min(groups, threads // math.gcd(b, threads)))
