"""The authors' Caduceus API (their ``caduceus/`` package, shipped as Hugging Face remote code) on our modules.

Code written for the authors' classes runs with its imports pointed here, on any device PyTorch runs on: no
mamba-ssm, no Triton, no ``trust_remote_code``. The modules are named like theirs:

* :mod:`.configuration_caduceus` — ``CaduceusConfig`` (their defaults and Hugging Face keywords);
* :mod:`.modeling_caduceus` — ``create_block``, ``BiMambaWrapper``, ``CaduceusEmbeddings``, ``CaduceusMixerModel``,
  ``CaduceusPreTrainedModel``, ``Caduceus``, ``CaduceusForMaskedLM``, ``CaduceusForSequenceClassification``;
* :mod:`.modeling_rcps` — ``RCPSEmbedding``, ``RCPSWrapper``, ``RCPSAddNormWrapper``, ``RCPSMambaBlock``,
  ``RCPSLMHead``;
* :mod:`.layernorm` — mamba-ssm's ``RMSNorm``, ``rms_norm_fn``, ``layer_norm_fn`` in plain PyTorch.

Importing this package registers the classes with transformers' Auto classes when transformers is installed
(``pip install 'caduceus-plugin[hf]'``), so ``AutoModelForMaskedLM.from_pretrained(local_dir)`` builds them.
"""

from __future__ import annotations

from caduceus_plugin.compat._hf import HAVE_TRANSFORMERS
from caduceus_plugin.compat.auto import register_auto_classes
from caduceus_plugin.compat.configuration_caduceus import CaduceusConfig
from caduceus_plugin.compat.layernorm import RMSNorm, layer_norm_fn, rms_norm_fn
from caduceus_plugin.compat.modeling_caduceus import (
    BiMambaWrapper,
    Caduceus,
    CaduceusEmbeddings,
    CaduceusForMaskedLM,
    CaduceusForSequenceClassification,
    CaduceusMixerModel,
    CaduceusPreTrainedModel,
    create_block,
)
from caduceus_plugin.compat.modeling_rcps import (
    RCPSAddNormWrapper,
    RCPSEmbedding,
    RCPSLMHead,
    RCPSMambaBlock,
    RCPSWrapper,
)

__all__ = [
    "HAVE_TRANSFORMERS",
    "BiMambaWrapper",
    "Caduceus",
    "CaduceusConfig",
    "CaduceusEmbeddings",
    "CaduceusForMaskedLM",
    "CaduceusForSequenceClassification",
    "CaduceusMixerModel",
    "CaduceusPreTrainedModel",
    "RCPSAddNormWrapper",
    "RCPSEmbedding",
    "RCPSLMHead",
    "RCPSMambaBlock",
    "RCPSWrapper",
    "RMSNorm",
    "create_block",
    "layer_norm_fn",
    "register_auto_classes",
    "rms_norm_fn",
]

register_auto_classes()
