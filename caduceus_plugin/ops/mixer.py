"""The Mamba mixer between its two projections, for one or several scan directions sharing one ``in_proj`` output.

    xz (b, l, 2e) -> y (b, l, e) = sum_k rows_k( silu(z) * scan_k( conv_silu_k(x) ) )

``x = xz[..., :e]``, ``z = xz[..., e:]``; ``rows_k`` reverses the length axis for a direction with ``reverse`` set
(``mamba_rev`` of BiMamba, and both directions of Caduceus-PS's reverse strand). Each direction ``k`` has its own
parameters, :data:`PARAMS` in this order: ``conv_weight`` (e, 1, k), ``conv_bias`` (e,) or None, ``x_proj_weight``
(r + 2n, e), ``dt_proj_weight`` (e, r), ``dt_proj_bias`` (e,), ``A_log`` (e, n), ``D`` (e,). The step sizes are
``softplus(dt_proj(dt) + dt_proj_bias)`` and ``A = -exp(A_log)``, as in :class:`caduceus_plugin.models.mamba.Mamba`.

* :func:`mixer_inner_ref` — the definition: flips, the reference conv, the scan backend's dispatcher (``ref`` by
  default), autograd through all of it;
* :func:`mixer_inner` — the fast path: on CPU with the numba backend, one fused channels-last op with its own
  backward (:mod:`caduceus_plugin.ops.numba.mixer`); anywhere else the reference composition on the chosen scan
  backend (``mamba_ssm`` on CUDA, ``chunked``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from caduceus_plugin.ops.conv import causal_conv1d
from caduceus_plugin.ops.scan import resolve_backend, selective_scan

PARAMS = ("conv_weight", "conv_bias", "x_proj_weight", "dt_proj_weight", "dt_proj_bias", "A_log", "D")

Direction = Sequence[torch.Tensor | None]


def _one_direction(xz: torch.Tensor, params: Direction, reverse: bool, backend: str | None) -> torch.Tensor:
    """One direction by composition: (b, l, 2e) -> (b, l, e)."""
    conv_w, conv_b, wx, wdt, bdt, A_log, D = params
    assert wdt is not None and A_log is not None and wx is not None
    if reverse:
        xz = xz.flip(1)
    x, z = xz.transpose(1, 2).chunk(2, dim=1)  # (b, e, l) each
    x = causal_conv1d(x, conv_w, conv_b)  # type: ignore[arg-type]
    x_dbl = F.linear(x.transpose(1, 2), wx)  # (b, l, r + 2n)
    r, n = wdt.shape[1], A_log.shape[1]
    dt, B, C = torch.split(x_dbl, [r, n, n], dim=-1)
    delta = (dt @ wdt.t()).transpose(1, 2)
    y = selective_scan(
        x, delta, -torch.exp(A_log.float()), B.transpose(1, 2), C.transpose(1, 2), D.float(),  # type: ignore[union-attr]
        z=z, delta_bias=bdt.float(), delta_softplus=True, backend=backend,  # type: ignore[union-attr]
    )  # fmt: skip
    y = y.transpose(1, 2)
    return y.flip(1) if reverse else y


def mixer_inner_ref(
    xz: torch.Tensor, directions: Sequence[Direction], reverses: Sequence[bool], backend: str | None = "ref"
) -> torch.Tensor:
    """The definition of :func:`mixer_inner` by composition (flips, conv, scan), differentiable by autograd.

    Args:
        xz: (b, l, 2e).
        directions: per direction the seven tensors of :data:`PARAMS`.
        reverses: per direction, whether it scans from the last row to the first.
        backend: scan backend (default ``ref``, the executable spec).

    Returns:
        (b, l, e), the sum over directions.
    """
    out = None
    for params, reverse in zip(directions, reverses, strict=True):
        y = _one_direction(xz, params, bool(reverse), backend)
        out = y if out is None else out + y
    if out is None:
        raise ValueError("mixer_inner needs at least one direction")
    return out


def fused_available(device: torch.device | str) -> bool:
    """Whether :func:`mixer_inner` runs the fused channels-last numba op for tensors on ``device``."""
    return resolve_backend(device) == "numba"


def mixer_inner(
    xz: torch.Tensor,
    directions: Sequence[Direction],
    reverses: Sequence[bool],
    in_proj: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Sum over directions of the gated scan output (b, l, e) from ``xz`` (b, l, 2e): the fused op on CPU with the
    numba backend, else :func:`mixer_inner_ref` on the resolved scan backend. Same arguments as the reference.

    With ``in_proj = (weight, bias)`` the first argument is the projection's input ``u`` (b, l, d) and
    ``xz = F.linear(u, weight, bias)``; the fused op then recomputes ``xz`` in the backward instead of keeping it.
    """
    if fused_available(xz.device) and xz.numel() > 0:
        from caduceus_plugin.ops.numba.mixer import mixer_inner_numba

        return mixer_inner_numba(xz, directions, reverses, in_proj)
    if in_proj is not None:
        xz = F.linear(xz, *in_proj)
    return mixer_inner_ref(xz, directions, reverses, backend=None)
