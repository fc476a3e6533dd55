"""Reverse-complement parameter sharing (RCPS) layers.

Hidden tensors are ``(b, l, 2d)``: the first ``d`` channels belong to the forward strand, the last ``d`` to the
reverse strand, both in forward genomic coordinates. ``rc_hidden(h) = h.flip(l, c)`` is the RC of a hidden
tensor; ``rc_ids`` (:func:`caduceus_plugin.sequence.reverse_complement_ids`) the RC of token ids (reverse, then
complement each id). Every layer here satisfies
``f(rc(x)) == rc(f(x))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from caduceus_plugin.sequence import reverse_complement_ids as rc_ids

__all__ = [
    "RCPSEmbedding", "RCPSLMHead", "RCPSWrapper", "rc_hidden", "rc_ids", "rcps_norm", "split_strands", "swap_halves"
]  # fmt: skip


def rc_hidden(h: torch.Tensor) -> torch.Tensor:
    """Reverse complement of a hidden tensor ``(b, l, c)``: flip length and channels."""
    return h.flip(-2, -1)


def split_strands(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = h.shape[-1] // 2
    return h[..., :d], h[..., d:]


def swap_halves(h: torch.Tensor) -> torch.Tensor:
    """Exchange the two channel halves (the fused RCPS block's swap, spec §1.6)."""
    fwd, rev = split_strands(h)
    return torch.cat([rev, fwd], dim=-1)


class RCPSEmbedding(nn.Module):
    """``emb(x)_t = [E[x_t], flipC(E[comp(x_t)])]``: one table, both strands in forward coordinates."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        complement_map: Sequence[int],
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model, device=device, dtype=dtype)
        self.register_buffer("complement_map", torch.tensor(list(complement_map), dtype=torch.long, device=device))

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        fwd = self.embedding(input_ids)
        rev = self.embedding(self.complement_map[input_ids]).flip(-1)
        return torch.cat([fwd, rev], dim=-1)

    def from_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """Differentiable path: ``probs`` (b, l, vocab) weights over token ids (one-hot for hard tokens)."""
        w = self.embedding.weight
        return torch.cat([probs @ w, (probs @ w[self.complement_map]).flip(-1)], dim=-1)


class RCPSWrapper(nn.Module):
    """``W(h) = [M(h_fwd), rc(M(rc(h_rev)))]`` with one module ``M`` for both strands (run as one batch)."""

    def __init__(self, submodule: nn.Module):
        super().__init__()
        self.submodule = submodule

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        fwd, rev = split_strands(h)
        out = self.submodule(torch.cat([fwd, rc_hidden(rev)], dim=0))
        out_f, out_r = out.chunk(2, dim=0)
        return torch.cat([out_f, rc_hidden(out_r)], dim=-1)


def rcps_norm(norm: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """Apply one d-channel ``norm`` to both strands: the reverse strand is normed in RC orientation."""
    fwd, rev = split_strands(h)
    return torch.cat([norm(fwd), rc_hidden(norm(rc_hidden(rev)))], dim=-1)


class RCPSLMHead(nn.Module):
    """``logits_t[v] = <h_fwd_t, W[v]> + <flipC(h_rev_t), W[comp(v)]>`` with ``W`` (vocab, d).

    ``lm_head`` is a bias-free Linear whose weight is normally the embedding table (tied).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        complement_map: Sequence[int],
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False, device=device, dtype=dtype)
        self.register_buffer("complement_map", torch.tensor(list(complement_map), dtype=torch.long, device=device))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        fwd, rev = split_strands(h)
        w = self.lm_head.weight.to(h.dtype)
        return fwd @ w.t() + rev.flip(-1) @ w[self.complement_map].t()
