"""float32 matrix products on CPU: which library runs them, and a linear layer that uses it in both directions.

At the shapes of Caduceus' projections (thousands of rows times 16-1024 columns) torch's oneDNN linear is faster
than ``F.linear``'s BLAS (MKL sgemm on x86 wheels) for the forward product (1.0-1.4x) and for the input gradient
``g W`` (1.2-2.5x, largest for the narrow x_proj / dt_proj); for the weight gradient ``g^T x`` torch's ``mm`` is
2.5-5x faster than oneDNN fed transposed copies (8,192 rows, AMD EPYC, 2 threads, cells alternating, median of 5,
2026-12-01). :func:`cpu_gemm` decides (``$CADUCEUS_CPU_GEMM``), :func:`linear` is the layer:

* :func:`linear_ref` — ``F.linear``, the definition;
* :func:`linear` — the same function, differentiable, with the forward and ``g W`` through oneDNN when
  :func:`cpu_gemm` says so (float32 CPU tensors), ``g^T x`` through ``mm``; ``F.linear`` anywhere else.

Float32 stays float32 on CPU: :func:`cpu_float32_products` (a context) and :func:`keeps_float32` (a decorator for
``forward`` methods) pin torch's float32 matmul precision to ``"highest"`` while our models run on CPU. Hosts change
that precision for the whole process: gReLU's ``train_on_dataset`` / ``predict_on_dataset`` call
``torch.set_float32_matmul_precision("medium")``, and on a CPU with AMX oneDNN then runs every later float32 matmul
(``F.linear`` and ``mm`` included) in bf16: relative errors ~1e-2 per product, and a model's predictions depending
on which gReLU method ran earlier in the process. Lower precision on CPU is asked for explicitly
(``$CADUCEUS_MATMUL_DTYPE``, ``--bf16``, autocast). On CUDA the host's setting (TF32) is left as it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from caduceus_plugin import settings
from caduceus_plugin.errors import InputError

__all__ = [
    "CpuInfo",
    "cpu_float32_products",
    "cpu_gemm",
    "cpu_info",
    "describe_cpu_gemm",
    "keeps_float32",
    "linear",
    "linear_ref",
    "onednn_linear",
    "onednn_linear_available",
]

GEMM_ENV_VAR = settings.CPU_GEMM.name


_F = TypeVar("_F", bound=Callable[..., Any])


@contextlib.contextmanager
def cpu_float32_products(device: torch.device | str | None = "cpu") -> Iterator[None]:
    """Within the block, float32 matmuls are float32 (precision ``"highest"``) when ``device`` is a CPU; the
    process's previous setting is restored on exit (exceptions included). A no-op for other devices (``None``
    included) and when the precision already is ``"highest"``."""
    if device is None or torch.device(device).type != "cpu":
        yield
        return
    previous = torch.get_float32_matmul_precision()
    if previous == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def _pin_this_backward(grad: torch.Tensor) -> None:
    """Tensor hook: from here to the end of the current backward pass, float32 matmuls are float32; the engine
    restores the previous precision when the pass ends (``queue_callback``, as DDP uses for its end-of-backward
    work)."""
    previous = torch.get_float32_matmul_precision()
    if previous != "highest":
        torch.set_float32_matmul_precision("highest")
        torch.autograd.Variable._execution_engine.queue_callback(
            lambda: torch.set_float32_matmul_precision(previous)
        )


def _pin_backward_of(out: Any) -> None:
    if isinstance(out, torch.Tensor):
        if out.requires_grad and out.grad_fn is not None and out.device.type == "cpu":
            out.register_hook(_pin_this_backward)
    elif isinstance(out, (tuple, list)):
        for item in out:
            _pin_backward_of(item)
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        for field in dataclasses.fields(out):
            _pin_backward_of(getattr(out, field.name))


# Per thread: how many keeps_float32 calls are running (autograd's backward threads do not share it).
_nesting = threading.local()


def keeps_float32(method: _F) -> _F:
    """Decorate a ``forward`` (or any function taking tensors) so it runs under :func:`cpu_float32_products` for
    the device of its first tensor argument, and so does the backward pass through its CPU outputs (tensors, or
    tuples / lists / dataclasses of them): autograd runs the backward after the forward has returned, so each
    output that requires grad gets a hook that pins the precision when its gradient arrives, until the pass ends.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        device = next((a.device for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
        outermost = not getattr(_nesting, "depth", 0)
        _nesting.depth = getattr(_nesting, "depth", 0) + 1
        try:
            with cpu_float32_products(device):
                out = method(*args, **kwargs)
        finally:
            _nesting.depth -= 1
        # Nested decorated calls (forward -> run -> forward_embeddings) hook only the outermost call's outputs:
        # the backward pass reaches those before any inner tensor, and the pin then lasts to the end of the pass.
        if outermost and torch.is_grad_enabled():
            _pin_backward_of(out)
        return out

    return wrapper  # type: ignore[return-value]


@functools.cache
def onednn_linear_available() -> bool:
    """True when torch's oneDNN linear (``torch.ops.mkldnn._linear_pointwise``) runs here: probed once."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        y = torch.ops.mkldnn._linear_pointwise(torch.ones(2, 3), torch.ones(4, 3), None, "none", [], "")
    except (AttributeError, RuntimeError):
        return False
    return bool(torch.equal(y, torch.full((2, 4), 3.0)))


def onednn_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, w, b)`` through oneDNN (float32 CPU tensors; no autograd)."""
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    """The processor, as far as it decides the projections' speed: its model name and whether it has bf16 matrix
    instructions (AVX512-BF16 or AMX-BF16; ``None`` where unknown, e.g. no ``/proc/cpuinfo``)."""

    name: str
    bf16_matmul: bool | None


#: The ``/proc/cpuinfo`` flags that give oneDNN native bf16 products.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_info(path: str = "/proc/cpuinfo") -> CpuInfo:
    """Read the first processor's model name and flags from ``path`` (Linux); ``bf16_matmul`` is None where the file
    is missing or lists no flags. Without those instructions oneDNN emulates bf16 products, measured ~5x slower
    than float32 (the 2M built-in model's forward, 8 x 1 kbp, AMD EPYC Zen 3 with AVX2, 2026-12-06)."""
    import platform

    name, flags = platform.processor() or platform.machine(), None
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return CpuInfo(name=name, bf16_matmul=None if not flags else bool(flags & BF16_FLAGS))


def describe_cpu_gemm() -> str:
    """One line for ``caduceus info`` and logs: the float32 CPU projections' library, and whether the CPU has bf16
    matrix instructions (which decide whether ``--bf16`` is a speed option)."""
    bf16 = {True: "yes", False: "no (--bf16 is slower here)", None: "unknown"}[cpu_info().bf16_matmul]
    return (f"cpu projections: {cpu_gemm()} (float32; ${GEMM_ENV_VAR}=auto|onednn|torch); "
            f"bf16 matrix instructions: {bf16}")


def cpu_gemm() -> str:
    """The library for the float32 CPU projections (inference, and the training path's
    forward products and input gradients): ``onednn`` (torch's oneDNN linear) or ``torch``
    (``F.linear``: the BLAS torch was built with, MKL on x86 wheels).

    ``$CADUCEUS_CPU_GEMM``: ``auto`` (default: ``onednn`` where it runs), ``onednn`` or ``torch``. At Caduceus'
    shapes (8,192 rows times 16-1024) oneDNN's forward product measured 1.0-1.4x MKL's sgemm on AMD EPYC
    (2 threads, the two alternating, median of 5, 2026-12-01); both are float32 products (results differ by
    float32 rounding).

    Raises:
        InputError: an unknown value, or ``onednn`` forced on a torch build without it.
    """
    req = settings.CPU_GEMM.get()
    if req == "torch":
        return "torch"
    if onednn_linear_available():
        return "onednn"
    if req == "onednn":
        raise InputError(
            f"${GEMM_ENV_VAR}=onednn but this torch build has no oneDNN linear (torch.backends.mkldnn): "
            "use auto or torch"
        )
    return "torch"


def linear_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``: x (..., k), weight (m, k), bias (m,) -> (..., m)."""
    return F.linear(x, weight, bias)


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):  # type: ignore[no-untyped-def, override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def, override]
        x, weight = ctx.saved_tensors
        g2 = g.reshape(-1, g.shape[-1])
        dx = dw = db = None
        if ctx.needs_input_grad[0]:  # g W as a oneDNN linear with weight W^T
            dx = onednn_linear(g2, weight.t().contiguous(), None).view(*g.shape[:-1], weight.shape[1])
        if ctx.needs_input_grad[1]:
            dw = g2.t() @ x.reshape(-1, x.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g2.sum(0)
        return dx, dw, db


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`linear_ref` with oneDNN for the products where :func:`cpu_gemm` chooses it (float32 CPU tensors,
    outside autocast); differentiable."""
    fast = (
        x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and x.dim() >= 2
        and not torch.is_autocast_enabled("cpu") and cpu_gemm() == "onednn"
    )  # fmt: skip
    if not fast:
        return F.linear(x, weight, bias)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))):
        return onednn_linear(x2, weight, bias).view(*lead, weight.shape[0])
    return _OneDNNLinear.apply(x2, weight, bias).view(*lead, weight.shape[0])
