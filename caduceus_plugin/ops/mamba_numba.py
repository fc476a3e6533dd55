"""Channels-last inference kernels for one Mamba direction, piece by piece (numba, CPU, float32, no autograd).

The length-chunked inference path (:mod:`caduceus_plugin.models.streaming`) keeps activations as ``(b, t, c)``
(the layout the projections produce and consume), so these kernels read and write that layout directly: no
transposes, no flips. Both take ``reverse``: the piece is walked from its last row to its first, which is how
``mamba_rev`` scans the sequence without materialising ``flip``.

* :func:`conv_silu` — depthwise causal conv + SiLU over a piece, given the previous ``k-1`` inputs (``ctx``).
* :func:`scan` — softplus(delta + bias), the selective scan from state ``h0``, ``D`` skip and ``silu(z)`` gate;
  returns the output and the last state.

Both compute exactly the function of :func:`caduceus_plugin.ops.scan.selective_scan_ref` and
:func:`caduceus_plugin.ops.conv.causal_conv1d_ref` (tests compare them), sharing the vectorised ``exp`` of
:mod:`caduceus_plugin.ops.scan_numba`.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from caduceus_plugin.ops.scan_numba import (
    _JIT,
    _NO_STATE,
    _exp,
    _fwd_chunk,
    _fwd_kernel,
    _launch,
    _n_blocks,
    _sigmoid_from,
    _threads,
    chunk_length,
)

_TB = 64  # time rows per conv task
_NO_CKPT = np.zeros((1, 1, 1, 1, 1), np.float32)


@njit(parallel=True, **_JIT)
def _conv_kernel(x, wt, bias, ctx, out, reverse):  # type: ignore[no-untyped-def]
    """out[b, r(i), c] = silu(bias[c] + sum_k wt[k, c] * xin(i - k1 + k)) with xin(j) = x[b, r(j), c] for j >= 0 and
    ctx[b, k1 + j, c] for j < 0; r(i) = i, or t-1-i with ``reverse``."""
    nb, nt, ne = out.shape
    nk = wt.shape[0]
    k1 = nk - 1
    nblk = (nt + _TB - 1) // _TB
    for task in prange(nb * nblk):
        bi = task // nblk
        i0 = (task - bi * nblk) * _TB
        i1 = min(nt, i0 + _TB)
        for i in range(i0, i1):
            orow = nt - 1 - i if reverse else i
            if nk == 4 and i >= k1:  # the released models' width, unrolled so the channel loop vectorises
                r0 = nt - 1 - (i - 3) if reverse else i - 3
                r1 = nt - 1 - (i - 2) if reverse else i - 2
                r2 = nt - 1 - (i - 1) if reverse else i - 1
                for c in range(ne):
                    v = bias[c] + wt[0, c] * x[bi, r0, c] + wt[1, c] * x[bi, r1, c]
                    v += wt[2, c] * x[bi, r2, c] + wt[3, c] * x[bi, orow, c]
                    out[bi, orow, c] = v * _sigmoid_from(v, _exp(-abs(v)))
            elif i >= k1:  # every tap inside the piece
                for c in range(ne):
                    v = bias[c]
                    for k in range(nk):
                        j = i - k1 + k
                        v += wt[k, c] * x[bi, nt - 1 - j if reverse else j, c]
                    out[bi, orow, c] = v * _sigmoid_from(v, _exp(-abs(v)))
            else:  # the first k-1 rows also read the context
                for c in range(ne):
                    v = bias[c]
                    for k in range(nk):
                        j = i - k1 + k
                        if j >= 0:
                            v += wt[k, c] * x[bi, nt - 1 - j if reverse else j, c]
                        else:
                            v += wt[k, c] * ctx[bi, k1 + j, c]
                    out[bi, orow, c] = v * _sigmoid_from(v, _exp(-abs(v)))


def _c32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


def conv_silu(
    xz: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, ctx: torch.Tensor | None, reverse: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal depthwise conv + SiLU of the first ``e`` channels of ``xz`` (b, t, >=e), channels-last.

    Args:
        xz: the in_proj output of a piece, physical (genomic) row order; the conv reads channels ``[0, e)``.
        weight: (e, 1, k) or (e, k); bias: (e,).
        ctx: (b, k-1, e) the previous ``k-1`` inputs in scan order (zeros when None).
        reverse: scan the piece from its last row to its first.

    Returns:
        ``(y, ctx)``: y (b, t, e) float32 in physical row order, and the new context (the last k-1 inputs in scan
        order).
    """
    w = weight.reshape(weight.shape[0], -1)
    e, k = w.shape
    b, t, _ = xz.shape
    xs = xz.float().contiguous()  # no copy when already float32 and contiguous
    if ctx is None:
        ctx = xz.new_zeros(b, k - 1, e, dtype=torch.float32)
    bias_f = bias if bias is not None else w.new_zeros(e)
    out = torch.empty(b, t, e)
    _threads()
    _launch(_conv_kernel, xs.numpy(), _c32(w.t()), _c32(bias_f), _c32(ctx), out.numpy(), reverse)
    # next context: the last k-1 inputs in scan order (oldest first)
    if t >= k - 1:
        tail = xs[:, : k - 1, :e].flip(1) if reverse else xs[:, t - (k - 1) :, :e]
        new_ctx = tail.contiguous()
    else:
        seen = xs[:, :, :e].flip(1) if reverse else xs[:, :, :e]
        new_ctx = torch.cat([ctx, seen], dim=1)[:, -(k - 1) :].contiguous()
    return out, new_ctx


def scan(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    bc: torch.Tensor,
    bc_off: int,
    D: torch.Tensor,
    delta_bias: torch.Tensor,
    z_src: torch.Tensor,
    z_off: int,
    h0: torch.Tensor | None,
    reverse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective scan of a piece in channels-last layout (inference only), from state ``h0``.

    Args:
        x, delta: (b, t, e) conv output and step sizes before bias/softplus.
        A: (e, n) negative; D, delta_bias: (e,).
        bc: (b, t, *) with B in channels ``[bc_off, bc_off + n)`` and C right after (the x_proj output).
        z_src: (b, t, *) with the gate in channels ``[z_off, z_off + e)`` (the in_proj output).
        h0: (b, e, n) state before the piece in scan order (zeros when None).
        reverse: scan from the last row to the first.

    Returns:
        ``(y, h)``: gated output (b, t, e) float32 in physical row order, and the state after the piece.
    """
    b, t, e = x.shape
    n = A.shape[1]
    out = torch.empty(b, t, e)
    hlast = torch.empty(b, e, n)
    h0_np = _c32(h0) if h0 is not None else _NO_STATE
    bt = bc[..., bc_off : bc_off + n].float().contiguous()
    ct = bc[..., bc_off + n : bc_off + 2 * n].float().contiguous()
    nblk = _n_blocks(b, e, _threads())
    _launch(
        _fwd_kernel,
        _c32(x), _c32(delta), _c32(A), bt.numpy(), ct.numpy(), _c32(D), _c32(z_src), _c32(delta_bias), out.numpy(),
        _NO_CKPT, True, True, True, True, False, _fwd_chunk(chunk_length(n)), chunk_length(n), nblk,
        True, reverse, z_off, h0_np, h0 is not None, hlast.numpy(), True,
    )  # fmt: skip
    return out, hlast


__all__ = ["conv_silu", "scan"]
