"""caduceus-plugin's own components, registered through the same ``genomic_models`` hook as anyone else's.

Kept light: factories are ``"module:attr"`` strings, so listing components imports no model code.
"""

from __future__ import annotations

from caduceus_plugin.hookspecs import hookimpl


@hookimpl
def register_components(registry) -> None:  # type: ignore[no-untyped-def]
    registry.register_backbone("caduceus_ps", "caduceus_plugin.models.trunk:caduceus_ps")
    registry.register_backbone("caduceus_ph", "caduceus_plugin.models.trunk:caduceus_ph")
    registry.register_backbone("hyenadna", "caduceus_plugin.models.hyenadna:hyenadna")
    registry.register_backbone("enformer", "caduceus_plugin.models.peers:enformer")
    registry.register_backbone("cnn", "caduceus_plugin.models.peers:cnn")
    registry.register_head("pooled", "caduceus_plugin.heads:PooledHead")
    registry.register_head("track", "caduceus_plugin.heads:TrackHead")
    registry.register_head("mlm", "caduceus_plugin.heads:MLMHead")
