"""HyenaDNA hyper-parameters: :class:`HyenaDNAConfig` (both published ``config.json`` layouts). The registered
spec's defaults or a released checkpoint's sizes: ``caduceus_plugin.registry.specs.checkpoint_config("hyenadna",
tag)``."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caduceus_plugin.errors import CheckpointError

__all__ = ["HyenaDNAConfig"]


@dataclass
class HyenaDNAConfig:
    """Hyper-parameters of a HyenaDNA backbone (names of the ``-hf`` config; ``l_max`` is its ``max_seq_len``).

    Defaults are the released "medium-160k" architecture (d_model 256, 8 layers, l_max 160,002; 6.55 M
    parameters). ``l_max`` fixes the positional features of the implicit filters and the longest input.
    """

    d_model: int = 256
    n_layer: int = 8
    d_inner: int | None = None  # MLP width; None -> 4 * d_model
    vocab_size: int = 12
    pad_vocab_size_multiple: int = 8
    l_max: int = 160_002
    emb_dim: int = 5  # positional features of the implicit filter: t, then (emb_dim - 1) / 2 cos/sin bands
    filter_order: int = 64  # width of the implicit-filter MLP
    num_inner_mlps: int = 2
    hyena_order: int = 2
    short_filter_order: int = 3
    activation_freq: float = 10.0  # initial Sin frequency
    train_freq: bool = True
    modulate: bool = True
    modulation_shift: float = 0.05
    use_bias: bool = True  # the per-channel skip term of the long convolution
    layer_norm_epsilon: float = 1e-5
    residual_in_fp32: bool = True
    embed_dropout: float = 0.1
    resid_dropout: float = 0.0
    hyena_dropout: float = 0.0
    hyena_filter_dropout: float = 0.0  # accepted for compatibility; the authors' filter does not apply it
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        if self.d_inner is None:
            self.d_inner = 4 * self.d_model
        for name in ("d_model", "n_layer", "d_inner", "vocab_size", "l_max", "filter_order", "short_filter_order"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"HyenaDNA option {name} must be a positive integer, got {value!r}")
        if self.hyena_order != 2:
            raise ValueError(f"only hyena_order 2 is supported (all released checkpoints), got {self.hyena_order!r}")
        if not isinstance(self.emb_dim, int) or self.emb_dim < 3 or self.emb_dim % 2 == 0:
            raise ValueError(f"emb_dim must be an odd integer >= 3 (time, then cos/sin pairs), got {self.emb_dim!r}")
        if self.vocab_size > self.padded_vocab_size:
            raise ValueError("vocab_size exceeds the padded vocabulary")

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_size_multiple
        return self.vocab_size if m <= 1 else math.ceil(self.vocab_size / m) * m

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> HyenaDNAConfig:
        """Read either published layout: original (nested ``layer`` dict) or ``-hf`` (flat, ``max_seq_len``)."""
        if "layer" in raw:  # original LongSafari layout
            layer = raw["layer"]
            if not isinstance(layer, dict):
                raise ValueError("'layer' must be a dict of Hyena operator options")
            if layer.get("_name_", "hyena") != "hyena":
                raise ValueError(f"layer type {layer.get('_name_')!r} is not a Hyena operator")
            if layer.get("normalized", False):
                raise ValueError("normalized implicit filters (layer.normalized=true) are not supported")
            if "l_max" not in layer:
                raise ValueError("'layer' lacks l_max (the model's maximum sequence length)")
            kwargs = {k: raw[k] for k in ("d_model", "n_layer", "d_inner", "vocab_size") if k in raw}
            for ours, theirs in (
                ("pad_vocab_size_multiple", "pad_vocab_size_multiple"),
                ("residual_in_fp32", "residual_in_fp32"),
                ("embed_dropout", "embed_dropout"),
                ("resid_dropout", "resid_dropout"),
                ("layer_norm_epsilon", "layer_norm_epsilon"),
                ("initializer_range", "initializer_range"),
            ):
                if theirs in raw:
                    kwargs[ours] = raw[theirs]
            for ours, theirs in (
                ("l_max", "l_max"),
                ("emb_dim", "emb_dim"),
                ("filter_order", "filter_order"),
                ("num_inner_mlps", "num_inner_mlps"),
                ("hyena_order", "order"),
                ("short_filter_order", "short_filter_order"),
                ("activation_freq", "w"),
                ("train_freq", "train_freq"),
                ("modulate", "modulate"),
                ("hyena_dropout", "dropout"),
                ("hyena_filter_dropout", "filter_dropout"),
            ):
                if theirs in layer:
                    kwargs[ours] = layer[theirs]
        else:  # -hf layout
            if "max_seq_len" not in raw and "l_max" not in raw:
                raise ValueError("lacks max_seq_len (the model's maximum sequence length)")
            names = {f.name for f in dataclasses.fields(cls)}
            kwargs = {k: v for k, v in raw.items() if k in names}
            if "max_seq_len" in raw:
                kwargs["l_max"] = raw["max_seq_len"]
        if "d_model" not in kwargs or "n_layer" not in kwargs:
            raise ValueError("lacks d_model or n_layer")
        return cls(**kwargs)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> HyenaDNAConfig:
        """Parse a ``config.json`` of either layout; any problem becomes a one-line :class:`CheckpointError`."""
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{path} is not a readable JSON config ({err}); re-download it") from None
        if not isinstance(raw, dict):
            raise CheckpointError(f"{path} does not hold a JSON object")
        try:
            return cls.from_dict(raw)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: not a usable HyenaDNA config: {err}") from None

    def to_hf_dict(self) -> dict[str, Any]:
        """The flat ``-hf`` config (``max_seq_len`` instead of ``l_max``), plus our extra fields."""
        out: dict[str, Any] = {"model_type": "hyenadna", "architectures": ["HyenaDNAModel"]}
        for f in dataclasses.fields(self):
            out["max_seq_len" if f.name == "l_max" else f.name] = getattr(self, f.name)
        return out

    def to_original_dict(self) -> dict[str, Any]:
        """The original LongSafari config layout (model kwargs with a nested ``layer`` dict)."""
        return {
            "d_model": self.d_model,
            "n_layer": self.n_layer,
            "d_inner": self.d_inner,
            "vocab_size": self.vocab_size,
            "resid_dropout": self.resid_dropout,
            "embed_dropout": self.embed_dropout,
            "residual_in_fp32": self.residual_in_fp32,
            "pad_vocab_size_multiple": self.pad_vocab_size_multiple,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "return_hidden_state": True,
            "layer": {
                "_name_": "hyena",
                "emb_dim": self.emb_dim,
                "filter_order": self.filter_order,
                "num_inner_mlps": self.num_inner_mlps,
                "order": self.hyena_order,
                "short_filter_order": self.short_filter_order,
                "l_max": self.l_max,
                "modulate": self.modulate,
                "w": self.activation_freq,
                "train_freq": self.train_freq,
                "dropout": self.hyena_dropout,
                "filter_dropout": self.hyena_filter_dropout,
                "lr_pos_emb": 0.0,
            },
        }
