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
