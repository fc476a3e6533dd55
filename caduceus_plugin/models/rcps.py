"""Reverse-complement parameter sharing (RCPS) layers.

Hidden tensors are ``(b, l, 2d)``: the first ``d`` channels belong to the forward strand, the last ``d`` to the
reverse strand, both in forward genomic coordinates. ``rc_hidden(h) = h.flip(l, c)`` is the RC of a hidden
tensor; ``rc_ids`` (:func:`caduceus_plugin.sequence.reverse_complement_ids`) the RC of token ids (reverse, then
complement each id). Every layer here satisfies
``f(rc(x)) == rc(f(x))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from caduceus_plugin.ops.mixer import fused_available
from caduceus_plugin.sequence import reverse_complement_ids as rc_ids

__all__ = [
    "RCPSEmbedding", "RCPSLMHead", "RCPSWrapper", "complement_table", "rc_hidden", "rc_ids", "rcps_norm",
    "split_strands", "swap_halves",
]  # fmt: skip

#: What a complement map may be: one entry per token id, as a sequence (``table[id]``) or a mapping ``{id: id}``.
ComplementMap = Sequence[int] | Mapping[int, int] | Mapping[str, int] | torch.Tensor


def complement_table(complement_map: ComplementMap, vocab_size: int) -> list[int]:
    """``complement_map`` as a list ``table[id] = complement id`` over ``vocab_size`` ids, checked.

    A mapping (the authors' ``{id: complement id}`` dict; keys may be ints or digit strings, as in ``config.json``,
    in any order) is read by key, never by position; a sequence or 1-D tensor by position. Either must have exactly
    one entry per id ``0 .. vocab_size - 1`` (padded ids map to themselves: list them), values in range, and be an
    involution (complementing twice gives the same id back).

    Raises:
        TypeError: not a mapping, sequence or 1-D integer tensor.
        ValueError: missing, extra or out-of-range entries, or not an involution.
    """
    if isinstance(complement_map, Mapping):
        try:
            table_map = {int(k): int(v) for k, v in complement_map.items()}
        except (TypeError, ValueError):
            raise ValueError("complement_map keys and values must be token ids (integers)") from None
        keys = set(table_map)
        if keys != set(range(vocab_size)):
            missing = sorted(set(range(vocab_size)) - keys)
            extra = sorted(keys - set(range(vocab_size)))
            what = f"no entry for id(s) {missing[:8]}" if missing else f"id(s) {extra[:8]} outside the vocabulary"
            raise ValueError(
                f"complement_map must have one entry per token id 0..{vocab_size - 1} (padded ids map to "
                f"themselves): {what}"
            )
        table = [table_map[i] for i in range(vocab_size)]
    elif isinstance(complement_map, torch.Tensor):
        if complement_map.ndim != 1 or complement_map.is_floating_point():
            raise TypeError("complement_map as a tensor must be 1-D integer ids")
        table = [int(v) for v in complement_map.tolist()]
    elif isinstance(complement_map, Sequence) and not isinstance(complement_map, (str, bytes)):
        table = [int(v) for v in complement_map]
    else:
        raise TypeError(
            f"complement_map must be a dict {{id: complement id}} or a sequence of ids, not {type(complement_map)}"
        )
    if len(table) != vocab_size:
        raise ValueError(f"complement_map has {len(table)} entries; vocab_size is {vocab_size} (one per token id)")
    for i, c in enumerate(table):
        if not 0 <= c < vocab_size:
            raise ValueError(f"complement_map: {i}->{c} is outside the vocabulary 0..{vocab_size - 1}")
        if table[c] != i:
            raise ValueError(f"complement_map is not an involution: {i}->{c} but {c}->{table[c]}")
    return table


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
    """``emb(x)_t = [E[x_t], flipC(E[comp(x_t)])]``: one table, both strands in forward coordinates.

    Args:
        vocab_size: ids ``0 .. vocab_size - 1``.
        d_model: width of the table, ``d``; the output has ``2 * d`` channels.
        complement_map: one entry per id, a dict ``{id: complement id}`` or a sequence (see
            :func:`complement_table`; anything else is refused, never guessed).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        complement_map: ComplementMap,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        table = complement_table(complement_map, vocab_size)
        self.embedding = nn.Embedding(vocab_size, d_model, device=device, dtype=dtype)
        self.register_buffer("complement_map", torch.tensor(table, dtype=torch.long, device=device))

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids`` (b, l) -> embeddings (b, l, 2d): forward strand, then reverse strand (forward coordinates)."""
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

    def forward(self, h: torch.Tensor, **submodule_kwargs: object) -> torch.Tensor:
        """``h`` (b, l, 2d) -> (b, l, 2d'). Keyword arguments go to the submodule (which rejects what it does not
        take), once, for both strands."""
        fwd, rev = split_strands(h)
        fused = getattr(self.submodule, "forward_fused", None)
        if fused is not None and not submodule_kwargs and fused_available(h.device):
            # the reverse strand by index arithmetic (see BiMamba.forward_fused): no flips, no batch concatenation
            return torch.cat([fused(fwd), fused(rev, rc=True)], dim=-1)
        out = self.submodule(torch.cat([fwd, rc_hidden(rev)], dim=0), **submodule_kwargs)
        out_f, out_r = out.chunk(2, dim=0)
        return torch.cat([out_f, rc_hidden(out_r)], dim=-1)


def rcps_norm(norm: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """Apply one d-channel ``norm`` to both strands: the reverse strand is normed in RC orientation.

    For our RMSNorm and LayerNorm this is computed without flips: a norm acts per position and its statistics do
    not depend on the order of the channels, so norming ``rc_hidden(rev)`` and flipping back is norming ``rev``
    with the weight (and bias) reversed. Both strands then go through one call on the ``(b, l, 2, d)`` view.
    """
    from caduceus_plugin.models.mamba import LayerNorm, RMSNorm, layer_norm, rms_norm

    if isinstance(norm, RMSNorm):
        w = torch.stack([norm.weight, norm.weight.flip(0)])
        return rms_norm(h.unflatten(-1, (2, -1)), w, None, norm.eps).flatten(-2)
    if isinstance(norm, LayerNorm) and norm.elementwise_affine:
        hv = h.unflatten(-1, (2, -1))
        out = layer_norm(hv, None, None, norm.eps).float() * torch.stack([norm.weight, norm.weight.flip(0)]).float()
        if norm.bias is not None:
            out = out + torch.stack([norm.bias, norm.bias.flip(0)]).float()
        return out.to(h.dtype).flatten(-2)
    fwd, rev = split_strands(h)
    return torch.cat([norm(fwd), rc_hidden(norm(rc_hidden(rev)))], dim=-1)


class RCPSLMHead(nn.Module):
    """``logits_t[v] = <h_fwd_t, W[v]> + <flipC(h_rev_t), W[comp(v)]>`` with ``W`` (vocab, d).

    ``lm_head`` is a bias-free Linear whose weight is normally the embedding table (tied). ``complement_map`` as
    for :class:`RCPSEmbedding` (a dict is read by key).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        complement_map: ComplementMap,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        table = complement_table(complement_map, vocab_size)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False, device=device, dtype=dtype)
        self.register_buffer("complement_map", torch.tensor(table, dtype=torch.long, device=device))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states (b, l, 2d) -> logits (b, l, vocab), in ``h``'s dtype."""
        d = self.lm_head.in_features
        if h.shape[-1] != 2 * d:
            raise ValueError(f"RCPSLMHead expects 2 * {d} = {2 * d} channels (both strands), got {h.shape[-1]}")
        fwd, rev = split_strands(h)
        w = self.lm_head.weight.to(h.dtype)
        return fwd @ w.t() + rev.flip(-1) @ w[self.complement_map].t()
