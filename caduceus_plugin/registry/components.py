"""The component registry: our built-ins plus third-party ``genomic_models`` plugins (:mod:`.hookspecs`).

:func:`get_registry` registers the built-ins (:mod:`.builtins`) and loads third-party plugins once (idempotent),
unless ``CADUCEUS_DISABLE_PLUGIN_AUTOLOAD`` is true, in which case the built-ins and components registered by hand
(``get_registry().register_backbone(...)``) exist. A plugin that fails to
import or raises in its hook is skipped with a warning naming it and its distribution; the others still load.
Listing components imports no model code: factories given as ``"module:attr"`` are resolved only by :meth:`build`.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

from caduceus_plugin import settings
from caduceus_plugin.errors import CaduceusError
from caduceus_plugin.registry import hookspecs

ENTRY_POINT_GROUP = hookspecs.PROJECT
DISABLE_ENV = settings.DISABLE_PLUGIN_AUTOLOAD.name
KINDS = ("backbone", "head")


class PluginWarning(UserWarning):
    """A third-party plugin could not be loaded; it was skipped."""


@dataclass(frozen=True)
class Component:
    """A registered backbone or head: its name, kind, factory (class, callable or ``"module:attr"``) and origin."""

    name: str
    kind: str
    factory: Callable[..., Any] | str
    plugin: str
    distribution: str
    spec: dict[str, Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        """The factory itself (imports its module if it was given as ``"module:attr"``)."""
        if not isinstance(self.factory, str):
            return self.factory
        module, _, attr = self.factory.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as err:
            raise CaduceusError(
                f"{self.kind} {self.name!r} from {self.distribution} points at {self.factory!r}, which cannot be "
                f"imported ({err})"
            ) from None
        return obj


class ComponentRegistry:
    """Names -> components, per kind. Plugins receive it in their ``register_components`` hook."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Component]] = {k: {} for k in KINDS}
        self._origin = ("<manual>", "<manual>")

    def _register(
        self, kind: str, name: str, factory: Callable[..., Any] | str, spec: dict[str, Any] | None = None
    ) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise CaduceusError(f"{kind} name {name!r} must be a Python identifier (letters, digits, underscores)")
        if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
            raise CaduceusError(f"{kind} {name!r}: factory must be a class, a callable or a 'module:attr' string")
        existing = self._items[kind].get(name)
        plugin, dist = self._origin
        if existing is not None and (existing.plugin, existing.factory) != (plugin, factory):
            raise CaduceusError(
                f"{kind} name {name!r} is registered twice: by {existing.distribution} ({existing.plugin}) and by "
                f"{dist} ({plugin})"
            )
        if spec is not None:
            from caduceus_plugin.registry.specs import _REQUIRED_THIRD_PARTY, validate_spec

            spec = validate_spec(dict(spec, name=name), f"of {kind} {name!r} from {dist}", _REQUIRED_THIRD_PARTY)
        self._items[kind][name] = Component(name, kind, factory, plugin, dist, spec)

    def register_backbone(
        self, name: str, factory: Callable[..., Any] | str, spec: dict[str, Any] | None = None
    ) -> None:
        """Register a backbone: one-hot ``(N, 4, L)`` -> ``(N, C, L')`` with ``out_channels``.

        ``spec`` (optional) describes it like the JSON files in ``registry/``: at least ``description``,
        ``input`` and ``output`` (objects); optionally ``config`` (default hyper-parameters) and ``checkpoints``.
        It is validated here; ``caduceus list`` / ``caduceus info NAME`` print it.
        """
        self._register("backbone", name, factory, spec)

    def register_head(self, name: str, factory: Callable[..., Any] | str, spec: dict[str, Any] | None = None) -> None:
        """Register a head: ``(N, C, L')`` -> ``(N, n_tasks, L_out)`` with ``n_tasks`` and ``in_channels``."""
        self._register("head", name, factory, spec)

    def names(self, kind: str = "backbone") -> list[str]:
        return sorted(self._items[kind])

    def get(self, name: str, kind: str = "backbone") -> Component:
        try:
            return self._items[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise CaduceusError(f"unknown {kind} {name!r}: available {kind}s are {known}") from None

    def build(self, name: str, kind: str = "backbone", **kwargs: Any) -> Any:
        """Instantiate a component by name with keyword arguments."""
        return self.get(name, kind).resolve()(**kwargs)

    def components(self) -> list[Component]:
        return [c for kind in KINDS for c in sorted(self._items[kind].values(), key=lambda c: c.name)]


_lock = threading.Lock()
_registry: ComponentRegistry | None = None


def _entry_points() -> list[md.EntryPoint]:
    # An environment that still holds caduceus-plugin 0.1's entry point (it pointed at our built-ins) would
    # register them twice: they are registered directly now.
    eps = md.entry_points(group=ENTRY_POINT_GROUP)
    return sorted((ep for ep in eps if ep.value not in _OUR_OLD_ENTRY_POINTS), key=lambda ep: ep.name)


_OUR_OLD_ENTRY_POINTS = ("caduceus_plugin.components", "caduceus_plugin.registry.builtins")


def load_plugins(registry: ComponentRegistry) -> list[str]:
    """Load every ``genomic_models`` entry point into ``registry``; returns the names of the plugins loaded."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    loaded = []
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist is not None else "<unknown distribution>"
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
            registry._origin = (ep.name, dist)
            others = [p for p in pm.get_plugins() if p is not module]
            pm.subset_hook_caller("register_components", remove_plugins=others)(registry=registry)
        except Exception as err:  # a broken plugin must not take the others down
            warnings.warn(
                f"genomic_models plugin {ep.name!r} from {dist} ({ep.value}) was skipped: {type(err).__name__}: {err}",
                PluginWarning,
                stacklevel=2,
            )
            continue
        finally:
            registry._origin = ("<manual>", "<manual>")
        loaded.append(ep.name)
    return loaded


BUILTIN_PLUGIN = ("caduceus", "caduceus-plugin")


def _register_builtins(registry: ComponentRegistry) -> None:
    from caduceus_plugin.registry import builtins

    registry._origin = BUILTIN_PLUGIN
    try:
        builtins.register_components(registry=registry)
    finally:
        registry._origin = ("<manual>", "<manual>")


def get_registry() -> ComponentRegistry:
    """The process-wide registry: our built-in components, plus third-party plugins loaded on first use (unless
    ``CADUCEUS_DISABLE_PLUGIN_AUTOLOAD`` is true)."""
    global _registry
    with _lock:
        if _registry is None:
            registry = ComponentRegistry()
            _register_builtins(registry)
            if not settings.DISABLE_PLUGIN_AUTOLOAD.get():
                load_plugins(registry)
            _registry = registry
        return _registry


def reset_registry() -> None:
    """Forget the loaded registry (tests; after installing a plugin in a running process)."""
    global _registry
    with _lock:
        _registry = None
