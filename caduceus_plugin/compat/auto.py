"""Registration of the compat classes with transformers' Auto classes (where transformers is installed)."""

from __future__ import annotations

from caduceus_plugin.compat._hf import HAVE_TRANSFORMERS
from caduceus_plugin.compat.configuration_caduceus import CaduceusConfig
from caduceus_plugin.compat.modeling_caduceus import Caduceus, CaduceusForMaskedLM, CaduceusForSequenceClassification

__all__ = ["register_auto_classes"]

_registered = False


def register_auto_classes() -> bool:
    """Register the compat classes with transformers' Auto classes (idempotent); False without transformers.

    After it, ``AutoConfig.from_pretrained(dir)``, ``AutoModel``, ``AutoModelForMaskedLM`` and
    ``AutoModelForSequenceClassification`` (``from_pretrained`` and ``from_config``) build the compat classes for
    ``model_type: caduceus`` without ``trust_remote_code`` (the ``auto_map`` of the released configs is then not
    used: local code wins, as transformers resolves it).
    """
    global _registered
    if not HAVE_TRANSFORMERS:
        return False
    if _registered:
        return True
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification

    AutoConfig.register(CaduceusConfig.model_type, CaduceusConfig, exist_ok=True)
    AutoModel.register(CaduceusConfig, Caduceus, exist_ok=True)
    AutoModelForMaskedLM.register(CaduceusConfig, CaduceusForMaskedLM, exist_ok=True)
    AutoModelForSequenceClassification.register(CaduceusConfig, CaduceusForSequenceClassification, exist_ok=True)
    _registered = True
    return True
