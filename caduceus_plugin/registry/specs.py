"""Model specs shipped in ``registry/`` (installed as ``caduceus_plugin.registry.model_specs``): one JSON per model with
its default hyper-parameters, released checkpoints (HF repo id, parameter count), and input/output contracts."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from caduceus_plugin.errors import CaduceusError
from caduceus_plugin.models.caduceus.config import CaduceusConfig
from caduceus_plugin.models.hyenadna.config import HyenaDNAConfig

_REQUIRED = ("name", "description", "family", "config", "input", "output", "checkpoints")
#: What a third-party component's spec (``register_backbone(..., spec={...})``) must hold at least.
_REQUIRED_THIRD_PARTY = ("description", "input", "output")
_CHECKPOINT_KEYS = ("tag", "hf_repo", "d_model", "n_layer", "params")


def validate_spec(spec: Any, origin: str, required: tuple[str, ...] = _REQUIRED) -> dict[str, Any]:
    """Check a model spec's shape; raises :class:`CaduceusError` naming ``origin`` and the first problem."""
    if not isinstance(spec, dict):
        raise CaduceusError(f"registry spec {origin} must be a JSON object / dict, got {type(spec).__name__}")
    missing = [k for k in required if k not in spec]
    if missing:
        raise CaduceusError(f"registry spec {origin} lacks field {missing[0]!r}")
    for key in ("config", "input", "output"):
        if key in spec and not isinstance(spec[key], dict):
            raise CaduceusError(f"registry spec {origin}: {key!r} must be an object")
    checkpoints = spec.get("checkpoints", [])
    if not isinstance(checkpoints, list):
        raise CaduceusError(f"registry spec {origin}: 'checkpoints' must be a list")
    for ckpt in checkpoints:
        for key in _CHECKPOINT_KEYS:
            if not isinstance(ckpt, dict) or key not in ckpt:
                raise CaduceusError(f"registry spec {origin}: checkpoint entry lacks {key!r}")
    return spec


@functools.cache
def load_specs() -> dict[str, dict[str, Any]]:
    """All shipped specs by name, validated (a malformed spec raises :class:`CaduceusError` naming the file)."""
    specs = {}
    for entry in sorted(resources.files("caduceus_plugin.registry.model_specs").iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".json"):
            continue
        try:
            spec = json.loads(entry.read_text())
        except json.JSONDecodeError as err:
            raise CaduceusError(f"registry spec {entry.name} is not valid JSON: {err}") from None
        validate_spec(spec, entry.name)
        specs[spec["name"]] = spec
    return specs


def get_spec(name: str) -> dict[str, Any]:
    specs = load_specs()
    if name not in specs:
        raise CaduceusError(f"unknown model {name!r}: choose one of {', '.join(sorted(specs))}")
    return specs[name]


#: Config class of each model family whose registered checkpoints this module can size.
_FAMILY_CONFIGS = {"caduceus": CaduceusConfig, "hyenadna": HyenaDNAConfig}
#: Fields of a checkpoint entry that override the spec's default config (those the entry has).
_CHECKPOINT_SIZE_KEYS = ("d_model", "n_layer", "d_inner", "l_max")


def checkpoint_config(name: str, tag: str | None = None, **overrides: Any) -> CaduceusConfig | HyenaDNAConfig:
    """The config of a registered Caduceus or HyenaDNA model: the spec's defaults, or the sizes of its released
    checkpoint ``tag``, with ``overrides`` on top."""
    spec = get_spec(name)
    config_cls = _FAMILY_CONFIGS.get(spec["family"])
    if config_cls is None:
        raise CaduceusError(f"model {name!r} (family {spec['family']!r}) has no config class here")
    kwargs = dict(spec["config"])
    if tag is not None:
        match = [c for c in spec["checkpoints"] if c["tag"] == tag]
        if not match:
            tags = ", ".join(c["tag"] for c in spec["checkpoints"])
            raise CaduceusError(f"model {name!r} has no checkpoint {tag!r}: choose one of {tags}")
        kwargs.update({k: match[0][k] for k in _CHECKPOINT_SIZE_KEYS if k in match[0]})
    kwargs.update(overrides)
    return config_cls(**kwargs)
