"""HyenaDNA as a plug-in backbone (one-hot in, channels first): :class:`HyenaDNATrunk` and the registry's
:func:`hyenadna` factory."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from einops import rearrange
from torch import nn

from caduceus_plugin.errors import InputError
from caduceus_plugin.models.hyenadna.checkpoint import from_pretrained
from caduceus_plugin.models.hyenadna.config import HyenaDNAConfig
from caduceus_plugin.models.hyenadna.modeling import HyenaDNA
from caduceus_plugin.sequence import onehot_to_token_probs

__all__ = ["HyenaDNATrunk", "hyenadna"]


class HyenaDNATrunk(nn.Module):
    """HyenaDNA on one-hot input, channels first: ``(N, 4, L)`` -> ``(N, d_model, L)``.

    The one-hot enters through a matmul with the A/C/G/T rows of the embedding (N columns select the N row), so
    gradients reach the input. HyenaDNA is causal and not RC-aware; ``conjoin=True`` averages ``f(x)`` with the
    length-flipped ``f(rc(x))`` (post-hoc conjoining), which makes length-pooled outputs RC-invariant.

    Args:
        pretrained: a local checkpoint directory (either layout); it fixes the architecture.
        conjoin: average the two strands as above (two forward passes).
        **config: :class:`HyenaDNAConfig` fields (``d_model``, ``n_layer``, ``l_max``, ...); defaults are the
            medium-160k architecture (d_model 256, 8 layers, l_max 160,002).
    """

    def __init__(self, pretrained: str | None = None, conjoin: bool = False, **config: Any):
        super().__init__()
        fields = {f.name for f in dataclasses.fields(HyenaDNAConfig)}
        unknown = sorted(set(config) - fields)
        if unknown:
            raise InputError(f"unknown HyenaDNA option {unknown[0]!r}: choose from {', '.join(sorted(fields))}")
        if pretrained is not None:
            self.hyena = from_pretrained(pretrained).train()
            clash = [k for k, v in config.items() if getattr(self.hyena.config, k) != v]
            if clash:
                k = clash[0]
                raise InputError(
                    f"{k}={config[k]!r} disagrees with the checkpoint ({getattr(self.hyena.config, k)!r}): "
                    "drop it or use a different checkpoint"
                )
        else:
            try:
                self.hyena = HyenaDNA(HyenaDNAConfig(**config))
            except ValueError as err:
                raise InputError(str(err)) from None
        self.config = self.hyena.config
        self.conjoin = conjoin
        self.out_channels = self.config.d_model

    def _strand(self, x: torch.Tensor) -> torch.Tensor:
        probs = onehot_to_token_probs(x, self.config.padded_vocab_size)
        return rearrange(self.hyena(token_probs=probs), "n l c -> n c l")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, 4, L) one-hot -> (N, d_model, L)."""
        if x.dim() != 3 or x.shape[1] != 4:
            raise InputError(f"expected one-hot input of shape (batch, 4, length), got {tuple(x.shape)}")
        out = self._strand(x)
        if self.conjoin:
            out = 0.5 * (out + self._strand(x.flip(1, 2)).flip(-1))
        return out

    def num_parameters(self, include_pos_emb: bool = False) -> int:
        return self.hyena.num_parameters(include_pos_emb)


def hyenadna(**kwargs: Any) -> HyenaDNATrunk:
    """HyenaDNA trunk for the component registry (see :class:`HyenaDNATrunk` for the arguments)."""
    return HyenaDNATrunk(**kwargs)
