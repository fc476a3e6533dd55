"""Caduceus as a plug-in backbone: one-hot ``(N, 4, L)`` (ACGT; N as an all-zero or 0.25 column) -> ``(N, C, L)``.

Two kinds of output (``features``):

* ``"rc_invariant"`` (default): per-position features that a per-position head turns into RC-equivariant tracks
  and a length pooling turns into RC-invariant outputs, ``f(x.flip(1, 2)) == f(x).flip(2)``. For PS they are the
  strand average ``(h[:d] + flipC(h[d:])) / 2`` (exact, by construction); for Ph they come from post-hoc
  conjoining, ``(h(x) + flipL(h(rc x))) / 2`` — by default only in eval mode (``conjoin="eval"``), since the authors
  train Ph with RC augmentation and conjoin at inference. ``C = d_model``.
* ``"hidden"``: the backbone's final hidden states, ``C = 2 * d_model`` for PS (both strands; equivariant as
  ``f(x.flip(1, 2)) == f(x).flip(1, 2)``) and ``d_model`` for Ph.

The one-hot enters through a matmul with the embedding, so gradients reach the input (saliency).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from caduceus_plugin.errors import CaduceusError
from caduceus_plugin.models.caduceus.config import CaduceusConfig
from caduceus_plugin.models.caduceus.modeling import Caduceus
from caduceus_plugin.sequence import onehot_to_token_probs

FEATURES = ("rc_invariant", "hidden")
CONJOIN = ("eval", "always", "never")


class CaduceusTrunk(nn.Module):
    """Caduceus backbone on one-hot input, channels first.

    Args:
        rcps: PS (True) or Ph (False).
        pretrained: a local checkpoint directory (released HF layout); its config wins over the size arguments.
        n_to_pad: map N to [PAD] as in the authors' pre-training (use with released weights).
        features: ``"rc_invariant"`` or ``"hidden"`` (see the module docstring).
        conjoin: Ph only, with ``features="rc_invariant"``: ``"eval"`` (conjoin when not training), ``"always"``
            or ``"never"``.
        **config: CaduceusConfig fields (``d_model``, ``n_layer``, ...).
    """

    def __init__(
        self,
        rcps: bool = True,
        pretrained: str | None = None,
        n_to_pad: bool = False,
        features: str = "rc_invariant",
        conjoin: str = "eval",
        **config: Any,
    ):
        super().__init__()
        if features not in FEATURES:
            raise CaduceusError(f"features={features!r} is not one of {', '.join(FEATURES)}")
        if conjoin not in CONJOIN:
            raise CaduceusError(f"conjoin={conjoin!r} is not one of {', '.join(CONJOIN)}")
        if pretrained is not None:
            from caduceus_plugin.models.caduceus.checkpoint import from_pretrained

            self.caduceus = from_pretrained(pretrained).caduceus.train()
        else:
            try:
                cfg = CaduceusConfig(rcps=rcps, **config)
            except TypeError as err:  # unknown keyword
                raise CaduceusError(f"bad Caduceus hyper-parameter: {err}") from None
            self.caduceus = Caduceus(cfg)
        self.config = self.caduceus.config
        self.n_to_pad = n_to_pad
        self.features = features
        self.conjoin = conjoin
        self.out_channels = self.config.hidden_size if features == "hidden" else self.config.d_model

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        probs = onehot_to_token_probs(x, self.config.padded_vocab_size, self.n_to_pad)
        return self.caduceus(token_probs=probs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._hidden(x)  # (N, L, C)
        if self.features == "rc_invariant":
            d = self.config.d_model
            if self.config.rcps:
                h = (h[..., :d] + h[..., d:].flip(-1)) / 2
            elif self.conjoin == "always" or (self.conjoin == "eval" and not self.training):
                h = (h + self._hidden(x.flip(1, 2)).flip(1)) / 2
        return h.transpose(1, 2)


def caduceus_ps(**kwargs: Any) -> CaduceusTrunk:
    """Caduceus-PS trunk (defaults: the 7.7M configuration, d_model 256, 16 layers)."""
    return CaduceusTrunk(rcps=True, **kwargs)


def caduceus_ph(**kwargs: Any) -> CaduceusTrunk:
    """Caduceus-Ph trunk (defaults: the 7.7M configuration, d_model 256, 16 layers)."""
    return CaduceusTrunk(rcps=False, **kwargs)
