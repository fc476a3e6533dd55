"""The Mamba (v1) layer, BiMamba, and the norms they sit between. Shapes: ``(b, l, d)`` in, ``(b, l, d)`` out."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from caduceus_plugin.ops.conv import causal_conv1d, causal_conv1d_step
from caduceus_plugin.ops.gemm import linear
from caduceus_plugin.ops.mixer import fused_available, mixer_inner
from caduceus_plugin.ops.scan import selective_scan

_KEEP_IN_PROJ: ContextVar[bool] = ContextVar("caduceus_keep_in_proj_output", default=False)


@contextmanager
def keep_in_proj_output() -> Iterator[None]:
    """Within the block, the fused CPU path of a tied BiMamba keeps its ``in_proj`` output for the backward instead
    of recomputing it (right inside a checkpointed layer, whose activations are recomputed anyway)."""
    token = _KEEP_IN_PROJ.set(True)
    try:
        yield
    finally:
        _KEEP_IN_PROJ.reset(token)


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, eps: float = 1e-5
) -> torch.Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight (+ bias)`` over the last axis, in float32, cast back to ``x.dtype``."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float = 1e-5
) -> torch.Tensor:
    """Layer norm over the last axis, in float32, cast back to ``x.dtype``."""
    w = None if weight is None else weight.float()
    b = None if bias is None else bias.float()
    return F.layer_norm(x.float(), (x.shape[-1],), w, b, eps).to(x.dtype)


class RMSNorm(nn.Module):
    """``y = x / sqrt(mean(x^2) + eps) * w``, computed in float32 and cast back to the input dtype."""

    def __init__(self, d: int, eps: float = 1e-5, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (..., d) -> normed (..., d), same dtype."""
        return rms_norm(x, self.weight, None, self.eps)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` computed in float32 and cast back to the input dtype (``rms_norm=False``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (..., d) -> normed (..., d), same dtype."""
        return layer_norm(x, self.weight, self.bias, self.eps)


def make_norm(d: int, rms_norm: bool, eps: float, **factory: object) -> nn.Module:
    return RMSNorm(d, eps=eps, **factory) if rms_norm else LayerNorm(d, eps=eps, **factory)  # type: ignore[arg-type]


class Mamba(nn.Module):
    """Mamba-v1 mixer: in_proj -> causal conv + SiLU -> x_proj -> dt_proj/softplus -> scan -> gate -> out_proj.

    Args:
        d_model: input/output channels ``d``.
        d_state: state size ``n`` per channel.
        d_conv: width of the causal depthwise conv.
        expand: ``e = expand * d`` inner channels.
        dt_rank: rank ``r`` of the step-size projection (``"auto"``: ceil(d/16)).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_fast_path: bool = True,
        layer_idx: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        f = {"device": device, "dtype": dtype}
        self.use_fast_path, self.layer_idx = use_fast_path, layer_idx
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self._dt_init = (dt_min, dt_max, dt_init, dt_scale, dt_init_floor)
        e, n, r = self.d_inner, d_state, self.dt_rank
        self.in_proj = nn.Linear(d_model, 2 * e, bias=bias, **f)
        self.conv1d = nn.Conv1d(e, e, d_conv, groups=e, padding=d_conv - 1, bias=conv_bias, **f)
        self.x_proj = nn.Linear(e, r + 2 * n, bias=False, **f)
        self.dt_proj = nn.Linear(r, e, bias=True, **f)
        self.A_log = nn.Parameter(torch.empty(e, n, device=device, dtype=torch.float32))
        self.D = nn.Parameter(torch.empty(e, device=device, dtype=torch.float32))
        self.out_proj = nn.Linear(e, d_model, bias=bias, **f)
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """Mamba-v1 initialisation of dt_proj, A_log and D (spec §1.1)."""
        dt_min, dt_max, dt_init, dt_scale, floor = self._dt_init
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(
            torch.rand(self.d_inner, device=self.D.device) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]
        n = torch.arange(1, self.d_state + 1, dtype=torch.float32, device=self.A_log.device)
        self.A_log.copy_(torch.log(n).expand(self.d_inner, -1))
        self.D.fill_(1.0)

    def ssm(
        self,
        xz: torch.Tensor,
        state: tuple[torch.Tensor | None, torch.Tensor | None] | None = None,
        linear: Callable[..., torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Everything between the two projections: ``xz`` (b, l, 2e) -> gated ``y`` (b, l, e).

        With ``state = (conv_context, ssm_state)`` (either may be None: zeros), ``xz`` continues a sequence whose
        earlier part left that state, and ``(y, new_state)`` is returned (inference piece by piece).
        ``linear(module, x, bias=True)`` applies x_proj and dt_proj (default: the modules' own arithmetic).
        """
        x, z = rearrange(xz, "b l e -> b e l").chunk(2, dim=1)
        if state is None:
            x = causal_conv1d(x, self.conv1d.weight, self.conv1d.bias)
        else:
            x, ctx = causal_conv1d_step(x, self.conv1d.weight, self.conv1d.bias, state[0])
        x_cl = rearrange(x, "b e l -> b l e")
        x_dbl = self.x_proj(x_cl) if linear is None else linear(self.x_proj, x_cl)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = dt @ self.dt_proj.weight.t() if linear is None else linear(self.dt_proj, dt, bias=False)
        delta = rearrange(delta, "b l e -> b e l")
        A = -torch.exp(self.A_log.float())
        result = selective_scan(
            x,
            delta,
            A,
            rearrange(B, "b l n -> b n l"),
            rearrange(C, "b l n -> b n l"),
            self.D.float(),
            z=z,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            **({} if state is None else {"h0": state[1], "return_last_state": True}),
        )
        if state is None:
            return rearrange(result, "b e l -> b l e")
        y, h = result
        return rearrange(y, "b e l -> b l e"), (ctx, h)

    def inner_params(self) -> list[torch.Tensor | None]:
        """This layer's tensors of :func:`caduceus_plugin.ops.mixer.mixer_inner`, in its order."""
        return [
            self.conv1d.weight, self.conv1d.bias, self.x_proj.weight, self.dt_proj.weight, self.dt_proj.bias,
            self.A_log, self.D,
        ]  # fmt: skip

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``u`` (b, l, d) -> (b, l, d)."""
        if fused_available(u.device):
            return self.out_proj(mixer_inner(self.in_proj(u), [self.inner_params()], [False]))
        return self.out_proj(self.ssm(self.in_proj(u)))


class BiMamba(nn.Module):
    """Bidirectional Mamba: ``fwd(u) (+ or *) flipL(rev(flipL(u)))``.

    With ``weight_tie`` (all released models) ``mamba_rev`` shares ``in_proj`` and ``out_proj`` with ``mamba_fwd``
    (the same Parameter objects); conv1d, x_proj, dt_proj, A_log and D stay separate. Because the shared
    projections act per position, the tied ``add`` case projects once: ``in_proj`` is applied to ``u`` once and
    ``out_proj`` to the sum of both directions (exact by linearity).

    Args:
        d_model: channels ``d``.
        bidirectional: with False, only ``mamba_fwd``.
        strategy: ``"add"`` or ``"ew_multiply"`` (the authors' ``bidirectional_strategy``).
        weight_tie: share in/out projections (the authors' ``bidirectional_weight_tie``).
        **ssm_cfg: :class:`Mamba` keywords; anything else is a TypeError. The authors' keyword names are refused with
            a pointer to these (or use ``caduceus_plugin.compat.modeling_caduceus.BiMambaWrapper``).
    """

    def __init__(
        self,
        d_model: int,
        bidirectional: bool = True,
        strategy: str = "add",
        weight_tie: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        **ssm_cfg: object,
    ):
        super().__init__()
        for theirs, ours in (("bidirectional_strategy", "strategy"), ("bidirectional_weight_tie", "weight_tie")):
            if theirs in ssm_cfg:
                raise TypeError(
                    f"BiMamba got {theirs}=: its keyword is {ours}= ({theirs}= is the authors' BiMambaWrapper name; "
                    "caduceus_plugin.compat.modeling_caduceus.BiMambaWrapper takes it)"
                )
        if strategy not in ("add", "ew_multiply"):
            raise ValueError(f"bidirectional_strategy must be 'add' or 'ew_multiply', got {strategy!r}")
        self.bidirectional, self.strategy, self.weight_tie = bidirectional, strategy, weight_tie
        self.mamba_fwd = Mamba(d_model, device=device, dtype=dtype, **ssm_cfg)  # type: ignore[arg-type]
        if bidirectional:
            self.mamba_rev = Mamba(d_model, device=device, dtype=dtype, **ssm_cfg)  # type: ignore[arg-type]
            if weight_tie:
                self.mamba_rev.in_proj = self.mamba_fwd.in_proj
                self.mamba_rev.out_proj = self.mamba_fwd.out_proj
        else:
            self.mamba_rev = None

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``u`` (b, l, d) -> (b, l, d): both directions combined."""
        if fused_available(u.device):
            return self.forward_fused(u)
        fwd, rev = self.mamba_fwd, self.mamba_rev
        if rev is None:
            return fwd(u)
        if self.weight_tie:
            xz = fwd.in_proj(u)
            y_f, y_r = fwd.ssm(xz), rev.ssm(xz.flip(1)).flip(1)
            if self.strategy == "add":
                return fwd.out_proj(y_f + y_r)
            return fwd.out_proj(y_f) * fwd.out_proj(y_r)
        out_f, out_r = fwd(u), rev(u.flip(1)).flip(1)
        return out_f + out_r if self.strategy == "add" else out_f * out_r

    def forward_fused(self, u: torch.Tensor, rc: bool = False) -> torch.Tensor:
        """:meth:`forward` through :func:`~caduceus_plugin.ops.mixer.mixer_inner` (no flips of activations); with
        ``rc``, ``rc_hidden(forward(rc_hidden(u)))`` for ``u`` (b, l, d) (the reverse strand of an RCPS layer).

        Why ``rc`` needs no flips: reversing the input's length axis swaps which direction scans which way, and
        reversing its channels is absorbed by the projections' weights (``in_proj`` with its input columns
        reversed, ``out_proj`` with its output rows reversed), since both act per position.
        """
        dirs = [(self.mamba_fwd, rc)] + ([] if self.mamba_rev is None else [(self.mamba_rev, not rc)])

        def project_in(m: Mamba) -> torch.Tensor:
            w = m.in_proj.weight
            return linear(u, w.flip(1) if rc else w, m.in_proj.bias)

        def project_out(m: Mamba, y: torch.Tensor) -> torch.Tensor:
            w, b = m.out_proj.weight, m.out_proj.bias
            if rc:
                w, b = w.flip(0), None if b is None else b.flip(0)
            return linear(y, w, b)

        if self.mamba_rev is None or self.weight_tie:  # one in_proj output for every direction
            if self.mamba_rev is None or self.strategy == "add":  # one out_proj of the sum (linearity)
                params, reverses = [m.inner_params() for m, _ in dirs], [r for _, r in dirs]
                if _KEEP_IN_PROJ.get():
                    y = mixer_inner(project_in(self.mamba_fwd), params, reverses)
                else:  # the op applies in_proj itself: it keeps u, not the 2e-wide xz, for the backward
                    w = self.mamba_fwd.in_proj.weight
                    y = mixer_inner(u, params, reverses, in_proj=(w.flip(1) if rc else w, self.mamba_fwd.in_proj.bias))
                return project_out(self.mamba_fwd, y)
            xz = project_in(self.mamba_fwd)
            outs = [project_out(self.mamba_fwd, mixer_inner(xz, [m.inner_params()], [r])) for m, r in dirs]
        else:
            outs = [project_out(m, mixer_inner(project_in(m), [m.inner_params()], [r])) for m, r in dirs]
        return outs[0] + outs[1] if self.strategy == "add" else outs[0] * outs[1]
