"""Selective scan (the Mamba-v1 recurrence) with interchangeable backends.

Shapes follow mamba-ssm's ``selective_scan_fn`` so that its CUDA kernel can be swapped in directly:

    x, delta, z : (b, e, l)      input, step size (before bias/softplus), gate
    A           : (e, n)         negative real state matrix (``-exp(A_log)``)
    B, C        : (b, n, l)      input-dependent projections
    D           : (e,)           skip connection
    delta_bias  : (e,)           added to ``delta`` before the softplus

The recurrence, per channel ``e`` and state ``n`` (everything in float32):

    dt_t = softplus(delta_t + delta_bias)
    h_t  = exp(dt_t * A) * h_{t-1} + dt_t * B_t * x_t
    y_t  = <C_t, h_t> + D * x_t,     then  y_t *= silu(z_t)

Backends (chosen in one place, :func:`resolve_backend`):

* ``ref``      the sequential loop, the executable spec (slow; tests only);
* ``chunked``  pure PyTorch, any device: a doubling (Hillis-Steele) scan inside chunks of length ``T``, the state
               carried from chunk to chunk; memory O(b*e*T*n) per chunk, recomputed in the backward pass;
* ``numba``    fused CPU kernels (forward + backward) compiled by numba, state kept in registers, memory O(b*e*l);
* ``mamba_ssm`` the CUDA kernels of mamba-ssm (CUDA tensors only).

The default (``auto``) is ``numba`` on CPU when numba imports, else ``chunked``; on CUDA ``mamba_ssm`` when its
compiled extension imports, else ``chunked``. Override with ``CADUCEUS_SCAN_BACKEND`` or :func:`set_scan_backend`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from caduceus_plugin.errors import CaduceusError, InputError

BACKENDS = ("ref", "chunked", "numba", "mamba_ssm")
ENV_VAR = "CADUCEUS_SCAN_BACKEND"
INSTALL_HINTS = {
    "numba": "pip install numba",
    "mamba_ssm": (
        "on a CUDA machine with a matching nvcc: pip install --no-build-isolation 'caduceus-plugin[cuda]' "
        "(mamba-ssm and causal-conv1d build their CUDA kernels at install time)"
    ),
}

_override: str | None = None


class BackendUnavailableError(CaduceusError, RuntimeError):
    """A scan backend was asked for by name but cannot run here."""


class UnknownBackendError(CaduceusError, ValueError):
    """A scan backend name that does not exist."""


def set_scan_backend(name: str | None) -> None:
    """Force a scan backend for all later calls (``None`` or ``"auto"`` restores automatic choice).

    Args:
        name: one of ``auto``, ``ref``, ``chunked``, ``numba``, ``mamba_ssm``.
    """
    global _override
    if name is not None and name != "auto":
        _validate_name(name)
    _override = None if name in (None, "auto") else name


def get_scan_backend() -> str:
    """The requested backend: the setter's value, else ``$CADUCEUS_SCAN_BACKEND``, else ``"auto"``."""
    if _override is not None:
        return _override
    from caduceus_plugin import settings

    try:
        return settings.SCAN_BACKEND.get()
    except InputError as err:  # a bad name is an unknown backend, wherever it came from
        raise UnknownBackendError(str(err)) from None


@contextlib.contextmanager
def scan_backend(name: str | None) -> Iterator[None]:
    """Context manager form of :func:`set_scan_backend`."""
    global _override
    previous = _override
    set_scan_backend(name)
    try:
        yield
    finally:
        _override = previous


def _validate_name(name: str, source: str = "scan backend") -> None:
    if name not in BACKENDS:
        raise UnknownBackendError(f"unknown {source} {name!r}: choose one of auto, {', '.join(BACKENDS)}")


