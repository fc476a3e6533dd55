"""caduceus-plugin: Caduceus (RC-equivariant bi-directional Mamba DNA LM) in plain PyTorch for gReLU and kipoi.

Public API::

    import caduceus_plugin
    model = caduceus_plugin.from_pretrained("path/to/dir")   # CaduceusForMaskedLM, eval mode
    out = model(input_ids)                                   # out.logits (b, l, vocab), out.hidden_states (b, l, c)
"""

from __future__ import annotations

from caduceus_plugin.checkpoint import from_pretrained, save_pretrained
from caduceus_plugin.config import CaduceusConfig
from caduceus_plugin.errors import CaduceusError, CheckpointError
from caduceus_plugin.models.caduceus import Caduceus, CaduceusForMaskedLM, MaskedLMOutput
from caduceus_plugin.ops.scan import (
    BackendUnavailableError,
    available_backends,
    get_scan_backend,
    resolve_backend,
    scan_backend,
    set_scan_backend,
)

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "Caduceus",
    "CaduceusConfig",
    "CaduceusError",
    "CaduceusForMaskedLM",
    "CheckpointError",
    "MaskedLMOutput",
    "__version__",
    "available_backends",
    "from_pretrained",
    "get_scan_backend",
    "resolve_backend",
    "save_pretrained",
    "scan_backend",
    "set_scan_backend",
]
