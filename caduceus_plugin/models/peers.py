"""Peer backbones for benchmarks: gReLU's own Enformer trunk and a plain CNN (gReLU's ``ConvTrunk``).

Both follow the backbone contract of the component registry: one-hot ``(N, 4, L)`` (ACGT; N as an all-zero
column, Enformer's convention) -> features ``(N, C, L')`` channels first, with ``.out_channels = C``. They are
registered as ``enformer`` and ``cnn`` (:mod:`caduceus_plugin.registry.builtins`), so ``model=enformer`` and
``LightningModel(model_params={"model_type": "enformer", ...})`` work like a Caduceus backbone. Every keyword
argument is JSON-serialisable.

Enformer (:class:`EnformerBackbone`)
    gReLU's ``EnformerTrunk``: conv tower with attention pooling (``n_conv`` halvings, ``L' = L / 2**n_conv``;
    128-bp bins for the default 7), transformer tower with relative-position attention, pointwise conv to
    ``2 * channels``, GELU, crop of ``crop_len`` bins per side. Defaults are a **small CPU configuration**
    (:data:`SMALL_ENFORMER`: channels 256, 2 transformer layers, 6 heads, key length 32, 7 conv blocks;
    2,736,128 parameters); the published size is :data:`FULL_ENFORMER` (229,845,504 trunk parameters), e.g.
    ``enformer(**FULL_ENFORMER)``. Two constraints come from gReLU's trunk and Enformer's attention: gReLU
    rounds the conv-tower widths to multiples of 128, so ``channels`` must be a multiple of 128 and at least 256;
    and the relative-position basis has 6 components, so ``channels // n_heads`` must be divisible by 6 (256 with
    6 heads, 384 with 4, 1536 with 8). That is why the small configuration is 256 wide with 6 heads.

    ``pretrained`` loads local weights, and the architecture sizes are then read from them (size arguments may
    be left out; ``n_transformers`` smaller than the checkpoint's keeps the first blocks, as gReLU's
    ``EnformerPretrainedModel`` does; any other conflict is a :class:`CheckpointError`):

    * a gReLU state-dict file, ``torch.save(EnformerModel(...).state_dict())`` (keys ``embedding.*``; ``head.*``
      is ignored), e.g. ``human_state_dict.h5`` of the HF repo ``Genentech/enformer-model``. A bare
      ``EnformerTrunk`` state dict, or a Lightning checkpoint's ``state_dict`` (``model.embedding.*``), is also
      accepted. Read with ``torch.load(weights_only=True)``.
    * an enformer-pytorch checkpoint directory (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``,
      as ``enformer_pytorch.Enformer.save_pretrained`` writes, e.g. ``EleutherAI/enformer-official-rough``).
      Parameter names are mapped by :func:`enformer_pytorch_key` (the mapping table is in its docstring).

    Parity with enformer-pytorch (tested in ``tests/models/test_peers.py``): in eval mode our output equals
    ``Enformer(x.transpose(1, 2), return_only_embeddings=True).transpose(1, 2)`` (float32 round-off), with
    ``crop_len = (bins - target_length) / 2`` (``target_length=896`` at 196,608 bp is ``crop_len=320``). Both use
    the same GELU (``sigmoid(1.702 x) * x``) in the same places, including the final one after the pointwise conv.
    Differences that remain, and why they cannot be removed without changing gReLU's trunk:

    * enformer-pytorch crops *before* its final pointwise block and gReLU crops *after* it. The block is
      position-wise, so in eval mode the results are identical; in training mode its BatchNorm sees batch
      statistics over the cropped (enformer-pytorch) or uncropped (gReLU) positions, so training steps differ
      slightly when ``crop_len > 0``.
    * the dropout after the pointwise conv is ``dropout_rate / 8`` in enformer-pytorch but ``ff_dropout // 8``
      (floor division: 0) in gReLU's trunk -- training mode only.
    * ``enformer_pytorch.from_pretrained('EleutherAI/enformer-official-rough')`` switches its attention to the
      TensorFlow-computed gamma positional features (``use_tf_gamma=True``); the ``config.json`` does not say so.
      Pass ``use_tf_gamma=True`` to do the same here; those features exist only for 1536 bins (196,608 bp) and
      ``channels // n_heads == 192`` (the published size).

CNN (:class:`ConvBackbone`)
    gReLU's ``ConvTrunk``: a stem conv then ``n_conv - 1`` conv blocks (BatchNorm, ReLU, residual, max-pool 2).
    Defaults (:data:`SMALL_CNN`): stem 64 channels (kernel 15), 4 blocks of kernel 5 widening 128 -> 250, pool
    factor 16 -- 670,888 parameters, the budget of a small Caduceus. Any ``ConvTrunk`` argument can be given.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from caduceus_plugin.errors import CaduceusError, CheckpointError, InputError
from caduceus_plugin.models.state_dict import UntrustedPickleError, read_state_dict

__all__ = [
    "FULL_ENFORMER",
    "SMALL_CNN",
    "SMALL_ENFORMER",
    "ConvBackbone",
    "EnformerBackbone",
    "cnn",
    "enformer",
    "enformer_pytorch_key",
    "load_enformer_weights",
]

#: Small CPU configuration (the defaults): 2,736,128 parameters.
SMALL_ENFORMER: dict[str, int] = {"n_conv": 7, "channels": 256, "n_transformers": 2, "n_heads": 6, "key_len": 32}
#: The published Enformer (Avsec et al. 2021; gReLU's ``EnformerModel`` defaults): 229,845,504 trunk parameters.
FULL_ENFORMER: dict[str, int] = {"n_conv": 7, "channels": 1536, "n_transformers": 11, "n_heads": 8, "key_len": 64}
_DROPOUTS = {"attn_dropout": 0.05, "pos_dropout": 0.01, "ff_dropout": 0.4}  # gReLU's / Enformer's defaults
_SIZES = tuple(SMALL_ENFORMER)
_TF_GAMMA_BINS = 1536
_TF_GAMMA_FEATURES = 192

#: Small CNN (the defaults of :class:`ConvBackbone`): 670,888 parameters, output ``(N, 250, L / 16)``.
SMALL_CNN: dict[str, Any] = {
    "stem_channels": 64,
    "stem_kernel_size": 15,
    "n_conv": 5,
    "channel_init": 128,
    "channel_mult": 1.25,
    "kernel_size": 5,
    "act_func": "relu",
    "norm": True,
    "residual": True,
    "pool_func": "max",
    "pool_size": 2,
    "dropout": 0.0,
    "crop_len": 0,
}


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CaduceusError(f"enformer: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def _conv_widths(n_conv: int, channels: int, divisible_by: int = 128) -> list[int]:
    """Channel widths of the conv tower (stem output first), as gReLU's ``EnformerConvTower`` builds them."""
    from enformer_pytorch.modeling_enformer import exponential_linspace_int

    half = channels // 2
    return [half, *exponential_linspace_int(half, channels, num=n_conv - 1, divisible_by=divisible_by)]


