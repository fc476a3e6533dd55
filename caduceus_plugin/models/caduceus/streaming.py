"""Length-chunked inference for the Caduceus backbone: the same function, in bounded memory.

The autograd forward of :class:`~caduceus_plugin.models.caduceus.modeling.CaduceusBackbone` materialises every layer's
``(b, l, 2e)`` projections at once. For inference this module instead walks each layer in chunks of
``chunk_len`` positions, carrying the scan state and the conv's last ``k-1`` inputs from chunk to chunk: forward
in length for ``mamba_fwd``, backward for ``mamba_rev``, and for the reverse strand of PS both directions are
mapped onto the forward strand's coordinates by index arithmetic (no full-length flips or copies).

Memory: two ``(b, l, c)`` buffers (the residual stream and the mixer output, updated in place) plus chunk-sized
temporaries, plus optional stashes that trade memory for speed when they fit ``stash_budget_bytes``:

* the shared ``in_proj`` output of the forward pass, re-used by the reverse pass (tied BiMamba);
* the forward direction's gated scan output, so that the tied ``out_proj`` runs once on the sum (``add``).

The half swap of the fused RCPS block (spec §1.6) is a relabelling of which physical half is strand 1, so it
costs nothing here. On the numba backend (float32 CPU tensors, the package's RMSNorm / LayerNorm) the layout work
around each mixer is done by two kernels (:func:`~caduceus_plugin.ops.numba.stream.norm_gather`: the residual add,
the pre-norm and the reverse strand's flip into scan order in one pass per piece;
:func:`~caduceus_plugin.ops.numba.stream.scatter`: the output back into the physical halves); otherwise by the torch
code beside them, which is their reference.

Matmul precision: the four projections (``in_proj``, ``x_proj``, ``dt_proj``, ``out_proj``) are most of the work.
With ``matmul_dtype=torch.bfloat16`` (or under ``torch.autocast("cpu", dtype=torch.bfloat16)``, or with
``CADUCEUS_MATMUL_DTYPE=bf16``) they run on bf16 copies of their inputs and weights and return float32; the
convolution, the scan, the norms and the residual stream stay float32. On CPUs with AVX512-BF16 or AMX this
roughly halves the projections' time; the outputs then differ from float32 by bf16 rounding (about 1e-2
relative, tested). The default is float32, multiplied on CPU by torch's oneDNN linear where it runs (faster than
``F.linear``'s MKL at these shapes; see :func:`cpu_gemm`).
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn

from caduceus_plugin import settings
from caduceus_plugin.errors import InputError
from caduceus_plugin.models.mamba import BiMamba, LayerNorm, Mamba, RMSNorm
from caduceus_plugin.ops.gemm import cpu_gemm, describe_cpu_gemm, onednn_linear, onednn_linear_available  # noqa: F401
from caduceus_plugin.ops.scan import resolve_backend

DEFAULT_CHUNK_LEN = settings.CHUNK_LEN.default
#: 1.75 GiB: at 131 kbp both stashes of PS fit, peak stays < 3 GB
DEFAULT_STASH_BUDGET = int(settings.STASH_GB.default * 2**30)


def default_chunk_len() -> int:
    """``$CADUCEUS_CHUNK_LEN`` (validated), else 2048."""
    return settings.CHUNK_LEN.get()


#: Bytes of one piece's ``in_proj`` output (``xz``, the largest per-piece activation) that the automatic chunk
#: length aims at. Each of a layer's steps (conv, x_proj, dt_proj, scan, out_proj) reads the previous one's output
#: of the piece; while a piece's activations stay near the size of the last-level cache the steps find them there.
#: Measured on 2 Zen 4 cores (32 MiB L3), the 2M built-in model on batches of 8 x 1 kbp: whole 1 kbp pieces (67 MB
#: of xz) ran at 8.2-8.4 windows/s, pieces of 256 or 512 positions (17-34 MB) at 10.6-10.8 (alternating runs);
#: the 7.7M model at 32 kbp, batch 1, ran alike with pieces of 512-2048 positions (4-17 MB) and ~10 % slower at
#: 256 (2 MB: per-call overhead).
PIECE_BYTES = 16 * 2**20


def auto_chunk_len(rows: int, d_inner: int, itemsize: int = 4, cap: int | None = None) -> int:
    """The chunk length (positions) of the streaming path when none is given: the largest at which a piece of
    ``rows`` sequences (both strands of PS count) keeps its ``xz`` (``rows x chunk x 2 d_inner x itemsize`` bytes)
    within :data:`PIECE_BYTES`, at least 32 and at most ``cap`` (default :func:`default_chunk_len`)."""
    cap = default_chunk_len() if cap is None else cap
    return max(32, min(cap, PIECE_BYTES // max(1, rows * 2 * d_inner * itemsize)))


def default_stash_budget() -> int:
    """``$CADUCEUS_STASH_GB`` in bytes (validated), else 1.75 GiB."""
    return int(settings.STASH_GB.get() * 2**30)


MALLOC_ENV_VAR = settings.MALLOC_TUNE.name
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024  # both thresholds' defaults
_malloc_depth = 0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return None
    return libc


@contextmanager
def malloc_reuse() -> Iterator[bool]:
    """Within the block, glibc's malloc keeps freed memory for reuse instead of handing it back; yields whether it
    applies here.

    By default glibc serves large allocations with fresh ``mmap`` s and returns memory at the top of the heap to
    the system early, so every chunk of the CPU inference path (projection outputs and kernel outputs of a few MB,
    the stashed ``in_proj`` pieces) lands on new pages: about two million page faults for one 32 kbp forward of PS,
    an eighth of its time spent zeroing pages in the kernel. Inside the block allocations up to 32 MiB come from the
    heap and freed memory stays there (page faults ~10x fewer; the forward 1.15-1.3x faster at 32 kbp with the same
    peak memory, measured with ``benchmarks/profile_inference.py`` and ``/usr/bin/time -v``). On leaving the
    outermost block glibc's default thresholds are set again and the freed memory is returned (``malloc_trim``).
    Linux with glibc only; ``CADUCEUS_MALLOC_TUNE=0`` leaves malloc alone.
    """
    global _malloc_depth
    off = not settings.MALLOC_TUNE.get()
    libc = None if off else _glibc()
    if libc is None:
        yield False
        return
    if _malloc_depth == 0:
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed value
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    _malloc_depth += 1
    try:
        yield True
    finally:
        _malloc_depth -= 1
        if _malloc_depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
            libc.malloc_trim(0)


MATMUL_ENV_VAR = settings.MATMUL_DTYPE.name
_MATMUL_DTYPES = {"fp32": None, "float32": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
_MATMUL_OVERRIDE: ContextVar[torch.dtype | str | None] = ContextVar("caduceus_matmul_dtype", default=None)


@contextmanager
def matmul_dtype(dtype: torch.dtype | str | None) -> Iterator[None]:
    """Within the block, Caduceus inference runs its projections in ``dtype`` (``"bf16"``/``"fp32"``; None: no
    change). A model's own ``backbone.matmul_dtype`` still wins."""
    token = _MATMUL_OVERRIDE.set(dtype) if dtype is not None else None
    try:
        yield
    finally:
        if token is not None:
            _MATMUL_OVERRIDE.reset(token)


