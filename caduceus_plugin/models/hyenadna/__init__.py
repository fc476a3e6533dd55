"""HyenaDNA (Nguyen et al. 2023) in plain PyTorch: config, modules, checkpoint I/O (both published layouts), trunk."""

from __future__ import annotations

from caduceus_plugin.models.hyenadna.checkpoint import from_pretrained, save_pretrained
from caduceus_plugin.models.hyenadna.config import HyenaDNAConfig
from caduceus_plugin.models.hyenadna.modeling import HyenaDNA, HyenaDNAForCausalLM
from caduceus_plugin.models.hyenadna.trunk import HyenaDNATrunk, hyenadna

__all__ = [
    "HyenaDNA",
    "HyenaDNAConfig",
    "HyenaDNAForCausalLM",
    "HyenaDNATrunk",
    "from_pretrained",
    "hyenadna",
    "save_pretrained",
]
