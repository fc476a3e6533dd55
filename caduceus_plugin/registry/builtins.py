"""caduceus-plugin's own components, written with the same ``genomic_models`` hook a third party uses.

They are registered directly by :func:`caduceus_plugin.registry.components.get_registry` (not through an entry
point), so ``CADUCEUS_DISABLE_PLUGIN_AUTOLOAD`` switches off third-party plugins only, as pytest's
``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` keeps pytest's own. Kept light: factories are ``"module:attr"`` strings, so
listing components imports no model code.
"""

from __future__ import annotations

from caduceus_plugin.registry.hookspecs import hookimpl


@hookimpl
def register_components(registry) -> None:  # type: ignore[no-untyped-def]
    registry.register_backbone("caduceus_ps", "caduceus_plugin.models.caduceus.trunk:caduceus_ps")
    registry.register_backbone("caduceus_ph", "caduceus_plugin.models.caduceus.trunk:caduceus_ph")
    registry.register_backbone("hyenadna", "caduceus_plugin.models.hyenadna.trunk:hyenadna")
    registry.register_backbone("enformer", "caduceus_plugin.models.peers:enformer")
    registry.register_backbone("cnn", "caduceus_plugin.models.peers:cnn")
    registry.register_head("pooled", "caduceus_plugin.models.heads:PooledHead")
    registry.register_head("track", "caduceus_plugin.models.heads:TrackHead")
    registry.register_head("mlm", "caduceus_plugin.models.heads:MLMHead")
