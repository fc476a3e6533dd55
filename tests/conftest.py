from __future__ import annotations

from pathlib import Path

import pytest
import torch

from caduceus_plugin import CaduceusConfig, CaduceusForMaskedLM
from caduceus_plugin.ops.scan import available_backends, set_scan_backend

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # copied from the authors-code outputs; never edit
CADUCEUS_FIXTURES = FIXTURES / "caduceus_reference"

CPU_BACKENDS = available_backends("cpu")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in float64."""
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp(min=1e-30)).item()


def perturb_(model: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    """Move every parameter away from its initial value (shared parameters once), so ties and terms matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * (p.std() if p.numel() > 1 else 1.0).clamp(min=0.05))
    return model


def tiny_model(seed: int = 0, **overrides) -> CaduceusForMaskedLM:
    kwargs = dict(d_model=16, n_layer=2, rcps=True)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    return perturb_(CaduceusForMaskedLM(CaduceusConfig(**kwargs)), seed).eval()


def random_ids(b: int, length: int, seed: int = 0, with_specials: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(7, 12, (b, length), generator=g)
    if with_specials and length > 3:
        ids[0, :2] = 4  # left padding
        ids[-1, length // 2] = 3  # a mask token
    return ids


@pytest.fixture(autouse=True)
def _reset_backend():
    set_scan_backend(None)
    yield
    set_scan_backend(None)


@pytest.fixture(autouse=True)
def _restore_matmul_precision():
    """gReLU's train / predict set torch's float32 matmul precision to "medium" for the whole process; on a CPU with
    bf16 matrix instructions (AMX) oneDNN then runs float32 matmuls in bf16. Our models pin float32 on CPU
    (tests/models/test_host_precision.py); reference computations in tests (einsum, matmul) do not, so each test
    starts and ends at the precision the session began with."""
    saved = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(saved)
