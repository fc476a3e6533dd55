"""Hook specifications of the ``genomic_models`` plugin system (pluggy).

A distribution adds components by declaring an entry point in the ``genomic_models`` group that names a module
with hook implementations::

    # pyproject.toml
    [project.entry-points.genomic_models]
    mymodels = "my_pkg.plugin"

    # my_pkg/plugin.py
    from caduceus_plugin import hookimpl

    @hookimpl
    def register_components(registry):
        registry.register_backbone("toy_cnn", "my_pkg.models:ToyCNN")   # or the class itself
        registry.register_head("my_head", "my_pkg.heads:MyHead")

Passing ``"module:attr"`` strings keeps discovery cheap: nothing is imported until the component is built.
caduceus-plugin registers its own components through the same hook (entry point ``caduceus`` in its pyproject).
"""

from __future__ import annotations

import pluggy

PROJECT = "genomic_models"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_components(registry) -> None:  # type: ignore[no-untyped-def]
    """Register backbones and heads with ``registry`` (a
    :class:`caduceus_plugin.registry.components.ComponentRegistry`).

    Args:
        registry: call ``registry.register_backbone(name, factory)`` and ``registry.register_head(name, factory)``.
            ``factory`` is an ``nn.Module`` class (or any callable returning one), or a ``"module:attr"`` string
            resolved lazily. Backbones map one-hot ``(N, 4, L)`` to ``(N, C, L')`` and expose ``out_channels``;
            heads map ``(N, C, L')`` to ``(N, n_tasks, L_out)`` and expose ``n_tasks`` and ``in_channels``.
    """
