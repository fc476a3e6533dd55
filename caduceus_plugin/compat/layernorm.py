"""mamba-ssm's Triton norms (``mamba_ssm.ops.triton.layernorm``, v1.2), in plain PyTorch: ``RMSNorm``,
``rms_norm_fn`` and ``layer_norm_fn`` with their signatures and their fused add + norm semantics.

The norm itself is :func:`caduceus_plugin.models.mamba.rms_norm` / :func:`~caduceus_plugin.models.mamba.layer_norm`
(float32 inside, cast back). What the fused kernels add, and these functions keep:

* with ``residual``, the normed tensor is ``x + residual``, summed in float32;
* ``prenorm=True`` returns ``(out, residual_out)``: that sum, in ``residual``'s dtype (float32 with
  ``residual_in_fp32`` and no residual, else ``x``'s); ``out`` has ``x``'s dtype.
"""

from __future__ import annotations

import torch

from caduceus_plugin.models.mamba import RMSNorm as _RMSNorm
from caduceus_plugin.models.mamba import layer_norm, rms_norm

__all__ = ["RMSNorm", "layer_norm_fn", "rms_norm_fn"]


def layer_norm_fn(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor | None = None,
    eps: float = 1e-6,
    prenorm: bool = False,
    residual_in_fp32: bool = False,
    is_rms_norm: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Norm of ``x (+ residual)`` over the last axis; with ``prenorm``, ``(normed, residual_out)`` (see module doc)."""
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual has shape {tuple(residual.shape)}, x has {tuple(x.shape)}")
    if residual is not None:
        residual_dtype = residual.dtype
        summed = x.float() + residual.float()
    else:
        residual_dtype = torch.float32 if residual_in_fp32 else x.dtype
        summed = x
    normed = rms_norm(summed, weight, bias, eps) if is_rms_norm else layer_norm(summed, weight, bias, eps)
    out = normed.to(x.dtype)
    return (out, summed.to(residual_dtype)) if prenorm else out


def rms_norm_fn(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor | None = None,
    prenorm: bool = False,
    residual_in_fp32: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """RMS norm of ``x (+ residual)``; with ``prenorm``, ``(normed, residual_out)``."""
    return layer_norm_fn(x, weight, bias, residual, eps, prenorm, residual_in_fp32, is_rms_norm=True)


class RMSNorm(_RMSNorm):
    """mamba-ssm's ``RMSNorm(hidden_size, eps=1e-5, device=None, dtype=None)``: weight only (``bias`` is None).

    Called with ``x`` alone it is our :class:`caduceus_plugin.models.mamba.RMSNorm`; ``forward(x, residual,
    prenorm, residual_in_fp32)`` is :func:`rms_norm_fn`.
    """

    def __init__(
        self,
        hidden_size: int,
        eps: float = 1e-5,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(hidden_size, eps=eps, device=device, dtype=dtype)
        self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        torch.nn.init.ones_(self.weight)

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None = None,
        prenorm: bool = False,
        residual_in_fp32: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Normed ``x`` (same shape and dtype); with ``residual``/``prenorm`` as :func:`rms_norm_fn`."""
        if residual is None and not prenorm:
            return super().forward(x)
        return rms_norm_fn(x, self.weight, self.bias, residual, prenorm, residual_in_fp32, self.eps)
