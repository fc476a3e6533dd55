"""The authors' RCPS modules (``caduceus/modeling_rcps.py``) with their signatures, on our RCPS layers.

Every class here subclasses its counterpart in :mod:`caduceus_plugin.models.rcps` (or our block,
:class:`caduceus_plugin.models.caduceus.modeling.CaduceusBlock`); the computation is ours. Differences from the
authors' code:

* a complement map is read by key, never by position, and must list every id (see
  :func:`caduceus_plugin.models.rcps.complement_table`); theirs reads a dict's values in insertion order;
* ``inference_params`` (mamba-ssm's decoding cache) is accepted as None and refused otherwise: a bidirectional
  model has no step-by-step decoding;
* :class:`RCPSMambaBlock` without ``fused_add_norm`` keeps its norm as ``block.norm`` (d channels) instead of
  wrapping it in :class:`RCPSAddNormWrapper`, so its state-dict key is ``norm.weight`` (the authors':
  ``norm.submodule.weight``; ``from_pretrained``/``save_pretrained`` read and write theirs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from caduceus_plugin.compat.layernorm import RMSNorm
from caduceus_plugin.models import rcps as _rcps
from caduceus_plugin.models.caduceus.modeling import CaduceusBlock
from caduceus_plugin.models.mamba import RMSNorm as _PlainRMSNorm
from caduceus_plugin.models.rcps import ComplementMap, rc_hidden, rcps_norm

#: ``RMSNorm`` is re-exported: the authors' module imports it (from mamba-ssm) and their tests take it from there.
__all__ = ["RCPSAddNormWrapper", "RCPSEmbedding", "RCPSLMHead", "RCPSMambaBlock", "RCPSWrapper", "RMSNorm"]


def refuse_inference_params(inference_params: object) -> None:
    if inference_params is not None:
        raise NotImplementedError(
            "inference_params (mamba-ssm's step-by-step decoding cache) is not supported: Caduceus is "
            "bidirectional, so there is no autoregressive decoding; pass None"
        )


class RCPSEmbedding(_rcps.RCPSEmbedding):
    """``RCPSEmbedding(vocab_size, d_model, complement_map, device=None, dtype=None)``: output (b, l, 2 * d_model)."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        complement_map: ComplementMap,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(vocab_size, d_model, complement_map, device=device, dtype=dtype)

    def set_weight(self, value: nn.Parameter) -> None:
        """Share ``value`` as the embedding table."""
        self.embedding.weight = value

    def rc(self, x: torch.Tensor) -> torch.Tensor:
        """Reverse complement of token ids ``x`` (b, l) with this layer's complement map."""
        return self.complement_map[x.flip(-1)]


class RCPSWrapper(_rcps.RCPSWrapper):
    """``RCPSWrapper(submodule)``: ``forward(x, **kwargs)`` on (b, l, 2d); kwargs go to the submodule."""

    @staticmethod
    def rc(x: torch.Tensor) -> torch.Tensor:
        """Reverse complement of a hidden tensor: flip length and channels."""
        return rc_hidden(x)

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """(b, l, 2d) -> (b, l, 2d'): the submodule on the forward strand and on the RC of the reverse one."""
        return super().forward(x, **kwargs)


class RCPSAddNormWrapper(RCPSWrapper):
    """``RCPSAddNormWrapper(norm)``: ``forward(x, residual=None, prenorm=False)`` on (b, l, 2d).

    Returns ``norm(x + residual)`` applied to both strands (the reverse one in RC orientation), and with ``prenorm``
    also the sum ``x + residual`` (``x`` when ``residual`` is None): ``(normed, residual)``.
    """

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, residual: torch.Tensor | None = None, prenorm: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(b, l, 2d) -> normed (b, l, 2d), or with ``prenorm`` ``(normed, x + residual)``."""
        summed = x if residual is None else x + residual
        weight = getattr(self.submodule, "weight", None)
        normed = rcps_norm(self.submodule, summed if weight is None else summed.to(weight.dtype))
        return (normed, summed) if prenorm else normed


class _Block(CaduceusBlock):
    """The authors' block constructor on our :class:`CaduceusBlock` (whose forward is the computation)."""

    _rcps = False

    def __init__(
        self,
        dim: int,
        mixer_cls: Callable[[int], nn.Module],
        norm_cls: Callable[[int], nn.Module] = nn.LayerNorm,
        fused_add_norm: bool = False,
        residual_in_fp32: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        nn.Module.__init__(self)
        del device, dtype  # the authors' block takes and ignores them too: the factories carry device and dtype
        self.rcps, self.residual_in_fp32, self.fused_add_norm = self._rcps, residual_in_fp32, fused_add_norm
        mixer = mixer_cls(dim)
        self.mixer = RCPSWrapper(mixer) if self._rcps else mixer
        self.norm = norm_cls(dim)
        if fused_add_norm and not isinstance(self.norm, (nn.LayerNorm, _PlainRMSNorm)):
            raise TypeError("Only LayerNorm and RMSNorm are supported for fused_add_norm")
        #: the fused RCPS block's half swap (spec §1.6); the backbone sets it from its config
        self.fused_half_swap = self._rcps and fused_add_norm

    @property
    def half_swap(self) -> bool:
        return self.fused_half_swap

    def forward(  # type: ignore[override]
        self,
        hidden_states: torch.Tensor,
        residual: torch.Tensor | None = None,
        inference_params: object = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mixer(norm(hidden_states + residual)), hidden_states + residual)``, both (b, l, c)."""
        refuse_inference_params(inference_params)
        return super().forward(hidden_states, residual)

    def allocate_inference_cache(self, *args: object, **kwargs: object) -> None:
        refuse_inference_params(True)


class RCPSMambaBlock(_Block):
    """``RCPSMambaBlock(dim, mixer_cls, norm_cls=nn.LayerNorm, fused_add_norm=False, residual_in_fp32=False)``.

    The mixer is ``RCPSWrapper(mixer_cls(dim))``; with ``fused_add_norm`` the block exchanges the channel halves
    of its inputs first, as the authors' fused branch does (spec §1.6; both are RC-equivariant).
    """

    _rcps = True


class RCPSLMHead(_rcps.RCPSLMHead):
    """``RCPSLMHead(true_dim, vocab_size, complement_map, device=None, dtype=None)``: (b, l, 2 * true_dim) ->
    logits (b, l, vocab_size); ``weight`` / ``set_weight`` give the (tied) table."""

    def __init__(
        self,
        true_dim: int,
        vocab_size: int,
        complement_map: ComplementMap,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(vocab_size, true_dim, complement_map, device=device, dtype=dtype)
        self.true_dim = true_dim

    @property
    def weight(self) -> torch.Tensor:
        return self.lm_head.weight

    def set_weight(self, value: nn.Parameter) -> None:
        """Share ``value`` (normally the embedding table) as the head's weight."""
        self.lm_head.weight = value
