"""Import hook: once ``grelu.model.models`` is imported, register our components on it.

Installed by ``import caduceus_plugin``; costs nothing until gReLU is imported, and imports neither gReLU nor
torch itself. If gReLU's models module is already imported, registration happens at once.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Any

TARGET = "grelu.model.models"


def _register(module: Any) -> None:
    ours = sys.modules.get("caduceus_plugin.hosts.grelu.models")
    if ours is not None and not hasattr(ours, "_on_import"):
        return  # grelu_models itself is importing gReLU; it registers at the end of its own import
    from caduceus_plugin.hosts.grelu.models import _on_import

    _on_import(module)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.inner.exec_module(module)
        _register(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    """Idempotent."""
    if TARGET in sys.modules:
        _register(sys.modules[TARGET])
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
