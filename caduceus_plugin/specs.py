"""Model specs shipped in ``registry/`` (installed as ``caduceus_plugin.registry_specs``): one JSON per model with
its default hyper-parameters, released checkpoints (HF repo id, parameter count), and input/output contracts."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from caduceus_plugin.config import CaduceusConfig
from caduceus_plugin.errors import CaduceusError

_REQUIRED = ("name", "description", "family", "config", "input", "output", "checkpoints")


@functools.cache
def load_specs() -> dict[str, dict[str, Any]]:
    """All shipped specs by name, validated (a malformed spec raises :class:`CaduceusError` naming the file)."""
    specs = {}
    for entry in sorted(resources.files("caduceus_plugin.registry_specs").iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".json"):
            continue
        spec = json.loads(entry.read_text())
        missing = [k for k in _REQUIRED if k not in spec]
        if missing:
            raise CaduceusError(f"registry spec {entry.name} lacks field {missing[0]!r}")
        for ckpt in spec["checkpoints"]:
            for key in ("tag", "hf_repo", "d_model", "n_layer", "params"):
                if key not in ckpt:
                    raise CaduceusError(f"registry spec {entry.name}: checkpoint entry lacks {key!r}")
        specs[spec["name"]] = spec
    return specs


def get_spec(name: str) -> dict[str, Any]:
    specs = load_specs()
    if name not in specs:
        raise CaduceusError(f"unknown model {name!r}: choose one of {', '.join(sorted(specs))}")
    return specs[name]


def checkpoint_config(name: str, tag: str | None = None, **overrides: Any) -> CaduceusConfig:
    """The config of a registered model (default hyper-parameters, or those of checkpoint ``tag``)."""
    spec = get_spec(name)
    kwargs = dict(spec["config"])
    if tag is not None:
        match = [c for c in spec["checkpoints"] if c["tag"] == tag]
        if not match:
            tags = ", ".join(c["tag"] for c in spec["checkpoints"])
            raise CaduceusError(f"model {name!r} has no checkpoint {tag!r}: choose one of {tags}")
        kwargs.update(d_model=match[0]["d_model"], n_layer=match[0]["n_layer"])
    kwargs.update(overrides)
    return CaduceusConfig(**kwargs)
