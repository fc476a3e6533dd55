"""RC-invariant features from Caduceus hidden states (spec §1.8, §1.9).

* PS: per position ``f_t = (h_t[:d] + flipC(h_t[d:])) / 2``. It satisfies ``f(rc x) = flipL(f(x))`` exactly, so
  any pooling over length is RC-invariant.
* Ph: post-hoc conjoining — run the model on ``x`` and on ``rc(x)`` and average, position-aligned:
  ``f_t = (h(x)_t + h(rc x)_{l-1-t}) / 2``.
"""

from __future__ import annotations

import torch

from caduceus_plugin.models.caduceus.modeling import CaduceusForMaskedLM
from caduceus_plugin.sequence import reverse_complement_ids


def rc_invariant_features(hidden: torch.Tensor) -> torch.Tensor:
    """PS hidden states ``(b, l, 2d)`` -> per-position strand-averaged features ``(b, l, d)``."""
    d = hidden.shape[-1] // 2
    return (hidden[..., :d] + hidden[..., d:].flip(-1)) / 2


def mean_pool(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over length of ``(b, l, c)``; with ``mask`` (b, l) only over positions where it is true."""
    if mask is None:
        return features.mean(dim=1)
    m = mask.to(features.dtype)[..., None]
    return (features * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)


@torch.no_grad()
def embed(model: CaduceusForMaskedLM, input_ids: torch.Tensor, conjoin: bool | None = None) -> torch.Tensor:
    """RC-invariant per-position features ``(b, l, d)`` for PS (strand average) or Ph (post-hoc conjoining).

    Args:
        model: a Caduceus masked-LM model.
        input_ids: ``(b, l)`` token ids.
        conjoin: for Ph, average with the reverse-complement pass (default True); ignored for PS, which is
            invariant by construction.
    """
    hidden = model.caduceus(input_ids)
    if model.config.rcps:
        return rc_invariant_features(hidden)
    if conjoin is False:
        return hidden
    cmap = model.config.full_complement_map()
    hidden_rc = model.caduceus(reverse_complement_ids(input_ids, cmap))
    return (hidden + hidden_rc.flip(1)) / 2
