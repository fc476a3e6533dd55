"""mamba-ssm's fused add + norm functions, in plain PyTorch: the values and the dtype rules of the kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from caduceus_plugin.compat.layernorm import RMSNorm, layer_norm_fn, rms_norm_fn
from caduceus_plugin.models.mamba import RMSNorm as OurRMSNorm


def _x(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.double()
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w.double()


def test_rms_norm_fn_without_residual() -> None:
    x, w = _x(2, 5, 8), _x(8, seed=1)
    torch.testing.assert_close(rms_norm_fn(x, w, None, eps=1e-5).double(), _rms(x, w, 1e-5))


def test_rms_norm_fn_adds_the_residual_and_returns_it_with_prenorm() -> None:
    x, r, w = _x(2, 5, 8), _x(2, 5, 8, seed=2), _x(8, seed=1)
    out, res = rms_norm_fn(x, w, None, residual=r, prenorm=True, eps=1e-5)
    torch.testing.assert_close(res, x + r)
    torch.testing.assert_close(out.double(), _rms(x + r, w, 1e-5))


@pytest.mark.parametrize(
    ("residual_dtype", "residual_in_fp32", "expected"),
    [(None, False, torch.float16), (None, True, torch.float32), (torch.float32, False, torch.float32),
     (torch.float16, True, torch.float16)],
)  # fmt: skip
def test_residual_dtype_follows_the_kernels(residual_dtype, residual_in_fp32: bool, expected) -> None:
    x, w = _x(2, 3, 8, dtype=torch.float16), torch.ones(8, dtype=torch.float16)
    r = None if residual_dtype is None else _x(2, 3, 8, dtype=residual_dtype, seed=3)
    out, res = rms_norm_fn(x, w, None, residual=r, prenorm=True, residual_in_fp32=residual_in_fp32)
    assert out.dtype == torch.float16 and res.dtype == expected


def test_layer_norm_fn_is_layer_norm_with_bias() -> None:
    x, r, w, b = _x(4, 8), _x(4, 8, seed=1), _x(8, seed=2), _x(8, seed=3)
    torch.testing.assert_close(layer_norm_fn(x, w, b, residual=r, eps=1e-5), F.layer_norm(x + r, (8,), w, b, 1e-5))
    torch.testing.assert_close(layer_norm_fn(x, w, b, is_rms_norm=True, eps=1e-5), rms_norm_fn(x, w, b, eps=1e-5))


def test_residual_of_another_shape_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        rms_norm_fn(_x(2, 8), torch.ones(8), None, residual=_x(3, 8))


def test_rmsnorm_module_has_the_mamba_signature() -> None:
    norm = RMSNorm(8, eps=1e-5, dtype=torch.float32)
    assert isinstance(norm, OurRMSNorm) and norm.bias is None and norm.eps == 1e-5
    assert [n for n, _ in norm.named_parameters()] == ["weight"]
    with torch.no_grad():
        norm.weight.uniform_()
    x, r = _x(2, 4, 8), _x(2, 4, 8, seed=5)
    torch.testing.assert_close(norm(x), OurRMSNorm.forward(norm, x))
    out, res = norm(x, residual=r, prenorm=True)
    torch.testing.assert_close(res, x + r)
    torch.testing.assert_close(out, norm(x + r))
    norm.reset_parameters()
    assert torch.equal(norm.weight, torch.ones(8))