def resolve_matmul_dtype(matmul_dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype | None:
    """The projections' compute dtype: the argument, else the innermost :func:`matmul_dtype` block, else bf16 under
    CPU bf16 autocast, else ``CADUCEUS_MATMUL_DTYPE`` (``fp32`` or ``bf16``), else None (the tensors' own dtype)."""
    source = "matmul_dtype"
    if matmul_dtype is None:
        matmul_dtype = _MATMUL_OVERRIDE.get()
    if matmul_dtype is None:
        if device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            matmul_dtype = torch.get_autocast_dtype("cpu")
        else:
            matmul_dtype = settings.MATMUL_DTYPE.get()
            source = f"${MATMUL_ENV_VAR}"
    if isinstance(matmul_dtype, str):
        key = matmul_dtype.strip().lower()
        if key not in _MATMUL_DTYPES:
            raise InputError(
                f"matmul dtype must be one of {', '.join(sorted(_MATMUL_DTYPES))}; got {matmul_dtype!r} from {source}"
            )
        matmul_dtype = _MATMUL_DTYPES[key]
    return None if matmul_dtype == torch.float32 else matmul_dtype


class _Linear:
    """Applies a projection's weight in the chosen matmul dtype (cached per weight for one forward), returning
    float32; with no matmul dtype, in the tensors' own dtype (float32 CPU products through :func:`cpu_gemm`'s
    library)."""

    def __init__(self, dtype: torch.dtype | None):
        self.dtype = dtype
        self._cache: dict[int, torch.Tensor] = {}
        self.onednn = dtype is None and cpu_gemm() == "onednn"

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        c = self._cache.get(id(t))
        if c is None:
            c = self._cache[id(t)] = t.detach().to(self.dtype)  # type: ignore[arg-type]
        return c

    def __call__(self, mod: nn.Linear, x: torch.Tensor, bias: bool = True, keep: bool = False) -> torch.Tensor:
        """``mod(x)``; with a matmul dtype, float32 out unless ``keep`` (then in the matmul dtype, for the numba
        kernels, which read bf16 directly)."""
        b = mod.bias if bias else None
        if self.dtype is None:
            if self.onednn and x.device.type == "cpu" and x.dtype == mod.weight.dtype == torch.float32:
                return onednn_linear(x, mod.weight, b)
            return F.linear(x, mod.weight, b)
        y = F.linear(x.to(self.dtype), self._cast(mod.weight), None if b is None else self._cast(b))
        return y if keep else y.float()


class _Direction:
    """One Mamba scanning a sequence piece by piece (forward, or backward with ``reverse``), with its conv context
    and SSM state carried along. Pieces are given and returned in physical (genomic) row order."""

    def __init__(self, mamba: Mamba, reverse: bool, device: torch.device, linear: _Linear | None = None):
        self.m, self.reverse = mamba, reverse
        self.linear = linear or _Linear(None)
        self.fused = resolve_backend(device) == "numba"
        self.ctx: torch.Tensor | None = None
        self.h: torch.Tensor | None = None

    def step(self, xz: torch.Tensor, acc: torch.Tensor | None = None, to_proj: bool = False) -> torch.Tensor:
        """``xz`` (b, t, 2e): the in_proj output of the next ``t`` positions -> gated ``y`` (b, t, e), plus ``acc``
        when given. ``to_proj``: the result only feeds a projection, so it may come in the matmul dtype."""
        if self.fused:
            return self._step_numba(xz, acc, to_proj)
        y = self._step_torch(xz.flip(1)).flip(1) if self.reverse else self._step_torch(xz)
        return y if acc is None else acc + y

    def _step_numba(self, xz: torch.Tensor, acc: torch.Tensor | None, to_proj: bool) -> torch.Tensor:
        from caduceus_plugin.ops.numba import stream as mamba_numba

        m, low = self.m, self.linear.dtype
        # with bf16 matmuls the conv writes bf16 (x_proj's input), the kernels read xz, x and delta as bf16, and a
        # result bound for out_proj is written as bf16 (the sum with ``acc`` made in float32 first)
        xc, self.ctx = mamba_numba.conv_silu(
            xz, m.conv1d.weight, m.conv1d.bias, self.ctx, self.reverse, out_dtype=low or torch.float32
        )
        x_dbl = self.linear(m.x_proj, xc if low else xc.to(xz.dtype))
        delta = self.linear(m.dt_proj, x_dbl[..., : m.dt_rank], bias=False, keep=True)  # bias added in the kernel
        y, self.h = mamba_numba.scan(
            xc, delta, -torch.exp(m.A_log.float()), x_dbl, m.dt_rank, m.D, m.dt_proj.bias, xz, m.d_inner, self.h,
            self.reverse, acc=acc, out_dtype=low if (low and to_proj) else torch.float32,
        )  # fmt: skip
        return y if low else y.to(xz.dtype)

    def _step_torch(self, xz: torch.Tensor) -> torch.Tensor:
        y, (self.ctx, self.h) = self.m.ssm(xz, (self.ctx, self.h), linear=self.linear)
        return y


def _chunks(length: int, chunk_len: int, reverse: bool = False) -> list[tuple[int, int]]:
    spans = [(s, min(s + chunk_len, length)) for s in range(0, length, chunk_len)]
    return spans[::-1] if reverse else spans


Getter = Callable[[int, int], torch.Tensor]
Putter = Callable[[int, int, torch.Tensor, str], None]


def bimamba_stream(
    bm: BiMamba,
    get: Getter,
    put: Putter,
    length: int,
    chunk_len: int,
    stash_budget: int,
    linear: _Linear | None = None,
) -> None:
    """Run BiMamba over the virtual input ``get(s, e)`` (b, e-s, d), writing results with ``put(s, e, out, mode)``.

    ``mode`` is ``"set"``, ``"add"`` or ``"mul"``; ``linear`` applies the projections (default: in float32).
    """
    lin = linear or _Linear(None)
    fwd, rev = bm.mamba_fwd, bm.mamba_rev
    tied = rev is not None and bm.weight_tie
    probe = get(0, min(chunk_len, length))
    batch, e2 = probe.shape[0], 2 * fwd.d_inner
    device = probe.device
    state = _Direction(fwd, reverse=False, device=device, linear=lin)
    keep = state.fused  # the numba kernels read bf16 in_proj outputs directly (and the stash is half the size)
    itemsize = probe.element_size()
    xz_itemsize = lin.dtype.itemsize if (keep and lin.dtype is not None) else itemsize
    budget = stash_budget
    # the stashes keep each chunk's own (contiguous) tensor: no copies, and pieces go to the kernels as they are
    keep_xz = tied and batch * length * e2 * xz_itemsize <= budget  # saves the largest matmul in the reverse pass
    if keep_xz:
        budget -= batch * length * e2 * xz_itemsize
    keep_y = tied and bm.strategy == "add" and batch * length * fwd.d_inner * itemsize <= budget  # one out_proj
    xz_stash: dict[int, torch.Tensor] = {}
    y_stash: dict[int, torch.Tensor] = {}
    for s, e in _chunks(length, chunk_len):
        u = probe if s == 0 else get(s, e)
        xz = lin(fwd.in_proj, u, keep=keep)
        if keep_xz:
            xz_stash[s] = xz
        if keep_y:
            y_stash[s] = state.step(xz)
        else:
            put(s, e, lin(fwd.out_proj, state.step(xz, to_proj=True)), "set")
    del probe
    if rev is None:
        return
    state = _Direction(rev, reverse=True, device=device, linear=lin)
    mode = "add" if bm.strategy == "add" else "mul"
    for s, e in _chunks(length, chunk_len, reverse=True):
        xz = xz_stash.pop(s) if keep_xz else lin(rev.in_proj, get(s, e), keep=keep)
        if keep_y:  # tied add: out_proj once, on the sum of both directions
            put(s, e, lin(fwd.out_proj, state.step(xz, acc=y_stash.pop(s), to_proj=True)), "set")
        else:
            put(s, e, lin(rev.out_proj, state.step(xz, to_proj=True)), mode)


def _fused_layout(res: torch.Tensor, hidden: torch.Tensor) -> bool:
    """Whether the numba kernels can do the residual add, the norms and the strand flips (``norm_gather`` and
    ``scatter``): float32 CPU tensors, the numba backend."""
    return res.dtype == hidden.dtype == torch.float32 and res.is_contiguous() and resolve_backend(res.device) == "numba"


def _norm_params(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None, float, bool] | None:
    """``(weight, bias, eps, rms)`` of the package's own RMSNorm / LayerNorm (float32, affine); None for any other
    norm, which then runs as itself."""
    if type(norm) is RMSNorm and norm.weight.dtype == torch.float32:
        return norm.weight, None, norm.eps, True
    if (
        type(norm) is LayerNorm
        and norm.weight is not None
        and norm.bias is not None
        and norm.weight.dtype == torch.float32
        and len(norm.normalized_shape) == 1
    ):
        return norm.weight, norm.bias, norm.eps, False
    return None


def _write(dst: torch.Tensor, src: torch.Tensor, mode: str) -> None:
    if mode == "set":
        dst.copy_(src)
    elif mode == "add":
        dst.add_(src)
    else:
        dst.mul_(src)


@torch.no_grad()
def backbone_stream(
    backbone: nn.Module,
    hidden: torch.Tensor,
    chunk_len: int | None = None,
    stash_budget_bytes: int | None = None,
    matmul_dtype: torch.dtype | str | None = None,
) -> torch.Tensor:
    """Backbone forward from embeddings ``hidden`` (b, l, c) in bounded memory; same result as the full forward.

    ``hidden`` is consumed (used as the residual buffer). Returns the final normed hidden states (b, l, c).
    ``matmul_dtype``: the projections' compute dtype (see the module docstring; default float32).
    """
    lin = _Linear(resolve_matmul_dtype(matmul_dtype, hidden.device))
    with malloc_reuse() if hidden.device.type == "cpu" else nullcontext():
        if lin.dtype is not None:
            hidden = hidden.float()
            with torch.autocast(hidden.device.type, enabled=False):
                return _backbone_stream(backbone, hidden, chunk_len, stash_budget_bytes, lin)
        return _backbone_stream(backbone, hidden, chunk_len, stash_budget_bytes, lin)


def _backbone_stream(
    backbone: nn.Module, hidden: torch.Tensor, chunk_len: int | None, stash_budget_bytes: int | None, lin: _Linear
) -> torch.Tensor:
    cfg = backbone.config
    budget = default_stash_budget() if stash_budget_bytes is None else stash_budget_bytes
    b, length, _ = hidden.shape
    if not chunk_len and hidden.device.type == "cpu":  # the cache rule is a CPU's; PS runs 2b sequences (strands)
        chunk_len = auto_chunk_len(b * (2 if cfg.rcps else 1), cfg.d_inner)
    chunk_len = chunk_len or default_chunk_len()
    d = cfg.d_model
    res = hidden.float() if cfg.residual_in_fp32 else hidden
    out = torch.empty_like(hidden)
    flipped = False  # PS: whether strand 1 lives in the physical second half (after an odd number of half swaps)

    def halves(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = t[..., :d], t[..., d:]
        return (hi, lo) if flipped else (lo, hi)

    fused = _fused_layout(res, hidden)
    if fused:
        from caduceus_plugin.ops.numba import stream as mamba_numba
    for i, layer in enumerate(backbone.layers):
        if cfg.half_swap:
            flipped = not flipped
        norm = layer.norm
        params = _norm_params(norm) if fused else None
        if i > 0 and params is None:
            res.add_(out)  # residual = hidden + residual (elementwise, so the swap does not matter)
        if params is not None:
            # numba: one pass per piece does the residual add (the first time a piece is read), the norm and the
            # reverse strand's flip; the output goes back by index arithmetic too. Each strand has d channels.
            offsets = ((d, 0) if flipped else (0, d)) if cfg.rcps else (0,)
            added: set[int] = set()
            bm = layer.mixer.submodule if cfg.rcps else layer.mixer

            def get(s: int, e: int, offsets=offsets, params=params, added=added, first=i == 0, res=res,
                    out=out) -> torch.Tensor:  # fmt: skip
                add = not first and s not in added
                added.add(s)
                return mamba_numba.norm_gather(res, out, add, s, e, offsets, d, *params)

            def put(s: int, e: int, o: torch.Tensor, mode: str, offsets=offsets, out=out) -> None:
                mamba_numba.scatter(out, o, s, e, offsets, d, mode)

        elif cfg.rcps:
            bm = layer.mixer.submodule
            r1, r2 = halves(res)
            o1, o2 = halves(out)

            def get(s: int, e: int, r1=r1, r2=r2, norm=norm) -> torch.Tensor:
                strand2 = r2[:, length - e : length - s].flip(1, 2)
                return torch.cat([norm(r1[:, s:e]), norm(strand2)], dim=0).to(hidden.dtype)

            def put(s: int, e: int, o: torch.Tensor, mode: str, o1=o1, o2=o2) -> None:
                _write(o1[:, s:e], o[:b], mode)
                _write(o2[:, length - e : length - s], o[b:].flip(1, 2), mode)

        else:
            bm = layer.mixer

            def get(s: int, e: int, norm=norm, res=res) -> torch.Tensor:
                return norm(res[:, s:e]).to(hidden.dtype)

            def put(s: int, e: int, o: torch.Tensor, mode: str, out=out) -> None:
                _write(out[:, s:e], o, mode)

        bimamba_stream(bm, get, put, length, chunk_len, budget, lin)
    if backbone.layers:
        res.add_(out)
    del out
    for s, e in _chunks(length, chunk_len):
        piece = res[:, s:e]
        if cfg.rcps:
            f1, f2 = halves(piece)
            normed = torch.cat([backbone.norm_f(f1), backbone.norm_f(f2.flip(-1)).flip(-1)], dim=-1)
        else:
            normed = backbone.norm_f(piece)
        piece.copy_(normed)
    return res
