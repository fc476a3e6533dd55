"""Causal long convolution by FFT (the Hyena operator's ``h * v``), with its direct-convolution reference twin.

Shapes: ``u`` (b, d, l) input, ``k`` (d, l) one filter per channel, ``bias`` (d,) per-channel skip term; output
(b, d, l) in ``u.dtype``. :func:`fftconv_fn` is the fast path (O(l log l)), :func:`fftconv_ref` the executable spec
(an explicit grouped ``conv1d``, O(l^2)); tests compare them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["fftconv_fn", "fftconv_ref", "next_fast_len"]


def next_fast_len(n: int) -> int:
    """Smallest 5-smooth integer (2^a 3^b 5^c) >= ``n``: a length both pocketfft and cuFFT transform quickly."""
    if n <= 1:
        return 1
    best = 1 << (n - 1).bit_length()  # a power of two always works
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35  # smallest power-of-two multiple of p35 reaching n
            if m < n:
                m <<= (math.ceil(n / m) - 1).bit_length()
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def fftconv_fn(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Causal long convolution ``y[..., i] = sum_{j<=i} k[c, j] u[..., c, i-j] + bias[c] u[..., c, i]`` via FFT.

    Args:
        u: input, ``(b, d, l)``.
        k: one filter per channel, ``(d, l)``.
        bias: per-channel skip term ``(d,)`` or None.

    The FFT runs in float32 (or the input's dtype if wider) on a 5-smooth length >= 2l - 1, so no wrap-around
    reaches the first ``l`` outputs.
    """
    length = u.shape[-1]
    n = next_fast_len(2 * length - 1)
    work = torch.promote_types(u.dtype, torch.float32)
    u_f = torch.fft.rfft(u.to(work), n=n)
    k_f = torch.fft.rfft(k.to(work), n=n)
    y = torch.fft.irfft(u_f * k_f, n=n)[..., :length]
    if bias is not None:
        y = y + u.to(work) * bias.to(work)[:, None]
    return y.to(u.dtype)


def fftconv_ref(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Reference twin of :func:`fftconv_fn`: the same causal convolution as an explicit grouped ``conv1d``."""
    d, length = k.shape
    weight = k.flip(-1)[:, None, :].to(u.dtype)  # conv1d correlates; flipping makes it a convolution
    y = F.conv1d(F.pad(u, (length - 1, 0)), weight, groups=d)
    if bias is not None:
        y = y + u * bias.to(u.dtype)[:, None]
    return y
