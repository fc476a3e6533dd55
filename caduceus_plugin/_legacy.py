"""Import paths of caduceus-plugin 0.1 that moved in the layout by concern; they keep working for this release.

``import caduceus_plugin.tokenizer`` (or ``python -m caduceus_plugin.train``, or an exported kipoi ``model.py``
written before the move, which imports ``caduceus_plugin.kipoi_model``) gets the module at its new home: the
same module object, so attributes, private names and monkeypatching behave exactly as there. One table, one
finder, installed by ``import caduceus_plugin``; nothing is imported until an old name is asked for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from typing import Any

#: old dotted name -> new dotted name
MOVED = {
    "caduceus_plugin.tokenizer": "caduceus_plugin.sequence",
    "caduceus_plugin.config": "caduceus_plugin.models.caduceus.config",
    "caduceus_plugin.checkpoint": "caduceus_plugin.models.caduceus.checkpoint",
    "caduceus_plugin.features": "caduceus_plugin.models.caduceus.features",
    "caduceus_plugin.models.streaming": "caduceus_plugin.models.caduceus.streaming",
    "caduceus_plugin.models.trunk": "caduceus_plugin.models.caduceus.trunk",
    "caduceus_plugin.heads": "caduceus_plugin.models.heads",
    "caduceus_plugin.hookspecs": "caduceus_plugin.registry.hookspecs",
    "caduceus_plugin.plugins": "caduceus_plugin.registry.components",
    "caduceus_plugin.components": "caduceus_plugin.registry.builtins",
    "caduceus_plugin.specs": "caduceus_plugin.registry.specs",
    "caduceus_plugin.inference": "caduceus_plugin.jobs.predictor",
    "caduceus_plugin.predict": "caduceus_plugin.jobs.predict",
    "caduceus_plugin.variants": "caduceus_plugin.jobs.variants",
    "caduceus_plugin.pretrain": "caduceus_plugin.jobs.pretrain",
    "caduceus_plugin.bench": "caduceus_plugin.jobs.bench.run",
    "caduceus_plugin.bench_extras": "caduceus_plugin.jobs.bench.extras",
    "caduceus_plugin.datasets": "caduceus_plugin.data",
    "caduceus_plugin.grelu_models": "caduceus_plugin.hosts.grelu.models",
    "caduceus_plugin.train": "caduceus_plugin.hosts.grelu.train",
    "caduceus_plugin.conf": "caduceus_plugin.hosts.grelu.conf",
    "caduceus_plugin.kipoi_model": "caduceus_plugin.hosts.kipoi.model",
    "caduceus_plugin.kipoi_export": "caduceus_plugin.hosts.kipoi.export",
    "caduceus_plugin.commands": "caduceus_plugin.cli.args",
    "caduceus_plugin.ops.scan_numba": "caduceus_plugin.ops.numba.scan",
    "caduceus_plugin.ops.mamba_numba": "caduceus_plugin.ops.numba.stream",
}


class _AliasLoader(importlib.abc.Loader):
    """Hands out the module at its new name; ``get_code`` lets ``python -m <old name>`` run the new module."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(self.target)

    def exec_module(self, module: Any) -> None:
        pass  # already executed under its new name

    def get_code(self, fullname: str) -> Any:
        spec = importlib.util.find_spec(self.target)
        if spec is None or spec.loader is None:
            raise ImportError(f"no module named {self.target!r}")
        if spec.submodule_search_locations is not None:  # a package: `python -m` runs its __main__
            spec = importlib.util.find_spec(self.target + ".__main__")
        return spec.loader.get_code(spec.name)  # type: ignore[union-attr]


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Idempotent."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
