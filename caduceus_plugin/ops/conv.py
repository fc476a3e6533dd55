"""Depthwise causal convolution over length (the short conv of the Mamba layer), with an optional CUDA kernel."""

from __future__ import annotations

import functools
import importlib.util

import torch
import torch.nn.functional as F


@functools.cache
def _causal_conv1d_fn():  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("causal_conv1d_cuda") is None:
        return None
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:
        return None
    return causal_conv1d_fn


def causal_conv1d_ref(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, silu: bool = True
) -> torch.Tensor:
    """x (b, e, l), weight (e, 1, k) or (e, k), bias (e,): left zero padding k-1, keep the first l outputs."""
    w = weight if weight.dim() == 3 else weight[:, None, :]
    length = x.shape[-1]
    y = F.conv1d(x, w, bias, padding=w.shape[-1] - 1, groups=x.shape[1])[..., :length]
    return F.silu(y) if silu else y


def causal_conv1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, silu: bool = True, use_kernel: bool = True
) -> torch.Tensor:
    """Causal depthwise conv + SiLU; uses causal-conv1d's CUDA kernel on CUDA tensors when it is installed."""
    fn = _causal_conv1d_fn() if (use_kernel and x.is_cuda) else None
    if fn is not None:
        w = weight if weight.dim() == 2 else weight[:, 0, :]
        return fn(x, w, bias, activation="silu" if silu else None)
    return causal_conv1d_ref(x, weight, bias, silu)


def causal_conv1d_step(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, ctx: torch.Tensor | None, silu: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The causal conv of the next piece ``x`` (b, e, t) given the previous ``k-1`` inputs ``ctx`` (zeros if None).

    Returns the activated outputs (b, e, t) and the new context (the last ``k-1`` inputs seen).
    """
    w = weight if weight.dim() == 3 else weight[:, None, :]
    k = w.shape[-1]
    if ctx is None:
        ctx = x.new_zeros(x.shape[0], x.shape[1], k - 1)
    xin = torch.cat([ctx, x], dim=-1)
    y = F.conv1d(xin, w, bias, groups=x.shape[1])
    return (F.silu(y) if silu else y), xin[..., xin.shape[-1] - (k - 1) :]
