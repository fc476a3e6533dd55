"""caduceus-plugin: Caduceus (RC-equivariant bi-directional Mamba DNA LM) in plain PyTorch for gReLU and kipoi.

Public API::

    import caduceus_plugin
    model = caduceus_plugin.from_pretrained("path/to/dir")   # CaduceusForMaskedLM, eval mode
    out = model(input_ids)                                   # out.logits (b, l, vocab), out.hidden_states (b, l, c)

Importing the package is cheap: model code (and torch) load on first use of a name below, so plugin discovery
(``caduceus list``) never imports a model.
"""

from __future__ import annotations

import importlib
from typing import Any

from caduceus_plugin.errors import CaduceusError, CheckpointError
from caduceus_plugin.registry.hookspecs import hookimpl

__version__ = "0.1.0"

_LAZY = {
    "from_pretrained": "caduceus_plugin.models.caduceus.checkpoint",
    "save_pretrained": "caduceus_plugin.models.caduceus.checkpoint",
    "CaduceusConfig": "caduceus_plugin.models.caduceus.config",
    "Caduceus": "caduceus_plugin.models.caduceus.modeling",
    "CaduceusForMaskedLM": "caduceus_plugin.models.caduceus.modeling",
    "CaduceusKipoiModel": "caduceus_plugin.hosts.kipoi.model",  # kipoi's load_obj("a.b.C") wants it at top level
    "MaskedLMOutput": "caduceus_plugin.models.caduceus.modeling",
    "BackendUnavailableError": "caduceus_plugin.ops.scan",
    "available_backends": "caduceus_plugin.ops.scan",
    "get_scan_backend": "caduceus_plugin.ops.scan",
    "resolve_backend": "caduceus_plugin.ops.scan",
    "scan_backend": "caduceus_plugin.ops.scan",
    "set_scan_backend": "caduceus_plugin.ops.scan",
}

__all__ = ["CaduceusError", "CheckpointError", "__version__", "hookimpl", *sorted(_LAZY)]


def _install_hooks() -> None:
    from caduceus_plugin import _legacy
    from caduceus_plugin.hosts.grelu import _hook

    _hook.install()  # registers our models on grelu.model.models once gReLU is imported
    _legacy.install()  # the 0.1 import paths (caduceus_plugin.tokenizer, .kipoi_model, ...) keep working


_install_hooks()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'caduceus_plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
