"""A host's float32 matmul precision does not reach our models on CPU.

gReLU's ``train_on_dataset`` / ``predict_on_dataset`` call ``torch.set_float32_matmul_precision("medium")`` for the
whole process; on a CPU with AMX, oneDNN then computes float32 matmuls in bf16 (relative error ~1e-2 per product),
and a reloaded model predicted differently from the one in memory (CI, 2026-12-02). Our forwards and custom
backwards pin "highest" on CPU (:func:`caduceus_plugin.ops.gemm.keeps_float32`). The dispatch mode below records
the precision at every matrix product, forward and backward, and fails on any CPU when the pin is missing; the
equalities are what a user sees, and differ on AMX CPUs without it.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from caduceus_plugin.models.caduceus.modeling import CaduceusForMaskedLM
from caduceus_plugin.models.hyenadna.config import HyenaDNAConfig
from caduceus_plugin.models.hyenadna.modeling import HyenaDNAForCausalLM
from caduceus_plugin.ops.scan import set_scan_backend
from tests.conftest import random_ids, tiny_model


class _Products(TorchDispatchMode):
    """Records torch's float32 matmul precision at each matrix product (aten mm / addmm / bmm / linear, oneDNN's
    linear), in the forward and in the backward."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.__name__
        if any(k in name for k in ("mm", "linear", "matmul")):
            self.seen.append((name, torch.get_float32_matmul_precision()))
        return func(*args, **(kwargs or {}))


def _run(model: torch.nn.Module, ids: torch.Tensor, precision: str, grad: bool):
    torch.set_float32_matmul_precision(precision)
    model.zero_grad(set_to_none=True)
    with torch.set_grad_enabled(grad):
        out = model(ids)
        logits = out if isinstance(out, torch.Tensor) else out.logits
        if not grad:
            return logits, []
        logits.square().mean().backward()
    return logits.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("backend", ["ref", "numba"])
@pytest.mark.parametrize("rcps", [True, False])
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "training"])
def test_caduceus_is_float32_under_a_hosts_medium_precision(backend: str, rcps: bool, grad: bool) -> None:
    set_scan_backend(backend)
    model: CaduceusForMaskedLM = tiny_model(3, d_model=32, rcps=rcps)
    ids = random_ids(2, 300, seed=3)
    want, want_grads = _run(model, ids, "highest", grad)
    with _Products() as products:
        got, got_grads = _run(model, ids, "medium", grad)
    assert torch.get_float32_matmul_precision() == "medium"  # the host's setting is left as it was
    assert len(products.seen) >= 4 and {p for _, p in products.seen} == {"highest"}, products.seen
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_hyenadna_is_float32_under_a_hosts_medium_precision() -> None:
    torch.manual_seed(0)
    model = HyenaDNAForCausalLM(HyenaDNAConfig(d_model=32, n_layer=2, d_inner=64, l_max=256)).eval()
    ids = random_ids(2, 200, seed=4)
    want, want_grads = _run(model, ids, "highest", True)
    with _Products() as products:
        got, got_grads = _run(model, ids, "medium", True)
    assert len(products.seen) >= 4 and {p for _, p in products.seen} == {"highest"}, products.seen
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