def _check_architecture(sizes: Mapping[str, int]) -> None:
    n_conv = _check_int("n_conv", sizes["n_conv"], 3)
    channels = _check_int("channels", sizes["channels"], 2)
    n_transformers = _check_int("n_transformers", sizes["n_transformers"], 0)
    n_heads = _check_int("n_heads", sizes["n_heads"], 1)
    _check_int("key_len", sizes["key_len"], 1)
    widths = _conv_widths(n_conv, channels)
    if min(widths) < 1 or widths[-1] != channels:
        raise CaduceusError(
            f"enformer: channels must be a multiple of 128 and at least 256 (gReLU's Enformer conv tower rounds its "
            f"widths to multiples of 128), got {channels}"
        )
    if n_transformers and (channels // n_heads) % 6:
        raise CaduceusError(
            f"enformer: channels // n_heads must be divisible by 6 (the relative-position basis has 6 components), "
            f"got {channels} // {n_heads} = {channels // n_heads}; e.g. 256 with 6 heads, 384 with 4, 1536 with 8"
        )


# --------------------------------------------------------------------------------------------------------------
# Weights


def enformer_pytorch_key(key: str) -> str | None:
    """gReLU ``EnformerTrunk`` name of an enformer-pytorch ``Enformer`` parameter; ``None`` for its output heads.

    ``_trunk.{1,2,4,6}.*`` are aliases of ``stem``, ``conv_tower``, ``transformer`` and ``final_pointwise``.
    In gReLU's trunk the stem is conv-tower block 0 and the Enformer ``ConvBlock`` (BatchNorm, GELU, Conv) is a
    gReLU ``ConvBlock`` with order ``NACDR``, whose residual and attention pooling are part of the block::

        stem.0.*                               conv_tower.blocks.0.0.*
        stem.1.fn.{0,2}.*                      conv_tower.blocks.0.1.{norm.layer,conv}.*
        stem.2.to_attn_logits.weight           conv_tower.blocks.0.1.pool.layer.to_attn_logits.weight
        conv_tower.{i}.0.{0,2}.*               conv_tower.blocks.{i+1}.0.{norm.layer,conv}.*
        conv_tower.{i}.1.fn.{0,2}.*            conv_tower.blocks.{i+1}.1.{norm.layer,conv}.*
        conv_tower.{i}.2.to_attn_logits.weight conv_tower.blocks.{i+1}.1.pool.layer.to_attn_logits.weight
        transformer.{i}.0.fn.0.*               transformer_tower.blocks.{i}.norm.layer.*
        transformer.{i}.0.fn.1.*               transformer_tower.blocks.{i}.mha.*  (same Attention class)
        transformer.{i}.1.fn.{0,1,4}.*         transformer_tower.blocks.{i}.ffn.{dense1.norm.layer,dense1.linear,
                                               dense2.linear}.*
        final_pointwise.1.{0,2}.*              pointwise_conv.{norm.layer,conv}.*

    Raises :class:`CheckpointError` for a name that is neither of these nor a head.
    """
    key = key.removeprefix("enformer.")
    for alias, canonical in (
        ("_trunk.1.", "stem."),
        ("_trunk.2.", "conv_tower."),
        ("_trunk.4.", "transformer."),
        ("_trunk.6.", "final_pointwise."),
    ):
        if key.startswith(alias):
            key = canonical + key[len(alias) :]
    if key.startswith("_heads."):
        return None
    conv = {"0": "norm.layer", "2": "conv"}
    ffn = {"0": "dense1.norm.layer", "1": "dense1.linear", "4": "dense2.linear"}
    patterns: list[tuple[str, Any]] = [
        (r"stem\.0\.(.+)", lambda m: f"conv_tower.blocks.0.0.{m[1]}"),
        (r"stem\.1\.fn\.([02])\.(.+)", lambda m: f"conv_tower.blocks.0.1.{conv[m[1]]}.{m[2]}"),
        (r"stem\.2\.(to_attn_logits\..+)", lambda m: f"conv_tower.blocks.0.1.pool.layer.{m[1]}"),
        (r"conv_tower\.(\d+)\.0\.([02])\.(.+)", lambda m: f"conv_tower.blocks.{int(m[1]) + 1}.0.{conv[m[2]]}.{m[3]}"),
        (
            r"conv_tower\.(\d+)\.1\.fn\.([02])\.(.+)",
            lambda m: f"conv_tower.blocks.{int(m[1]) + 1}.1.{conv[m[2]]}.{m[3]}",
        ),
        (
            r"conv_tower\.(\d+)\.2\.(to_attn_logits\..+)",
            lambda m: f"conv_tower.blocks.{int(m[1]) + 1}.1.pool.layer.{m[2]}",
        ),
        (r"transformer\.(\d+)\.0\.fn\.0\.(.+)", lambda m: f"transformer_tower.blocks.{m[1]}.norm.layer.{m[2]}"),
        (r"transformer\.(\d+)\.0\.fn\.1\.(.+)", lambda m: f"transformer_tower.blocks.{m[1]}.mha.{m[2]}"),
        (
            r"transformer\.(\d+)\.1\.fn\.([014])\.(.+)",
            lambda m: f"transformer_tower.blocks.{m[1]}.ffn.{ffn[m[2]]}.{m[3]}",
        ),
        (r"final_pointwise\.1\.([02])\.(.+)", lambda m: f"pointwise_conv.{conv[m[1]]}.{m[2]}"),
    ]
    for pattern, target in patterns:
        match = re.fullmatch(pattern, key)
        if match:
            return target(match)
    raise CheckpointError(f"enformer-pytorch parameter {key!r} has no counterpart in gReLU's EnformerTrunk")


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (the shared reader; a Lightning checkpoint's ``state_dict`` unwrapped), its errors
    worded for Enformer weights, which are never read with arbitrary unpickling."""
    try:
        return read_state_dict(path)
    except UntrustedPickleError:
        raise CheckpointError(
            f"cannot read Enformer weights {path}: it stores more than tensors, which weights_only loading refuses "
            "(expected torch.save of a state dict)"
        ) from None
    except CheckpointError as err:
        raise CheckpointError(f"cannot read Enformer weights: {err}") from None


def _grelu_state_dict(raw: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Trunk keys of a gReLU ``EnformerModel`` / ``EnformerTrunk`` / Lightning state dict (heads dropped)."""
    roots = ("conv_tower.", "transformer_tower.", "pointwise_conv.")
    out = {}
    for key, value in raw.items():
        for prefix in ("model.embedding.", "embedding.", ""):
            if key.startswith(prefix) and key[len(prefix) :].startswith(roots):
                out[key[len(prefix) :]] = value
                break
    if not out:
        raise CheckpointError(
            f"{path} holds no Enformer trunk weights (no keys 'embedding.conv_tower.*' or 'conv_tower.*'); expected a "
            "gReLU EnformerModel state dict such as human_state_dict.h5 of Genentech/enformer-model"
        )
    return out


def _sizes_from_grelu_state_dict(sd: Mapping[str, torch.Tensor], path: Path) -> dict[str, int]:
    def indices(prefix: str) -> set[int]:
        return {int(m[1]) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}

    try:
        channels = int(sd["pointwise_conv.conv.weight"].shape[1])
    except KeyError:
        raise CheckpointError(f"{path} lacks pointwise_conv.conv.weight: not a complete Enformer trunk") from None
    sizes = {
        "n_conv": len(indices("conv_tower.blocks.")),
        "channels": channels,
        "n_transformers": len(indices("transformer_tower.blocks.")),
    }
    bias = sd.get("transformer_tower.blocks.0.mha.rel_content_bias")
    if bias is not None:
        if bias.dim() != 4:
            shape = tuple(bias.shape)
            raise CheckpointError(f"{path}: rel_content_bias has shape {shape}, expected (1, heads, 1, key)")
        sizes.update(n_heads=int(bias.shape[1]), key_len=int(bias.shape[3]))
    return sizes


def _read_enformer_pytorch_dir(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(
            f"{path} has no config.json; expected an enformer-pytorch checkpoint directory "
            "(config.json + model.safetensors or pytorch_model.bin)"
        )
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {err}") from None
    if not isinstance(cfg, dict) or "dim" not in cfg or "depth" not in cfg:
        raise CheckpointError(f"{cfg_path} is not an enformer-pytorch config (no 'dim' / 'depth')")
    if (path / "model.safetensors").is_file():
        raw = _read_weights(path / "model.safetensors")
    elif (path / "pytorch_model.bin").is_file():
        raw = _read_weights(path / "pytorch_model.bin")
    else:
        raise CheckpointError(
            f"{path} has config.json but no model.safetensors or pytorch_model.bin "
            "(sharded checkpoints are not supported)"
        )
    mapped: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        ours = enformer_pytorch_key(key)
        if ours is not None:
            mapped[ours] = value
    try:
        sizes = {
            "n_conv": int(cfg.get("num_downsamples", 7)),
            "channels": int(cfg["dim"]),
            "n_transformers": int(cfg["depth"]),
            "n_heads": int(cfg.get("heads", 8)),
            "key_len": int(cfg.get("attn_dim_key", 64)),
        }
        divisible_by = int(cfg.get("dim_divisible_by", 128))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{cfg_path}: bad architecture field: {err}") from None
    if sizes["n_conv"] >= 3 and _conv_widths(sizes["n_conv"], sizes["channels"], divisible_by) != _conv_widths(
        sizes["n_conv"], sizes["channels"]
    ):
        raise CheckpointError(
            f"{cfg_path}: dim_divisible_by={divisible_by} gives conv-tower widths that gReLU's EnformerTrunk (fixed "
            "at multiples of 128) cannot build"
        )
    extra = {
        "attn_dropout": cfg.get("attn_dropout"),
        "pos_dropout": cfg.get("pos_dropout"),
        "ff_dropout": cfg.get("dropout_rate"),
        "use_tf_gamma": cfg.get("use_tf_gamma"),
    }
    return mapped, {**sizes, **{k: v for k, v in extra.items() if v is not None}}


def load_enformer_weights(pretrained: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read local Enformer weights: ``(trunk state dict in gReLU names, architecture read from them)``.

    ``pretrained``: a gReLU state-dict file or an enformer-pytorch checkpoint directory (see the module
    docstring). The architecture holds ``n_conv``, ``channels``, ``n_transformers`` and, when the weights have
    attention layers, ``n_heads`` / ``key_len`` (plus dropouts and ``use_tf_gamma`` from an enformer-pytorch
    ``config.json``). Raises :class:`CheckpointError` for anything missing or unreadable.
    """
    path = Path(os.path.expanduser(os.fspath(pretrained)))
    if path.is_dir():
        sd, arch = _read_enformer_pytorch_dir(path)
        if not sd:
            raise CheckpointError(f"{path}: the checkpoint holds no Enformer trunk weights")
        return sd, arch
    if not path.is_file():
        raise CheckpointError(
            f"Enformer weights {path} do not exist; give a gReLU state-dict file (e.g. human_state_dict.h5) or an "
            "enformer-pytorch checkpoint directory"
        )
    sd = _grelu_state_dict(_read_weights(path), path)
    return sd, _sizes_from_grelu_state_dict(sd, path)


# --------------------------------------------------------------------------------------------------------------
# Backbones


class EnformerBackbone(nn.Module):
    """gReLU's ``EnformerTrunk`` as a registry backbone: one-hot ``(N, 4, L)`` -> ``(N, 2 * channels, L')``.

    ``L' = ceil(L / 2**n_conv) - 2 * crop_len`` (128-bp bins for ``n_conv=7``).

    Args:
        n_conv: conv blocks including the stem (one halving each). Default 7.
        channels: width of the transformer tower; output has ``2 * channels``. Default 256 (small).
        n_transformers: transformer layers. Default 2 (small).
        n_heads: attention heads. Default 6 (small).
        key_len: key/query length per head. Default 32 (small).
        attn_dropout, pos_dropout, ff_dropout: dropouts (gReLU's defaults 0.05, 0.01, 0.4).
        crop_len: output bins removed from each end.
        pretrained: local weights (gReLU state-dict file or enformer-pytorch directory); sizes come from them.
        use_tf_gamma: TensorFlow gamma positional features (only with 1536 bins and ``channels // n_heads == 192``).
    """

    def __init__(
        self,
        n_conv: int | None = None,
        channels: int | None = None,
        n_transformers: int | None = None,
        n_heads: int | None = None,
        key_len: int | None = None,
        attn_dropout: float | None = None,
        pos_dropout: float | None = None,
        ff_dropout: float | None = None,
        crop_len: int = 0,
        pretrained: str | None = None,
        use_tf_gamma: bool | None = None,
    ) -> None:
        super().__init__()
        from grelu.model.trunks.enformer import EnformerTrunk

        given = {
            "n_conv": n_conv,
            "channels": channels,
            "n_transformers": n_transformers,
            "n_heads": n_heads,
            "key_len": key_len,
        }
        options = {
            "attn_dropout": attn_dropout,
            "pos_dropout": pos_dropout,
            "ff_dropout": ff_dropout,
            "use_tf_gamma": use_tf_gamma,
        }
        state_dict = None
        if pretrained is not None:
            state_dict, arch = load_enformer_weights(pretrained)
            sizes = {k: arch.get(k, given[k] if given[k] is not None else SMALL_ENFORMER[k]) for k in _SIZES}
            for key, value in given.items():
                if value is None or value == sizes[key]:
                    continue
                if key == "n_transformers" and isinstance(value, int) and 0 <= value < sizes[key]:
                    state_dict = {
                        k: v
                        for k, v in state_dict.items()
                        if not (m := re.match(r"transformer_tower\.blocks\.(\d+)\.", k)) or int(m[1]) < value
                    }
                    sizes[key] = value
                    continue
                raise CheckpointError(
                    f"the Enformer weights {pretrained} have {key}={sizes[key]} but {key}={value} was given; leave the "
                    "size arguments out (they are read from the weights; only n_transformers may be smaller)"
                )
            options = {k: (v if v is not None else arch.get(k)) for k, v in options.items()}
        else:
            sizes = {k: (v if v is not None else SMALL_ENFORMER[k]) for k, v in given.items()}
        dropouts = {k: float(options[k] if options[k] is not None else _DROPOUTS[k]) for k in _DROPOUTS}
        if not isinstance(crop_len, int) or isinstance(crop_len, bool) or crop_len < 0:
            raise CaduceusError(f"enformer: crop_len must be a non-negative integer, got {crop_len!r}")
        _check_architecture(sizes)
        self.use_tf_gamma = bool(options["use_tf_gamma"])
        if self.use_tf_gamma and sizes["channels"] // sizes["n_heads"] != _TF_GAMMA_FEATURES:
            raise CaduceusError(
                f"enformer: use_tf_gamma needs channels // n_heads == {_TF_GAMMA_FEATURES} (the published size), got "
                f"{sizes['channels']} // {sizes['n_heads']}"
            )
        self.trunk = EnformerTrunk(**sizes, **dropouts, crop_len=crop_len)
        if self.use_tf_gamma:
            from enformer_pytorch.modeling_enformer import Attention

            for module in self.trunk.modules():
                if isinstance(module, Attention):
                    module.use_tf_gamma = True
        if state_dict is not None:
            self._load(state_dict, pretrained)
        self.config: dict[str, Any] = {**sizes, **dropouts, "crop_len": crop_len, "use_tf_gamma": self.use_tf_gamma}
        self.n_conv, self.channels, self.crop_len = sizes["n_conv"], sizes["channels"], crop_len
        self.out_channels = 2 * sizes["channels"]
        self.pool_factor = 2 ** sizes["n_conv"]
        self.pretrained = None if pretrained is None else os.fspath(pretrained)

    def _load(self, state_dict: dict[str, torch.Tensor], origin: Any) -> None:
        expected = self.trunk.state_dict()
        missing = sorted(set(expected) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(expected))
        if missing or unexpected:
            what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
            raise CheckpointError(
                f"the Enformer weights {origin} do not fit the architecture ({len(missing)} missing, "
                f"{len(unexpected)} unexpected parameters; first {what})"
            )
        for key, value in state_dict.items():
            if value.shape != expected[key].shape:
                raise CheckpointError(
                    f"the Enformer weights {origin} do not fit the architecture: {key} has shape {tuple(value.shape)}, "
                    f"expected {tuple(expected[key].shape)}"
                )
        self.trunk.load_state_dict(state_dict, strict=True)

    def output_length(self, length: int) -> int:
        """Bins out for ``length`` bp in (before cropping: ``ceil`` at each of the ``n_conv`` halvings)."""
        for _ in range(self.n_conv):
            length = math.ceil(length / 2)
        return length - 2 * self.crop_len

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 4:
            raise InputError(f"enformer expects a one-hot tensor of shape (N, 4, L), got {tuple(x.shape)}")
        bins = self.output_length(x.shape[-1])
        if bins < 1:
            raise InputError(
                f"a {x.shape[-1]}-bp input gives {bins + 2 * self.crop_len} bins, nothing left after cropping "
                f"{self.crop_len} from each end; use longer sequences or a smaller crop_len"
            )
        if self.use_tf_gamma and bins + 2 * self.crop_len != _TF_GAMMA_BINS:
            raise InputError(
                f"use_tf_gamma works only with {_TF_GAMMA_BINS} bins ({_TF_GAMMA_BINS * self.pool_factor} bp), got "
                f"{x.shape[-1]} bp; set use_tf_gamma=False for other lengths"
            )
        return self.trunk(x.float())


class ConvBackbone(nn.Module):
    """gReLU's ``ConvTrunk`` as a registry backbone: one-hot ``(N, 4, L)`` -> ``(N, out_channels, L')``.

    Keyword arguments are ``ConvTrunk``'s (``stem_channels``, ``n_conv``, ``channel_init``, ``channel_mult``,
    ``kernel_size``, ``dilation_init``, ``dilation_mult``, ``act_func``, ``norm``, ``pool_func``, ``pool_size``,
    ``residual``, ``dropout``, ``crop_len``); defaults are :data:`SMALL_CNN`. ``L' = L // pool_factor - 2 *
    crop_len`` (with "same" convolutions; ``pool_factor = pool_size ** (n_conv - 1)`` when pooling).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        from grelu.model.trunks import ConvTrunk

        allowed = [p for p, v in inspect.signature(ConvTrunk).parameters.items() if v.kind is v.POSITIONAL_OR_KEYWORD]
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise CaduceusError(f"cnn: unknown hyper-parameter {unknown[0]!r}; choose from {', '.join(allowed)}")
        config = {**SMALL_CNN, **kwargs}
        if config.get("pool_func") is None:
            config["pool_size"] = None
        try:
            self.trunk = ConvTrunk(**config)
        except (NotImplementedError, AssertionError, ValueError, TypeError) as err:
            raise CaduceusError(f"cnn: bad hyper-parameters {kwargs}: {type(err).__name__} {err}") from None
        tower = self.trunk.conv_tower
        self.config = config
        self.out_channels = int(tower.out_channels)
        self.pool_factor = int(tower.pool_factor)
        self.receptive_field = int(tower.receptive_field)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 4:
            raise InputError(f"cnn expects a one-hot tensor of shape (N, 4, L), got {tuple(x.shape)}")
        return self.trunk(x.float())


def enformer(**kwargs: Any) -> EnformerBackbone:
    """Enformer backbone (registry factory); defaults: the small CPU configuration :data:`SMALL_ENFORMER`."""
    allowed = list(inspect.signature(EnformerBackbone).parameters)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise CaduceusError(f"enformer: unknown hyper-parameter {unknown[0]!r}; choose from {', '.join(allowed)}")
    return EnformerBackbone(**kwargs)


def cnn(**kwargs: Any) -> ConvBackbone:
    """CNN baseline backbone (registry factory); defaults: :data:`SMALL_CNN`."""
    return ConvBackbone(**kwargs)
