"""A second, deliberately naive reading of the spec (../shared/docs/caduceus-spec.md §1), used only by tests.

It works on a plain dict of tensors with the authors' released key names (the output of ``export_state_dict``),
with explicit per-strand code, explicit ``rcid`` for the embedding, the fused RCPS block written literally as the
authors' fused branch (second half into the forward add+norm, RC of the first half into the RC add+norm) and a
per-time-step loop for the scan. Nothing here is shared with the package, so a disagreement points at a bug in one
of the two readings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

P = "caduceus.backbone."


def rc(h: torch.Tensor) -> torch.Tensor:
    return torch.flip(h, dims=[1, 2])


def norm(x: torch.Tensor, sd: dict, prefix: str, cfg: dict) -> torch.Tensor:
    w = sd[prefix + "weight"]
    if cfg["rms_norm"]:
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + cfg["norm_epsilon"]) * w
    return F.layer_norm(x, (x.shape[-1],), w, sd[prefix + "bias"], cfg["norm_epsilon"])


def mamba(u: torch.Tensor, sd: dict, p: str, in_w: torch.Tensor, out_w: torch.Tensor) -> torch.Tensor:
    b, length, _ = u.shape
    xz = u @ in_w.T
    e = xz.shape[-1] // 2
    x, z = xz[..., :e], xz[..., e:]
    w, cb = sd[p + "conv1d.weight"], sd[p + "conv1d.bias"]
    k = w.shape[-1]
    xp = torch.cat([torch.zeros(b, k - 1, e), x], dim=1)
    conv = torch.stack([(xp[:, t : t + k, :] * w[:, 0, :].T).sum(1) for t in range(length)], dim=1) + cb
    x = conv * torch.sigmoid(conv)
    dbl = x @ sd[p + "x_proj.weight"].T
    n = sd[p + "A_log"].shape[1]
    r = dbl.shape[-1] - 2 * n
    dt = F.softplus(dbl[..., :r] @ sd[p + "dt_proj.weight"].T + sd[p + "dt_proj.bias"])
    Bm, Cm = dbl[..., r : r + n], dbl[..., r + n :]
    A = -torch.exp(sd[p + "A_log"])
    h = torch.zeros(b, e, n)
    ys = []
    for t in range(length):
        h = torch.exp(dt[:, t, :, None] * A) * h + dt[:, t, :, None] * Bm[:, t, None, :] * x[:, t, :, None]
        ys.append((h * Cm[:, t, None, :]).sum(-1) + sd[p + "D"] * x[:, t])
    y = torch.stack(ys, 1) * (z * torch.sigmoid(z))
    return y @ out_w.T


def bimamba(u: torch.Tensor, sd: dict, p: str, cfg: dict) -> torch.Tensor:
    f_in, f_out = sd[p + "mamba_fwd.in_proj.weight"], sd[p + "mamba_fwd.out_proj.weight"]
    out = mamba(u, sd, p + "mamba_fwd.", f_in, f_out)
    if not cfg["bidirectional"]:
        return out
    if cfg["bidirectional_weight_tie"]:
        r_in, r_out = f_in, f_out
    else:
        r_in, r_out = sd[p + "mamba_rev.in_proj.weight"], sd[p + "mamba_rev.out_proj.weight"]
    rev = torch.flip(mamba(torch.flip(u, [1]), sd, p + "mamba_rev.", r_in, r_out), [1])
    return out + rev if cfg["bidirectional_strategy"] == "add" else out * rev


def forward(sd: dict, cfg: dict, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (hidden_states, logits) for the authors'-layout state dict ``sd`` and config dict ``cfg``."""
    d = cfg["d_model"]
    vocab = int(math.ceil(cfg["vocab_size"] / cfg["pad_vocab_size_multiple"]) * cfg["pad_vocab_size_multiple"])
    comp = torch.tensor([int(cfg["complement_map"].get(str(i), i)) for i in range(vocab)])
    rcps, fused = cfg["rcps"], cfg["fused_add_norm"]
    if rcps:
        E = sd[P + "embeddings.word_embeddings.embedding.weight"]
        rcid = comp[torch.flip(ids, [1])]
        h = torch.cat([E[ids], rc(E[rcid])], dim=-1)
    else:
        E = sd[P + "embeddings.word_embeddings.weight"]
        h = E[ids]
    npre = "norm." if (fused or not rcps) else "norm.submodule."
    res = None
    for i in range(cfg["n_layer"]):
        lp = f"{P}layers.{i}."
        if not rcps:
            res = h if res is None else h + res
            h = bimamba(norm(res, sd, lp + npre, cfg), sd, lp + "mixer.", cfg)
            continue
        mp = lp + "mixer.submodule."
        h1, h2 = h[..., :d], h[..., d:]
        if res is None:
            r1 = r2 = torch.zeros_like(h1)
        else:
            r1, r2 = res[..., :d], res[..., d:]
        if fused and cfg.get("rcps_fused_half_swap", True) is not False:
            fwd_res = h2 + r2  # second half into the forward-strand add+norm
            rc_res = rc(h1) + rc(r1)  # RC of the first half into the RC-strand add+norm
        else:
            fwd_res = h1 + r1
            rc_res = rc(h2 + r2)
        res = torch.cat([fwd_res, rc(rc_res)], dim=-1)
        out_f = bimamba(norm(fwd_res, sd, lp + npre, cfg), sd, mp, cfg)
        out_r = bimamba(norm(rc_res, sd, lp + npre, cfg), sd, mp, cfg)
        h = torch.cat([out_f, rc(out_r)], dim=-1)
    res = h + res
    fpre = "norm_f." if (fused or not rcps) else "norm_f.submodule."
    if rcps:
        hidden = torch.cat([norm(res[..., :d], sd, P + fpre, cfg), rc(norm(rc(res[..., d:]), sd, P + fpre, cfg))], -1)
        W = E if cfg["tie_word_embeddings"] else sd["lm_head.lm_head.weight"]
        logits = torch.einsum("bld,vd->blv", hidden[..., :d], W) + torch.einsum(
            "bld,vd->blv", torch.flip(hidden[..., d:], [-1]), W[comp]
        )
    else:
        hidden = norm(res, sd, P + fpre, cfg)
        W = E if cfg["tie_word_embeddings"] else sd["lm_head.weight"]
        logits = hidden @ W.T
    return hidden, logits
