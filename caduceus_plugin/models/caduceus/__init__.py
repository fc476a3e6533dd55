"""Caduceus (Schiff et al. 2024): config, modules, streaming inference, checkpoint I/O, plug-in trunk."""

from __future__ import annotations

from caduceus_plugin.models.caduceus.checkpoint import from_pretrained, save_pretrained
from caduceus_plugin.models.caduceus.config import CaduceusConfig
from caduceus_plugin.models.caduceus.modeling import Caduceus, CaduceusBackbone, CaduceusForMaskedLM, MaskedLMOutput

__all__ = [
    "Caduceus",
    "CaduceusBackbone",
    "CaduceusConfig",
    "CaduceusForMaskedLM",
    "MaskedLMOutput",
    "from_pretrained",
    "save_pretrained",
]
