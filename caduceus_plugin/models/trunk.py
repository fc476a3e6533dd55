"""Caduceus as a plug-in backbone: one-hot ``(N, 4, L)`` (ACGT; N as an all-zero or 0.25 column) -> ``(N, C, L)``.

``C`` (``out_channels``) is ``2 * d_model`` for PS (both strands, RC-equivariant: ``f(x.flip(1, 2)) ==
f(x).flip(1, 2)``) and ``d_model`` for Ph. The one-hot enters through a matmul with the embedding, so gradients
reach the input (saliency).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from caduceus_plugin.config import CaduceusConfig
from caduceus_plugin.models.caduceus import Caduceus
from caduceus_plugin.tokenizer import onehot_to_token_probs


class CaduceusTrunk(nn.Module):
    """Caduceus backbone on one-hot input, channels first.

    Args:
        rcps: PS (True) or Ph (False).
        pretrained: a local checkpoint directory (released HF layout); its config wins over the size arguments.
        n_to_pad: map N to [PAD] as in the authors' pre-training (use with released weights).
        **config: CaduceusConfig fields (``d_model``, ``n_layer``, ...).
    """

    def __init__(self, rcps: bool = True, pretrained: str | None = None, n_to_pad: bool = False, **config: Any):
        super().__init__()
        if pretrained is not None:
            from caduceus_plugin.checkpoint import from_pretrained

            self.caduceus = from_pretrained(pretrained).caduceus.train()
        else:
            self.caduceus = Caduceus(CaduceusConfig(rcps=rcps, **config))
        self.config = self.caduceus.config
        self.n_to_pad = n_to_pad
        self.out_channels = self.config.hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = onehot_to_token_probs(x, self.config.padded_vocab_size, self.n_to_pad)
        return self.caduceus(token_probs=probs).transpose(1, 2)


def caduceus_ps(**kwargs: Any) -> CaduceusTrunk:
    """Caduceus-PS trunk (defaults: the 7.7M configuration, d_model 256, 16 layers)."""
    return CaduceusTrunk(rcps=True, **kwargs)


def caduceus_ph(**kwargs: Any) -> CaduceusTrunk:
    """Caduceus-Ph trunk (defaults: the 7.7M configuration, d_model 256, 16 layers)."""
    return CaduceusTrunk(rcps=False, **kwargs)