@functools.cache
def numba_available() -> bool:
    """True when numba and our compiled-on-first-use kernels import."""
    if importlib.util.find_spec("numba") is None:
        return False
    try:
        import caduceus_plugin.ops.numba.scan  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def mamba_ssm_available() -> bool:
    """True when mamba-ssm's compiled selective-scan extension can be imported (never on a CPU-only machine)."""
    if importlib.util.find_spec("selective_scan_cuda") is None:
        return False
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception:  # a broken or CPU-only build
        return False
    return True


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backends that can run on ``device`` on this machine."""
    device = torch.device(device)
    names = ["ref", "chunked"]
    if device.type == "cpu" and numba_available():
        names.append("numba")
    if device.type == "cuda" and mamba_ssm_available():
        names.append("mamba_ssm")
    return names


def resolve_backend(device: torch.device | str = "cpu", requested: str | None = None) -> str:
    """The one place that decides which backend runs for tensors on ``device``.

    Raises:
        BackendUnavailableError: a backend was forced that cannot run here; the message carries the install hint.
    """
    device = torch.device(device)
    name = requested or get_scan_backend()
    if name == "auto":
        if device.type == "cuda" and mamba_ssm_available():
            return "mamba_ssm"
        if device.type == "cpu" and numba_available():
            return "numba"
        return "chunked"
    if name == "numba":
        if device.type != "cpu":
            raise BackendUnavailableError(f"scan backend 'numba' runs on CPU tensors only, got {device.type} tensors")
        if not numba_available():
            raise BackendUnavailableError(f"scan backend 'numba' is not installed: {INSTALL_HINTS['numba']}")
    if name == "mamba_ssm":
        if device.type != "cuda":
            raise BackendUnavailableError(f"scan backend 'mamba_ssm' needs CUDA tensors, got {device.type} tensors")
        if not mamba_ssm_available():
            raise BackendUnavailableError(
                f"scan backend 'mamba_ssm' is not installed or has no compiled kernels: {INSTALL_HINTS['mamba_ssm']}"
            )
    return name


def describe_backends() -> str:
    """One line saying which backend runs on CPU (and CUDA when present), for ``caduceus info`` and logs."""
    cpu = resolve_backend("cpu")
    parts = [f"cpu: {cpu} (available: {', '.join(available_backends('cpu'))})"]
    if cpu == "numba":  # imports numba (about a second): the jobs that print this line compile the kernels anyway
        from caduceus_plugin.ops.numba.simd import VECTOR_WIDTH

        parts[0] += f", numba vectors: {VECTOR_WIDTH}"
    if torch.cuda.is_available():
        parts.append(f"cuda: {resolve_backend('cuda')} (available: {', '.join(available_backends('cuda'))})")
    return f"scan backend requested={get_scan_backend()}; " + "; ".join(parts)


# --------------------------------------------------------------------------------------------------------------------
# ref: the executable spec


def selective_scan_ref(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    h0: torch.Tensor | None = None,
    return_last_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Sequential selective scan, one time step at a time (float32 inside, cast back to ``x.dtype``).

    ``h0`` (b, e, n) is the state before the first step (zeros by default); with ``return_last_state`` the state
    after the last step is returned too, so a long sequence can be scanned in pieces.
    """
    dtype = x.dtype
    x, delta, A, B, C, h = _start(x, delta, A, B, C, delta_bias, delta_softplus, h0)
    b, e, length = x.shape
    ys = []
    for t in range(length):
        dt = delta[:, :, t]
        h = torch.exp(dt[:, :, None] * A) * h + (dt * x[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append(torch.einsum("ben,bn->be", h, C[:, :, t]))
    y = torch.stack(ys, dim=-1) if ys else x.new_zeros(b, e, 0)
    return _finish(y, x, D, z, dtype, h, return_last_state)


def _start(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    h0: torch.Tensor | None,
) -> tuple[torch.Tensor, ...]:
    """Inputs in float32, ``delta`` biased and softplus-ed as asked, and the initial state (zeros by default)."""
    x, delta, A, B, C = (t.float() for t in (x, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = x.new_zeros(x.shape[0], x.shape[1], A.shape[1]) if h0 is None else h0.float()
    return x, delta, A, B, C, h


def _finish(
    y: torch.Tensor,
    x: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    dtype: torch.dtype,
    h: torch.Tensor,
    return_last_state: bool,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Skip connection, gate, cast back; optionally with the last state."""
    if D is not None:
        y = y + x * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype)
    return (y, h) if return_last_state else y


# --------------------------------------------------------------------------------------------------------------------
# chunked: pure PyTorch, memory bounded

DEFAULT_CHUNK = 128


def _scan_chunk(
    h0: torch.Tensor, dt: torch.Tensor, x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk: h0 (b, e, n); dt, x (b, e, T); B, C (b, n, T). Returns y (b, e, T) and the last state."""
    a = torch.exp(dt[..., None] * A[:, None, :])  # (b, e, T, n)
    u = (dt * x)[..., None] * B.transpose(1, 2)[:, None]  # (b, e, T, n)
    length = a.shape[2]
    step = 1
    while step < length:  # inclusive doubling scan of the affine maps h -> a*h + u along T
        u = torch.cat([u[:, :, :step], a[:, :, step:] * u[:, :, :-step] + u[:, :, step:]], dim=2)
        a = torch.cat([a[:, :, :step], a[:, :, step:] * a[:, :, :-step]], dim=2)
        step *= 2
    h = a * h0[:, :, None] + u
    y = torch.einsum("betn,bnt->bet", h, C)
    return y, h[:, :, -1]


def selective_scan_chunked(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    h0: torch.Tensor | None = None,
    return_last_state: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Chunked selective scan in plain PyTorch (any device). Never holds more than one chunk's ``(b, e, T, n)``.

    Under autograd each chunk is checkpointed: only its inputs and its starting state are kept, and the chunk is
    recomputed in the backward pass.
    """
    dtype = x.dtype
    x, delta, A, B, C, h = _start(x, delta, A, B, C, delta_bias, delta_softplus, h0)
    b, e, length = x.shape
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, delta, A, B, C))
    ys = []
    y = x.new_empty(b, e, length)  # filled in place without autograd: no list of small tensors to fragment the heap
    for start in range(0, length, chunk_size):
        sl = slice(start, start + chunk_size)
        args = (h, delta[:, :, sl], x[:, :, sl], A, B[:, :, sl], C[:, :, sl])
        if grad:
            y_chunk, h = checkpoint(_scan_chunk, *args, use_reentrant=False)
            ys.append(y_chunk)
        else:
            y[:, :, sl], h = _scan_chunk(*args)
    if grad:
        y = torch.cat(ys, dim=-1) if ys else y
    return _finish(y, x, D, z, dtype, h, return_last_state)


# --------------------------------------------------------------------------------------------------------------------
# dispatch


def _selective_scan_mamba_ssm(*args: object, **kwargs: object) -> torch.Tensor:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    return selective_scan_fn(*args, **kwargs)


def _selective_scan_numba(*args: object, **kwargs: object) -> torch.Tensor:
    from caduceus_plugin.ops.numba.scan import selective_scan_numba

    return selective_scan_numba(*args, **kwargs)


_IMPLS = {
    "ref": selective_scan_ref,
    "chunked": selective_scan_chunked,
    "numba": _selective_scan_numba,
    "mamba_ssm": _selective_scan_mamba_ssm,
}


def selective_scan(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    backend: str | None = None,
    h0: torch.Tensor | None = None,
    return_last_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Run the selective scan on the backend chosen by :func:`resolve_backend` (or ``backend`` when given).

    ``h0``/``return_last_state`` carry the state across pieces of a long sequence (inference); mamba-ssm's kernel
    takes no initial state, so ``h0`` is refused there. Empty input (any of b, e, l, n zero) is answered by
    :func:`selective_scan_ref` whatever the backend: nothing to scan, the reference is exact and trivial there, and
    the backends need not handle it.
    """
    name = resolve_backend(x.device, backend)
    kw = dict(z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
    if name == "mamba_ssm" and h0 is not None:
        raise BackendUnavailableError("scan backend 'mamba_ssm' cannot start from a given state (h0)")
    if x.numel() == 0 or A.numel() == 0:  # x (b, e, l), A (e, n): zero elements iff some size is zero
        name = "ref"
    if h0 is not None or return_last_state:
        if name == "mamba_ssm":
            return _IMPLS[name](x, delta, A, B, C, D, **kw, return_last_state=True)
        kw.update(h0=h0, return_last_state=return_last_state)
    return _IMPLS[name](x, delta, A, B, C, D, **kw)
