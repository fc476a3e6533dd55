"""HyenaDNA (Nguyen et al. 2023, arXiv 2306.15794) in plain PyTorch: backbone, checkpoint I/O and a plug-in trunk.

Written from the architecture description in docs/peers-and-benchmarks.md §1 (the authors' code is
HazyResearch/hyena-dna ``standalone_hyenadna.py``, Apache-2.0; the ``-hf`` port is LongSafari/hyenadna-*-hf).

Shapes: ``input_ids`` (b, l) -> hidden states (b, l, d_model), the final LayerNorm output of the causal backbone.
The trunk maps one-hot ``(N, 4, L)`` (ACGT; N as an all-zero or 0.25 column) to ``(N, d_model, L)``.

The module tree mirrors the authors' state-dict keys, so released checkpoints load by name::

    backbone.embeddings.word_embeddings.weight                                 (16, d)
    backbone.layers.{i}.norm1 / norm2 / mlp.fc1 / mlp.fc2
    backbone.layers.{i}.mixer.{in_proj, out_proj, short_filter}
    backbone.layers.{i}.mixer.filter_fn.{bias, pos_emb.z, pos_emb.t, modulation.deltas}
    backbone.layers.{i}.mixer.filter_fn.implicit_filter.{0,2,4,6}              Linear layers (6 without bias)
    backbone.layers.{i}.mixer.filter_fn.implicit_filter.{1,3,5}.freq           ONE shared Sin module
    backbone.ln_f

Two published layouts are read by :func:`from_pretrained`: the original LongSafari repos (``config.json`` with a
nested ``layer`` dict + Lightning ``weights.ckpt``, keys ``model.backbone.*``, possibly with ``.mixer.layer.`` /
``.mlp.layer.`` from gradient checkpointing) and the ``-hf`` repos (flat ``config.json`` + ``model.safetensors``,
keys ``hyena.backbone.*``, the shared ``freq`` stored once). Token ids are the same as Caduceus's
(A=7 C=8 G=9 T=10 N=11 [PAD]=4, left padding), so :func:`caduceus_plugin.tokenizer.tokenize` serves both.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import save_file
from torch import nn

from caduceus_plugin.errors import CheckpointError, InputError
from caduceus_plugin.tokenizer import onehot_to_token_probs, tokenize

__all__ = [
    "HyenaDNA",
    "HyenaDNAConfig",
    "HyenaDNATrunk",
    "fftconv_fn",
    "fftconv_ref",
    "from_pretrained",
    "hyenadna",
    "hyenadna_config",
    "next_fast_len",
    "save_pretrained",
    "tokenize",
]

# config


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


def hyenadna_config(tag: str | None = None, **overrides: Any) -> HyenaDNAConfig:
    """The config of the registered ``hyenadna`` spec (defaults, or released checkpoint ``tag``), with overrides."""
    from caduceus_plugin.errors import CaduceusError
    from caduceus_plugin.specs import get_spec

    spec = get_spec("hyenadna")
    kwargs = dict(spec["config"])
    if tag is not None:
        match = [c for c in spec["checkpoints"] if c["tag"] == tag]
        if not match:
            raise CaduceusError(
                f"model 'hyenadna' has no checkpoint {tag!r}: choose one of "
                + ", ".join(c["tag"] for c in spec["checkpoints"])
            )
        kwargs.update({k: match[0][k] for k in ("d_model", "n_layer", "d_inner", "l_max")})
    kwargs.update(overrides)
    return HyenaDNAConfig(**kwargs)


# long convolution: fast path and its reference twin


def next_fast_len(n: int) -> int:
    """Smallest 5-smooth integer (2^a 3^b 5^c) >= ``n``: a length both pocketfft and cuFFT transform quickly."""
    if n <= 1:
        return 1
    best = 1 << (n - 1).bit_length()  # a power of two always works
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35  # smallest power-of-two multiple of p35 reaching n
            if m < n:
                m <<= (math.ceil(n / m) - 1).bit_length()
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def fftconv_fn(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Causal long convolution ``y[..., i] = sum_{j<=i} k[c, j] u[..., c, i-j] + bias[c] u[..., c, i]`` via FFT.

    Args:
        u: input, ``(b, d, l)``.
        k: one filter per channel, ``(d, l)``.
        bias: per-channel skip term ``(d,)`` or None.

    The FFT runs in float32 (or the input's dtype if wider) on a 5-smooth length >= 2l - 1, so no wrap-around
    reaches the first ``l`` outputs.
    """
    length = u.shape[-1]
    n = next_fast_len(2 * length - 1)
    work = torch.promote_types(u.dtype, torch.float32)
    u_f = torch.fft.rfft(u.to(work), n=n)
    k_f = torch.fft.rfft(k.to(work), n=n)
    y = torch.fft.irfft(u_f * k_f, n=n)[..., :length]
    if bias is not None:
        y = y + u.to(work) * bias.to(work)[:, None]
    return y.to(u.dtype)


def fftconv_ref(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Reference twin of :func:`fftconv_fn`: the same causal convolution as an explicit grouped ``conv1d``."""
    d, length = k.shape
    weight = k.flip(-1)[:, None, :].to(u.dtype)  # conv1d correlates; flipping makes it a convolution
    y = F.conv1d(F.pad(u, (length - 1, 0)), weight, groups=d)
    if bias is not None:
        y = y + u * bias.to(u.dtype)[:, None]
    return y


# blocks


class Sin(nn.Module):
    """``sin(freq * x)`` with a trainable frequency per feature (shared by all activations of one filter MLP)."""

    def __init__(self, dim: int, w: float, train: bool, device: torch.device | None = None, dtype: Any = None):
        super().__init__()
        self.freq = nn.Parameter(torch.full((1, dim), float(w), device=device, dtype=dtype), requires_grad=train)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class PositionalEmbedding(nn.Module):
    """Features ``z (1, l_max, emb_dim) = [t, cos(f w), -sin(f w)]`` of the implicit filter, and ``t (1, l_max, 1)``.

    ``t = linspace(0, 1, l_max)``, ``w = 2 pi i / l_max`` for positions ``i``, ``f = linspace(1e-4, bands - 1,
    bands)`` with ``bands = (emb_dim - 1) / 2``. Both are deterministic buffers built for the model's ``l_max``
    and sliced to the input length, so the filter of a short input depends on ``l_max``.
    """

    def __init__(self, emb_dim: int, l_max: int, device: torch.device | None = None, dtype: Any = None):
        super().__init__()
        bands = (emb_dim - 1) // 2
        t = torch.linspace(0, 1, l_max, device=device)[None, :, None]
        w = 2 * math.pi * torch.linspace(0, l_max - 1, l_max, device=device)[None, :, None] / l_max
        f = torch.linspace(1e-4, bands - 1, bands, device=device)[None, None]
        z = torch.exp(-1j * f * w)
        self.register_buffer("z", torch.cat([t, z.real, z.imag], dim=-1).to(dtype or torch.float32))
        self.register_buffer("t", t.to(dtype or torch.float32))

    def forward(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.z[:, :length], self.t[:, :length]


class ExponentialModulation(nn.Module):
    """Window ``h * (exp(-t |delta_c|) + shift)``; ``delta_c`` spans fast (30 %) to slow (150 %) decay to 1e-2."""

    def __init__(
        self, d_model: int, shift: float, modulate: bool, device: torch.device | None = None, dtype: Any = None
    ):
        super().__init__()
        target, fast, slow = 1e-2, 0.3, 1.5
        deltas = torch.linspace(math.log(target) / slow, math.log(target) / fast, d_model, device=device)
        self.register_buffer("deltas", deltas[None, None].to(dtype or torch.float32))
        self.shift = shift
        self.modulate = modulate

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if not self.modulate:
            return h
        return h * (torch.exp(-t * self.deltas.abs()) + self.shift)


class HyenaFilter(nn.Module):
    """Implicit long filter: positional features -> MLP with shared Sin -> exponential window; plus skip ``bias``."""

    def __init__(self, config: HyenaDNAConfig, device: torch.device | None = None, dtype: Any = None):
        super().__init__()
        c, kw = config, {"device": device, "dtype": dtype}
        d = c.d_model * (c.hyena_order - 1)
        self.use_bias = c.use_bias
        self.bias = nn.Parameter(torch.randn(d, **kw))
        self.pos_emb = PositionalEmbedding(c.emb_dim, c.l_max, **kw)
        act = Sin(c.filter_order, c.activation_freq, c.train_freq, **kw)  # ONE module, reused after every Linear
        layers: list[nn.Module] = [nn.Linear(c.emb_dim, c.filter_order, **kw), act]
        for _ in range(c.num_inner_mlps):
            layers += [nn.Linear(c.filter_order, c.filter_order, **kw), act]
        layers.append(nn.Linear(c.filter_order, d, bias=False, **kw))
        self.implicit_filter = nn.Sequential(*layers)
        self.modulation = ExponentialModulation(d, c.modulation_shift, c.modulate, **kw)

    def filter(self, length: int) -> torch.Tensor:
        """The filters ``(d, length)``."""
        z, t = self.pos_emb(length)
        h = self.modulation(t, self.implicit_filter(z))
        return rearrange(h[0], "l d -> d l")


class HyenaOperator(nn.Module):
    """Order-2 Hyena mixer: ``x0, x1, v = shortconv(in_proj(u))``; ``y = out_proj(x0 * (h * (x1 v) + D x1 v))``."""

    def __init__(self, config: HyenaDNAConfig, device: torch.device | None = None, dtype: Any = None):
        super().__init__()
        c, kw = config, {"device": device, "dtype": dtype}
        self.d_model, self.l_max = c.d_model, c.l_max
        width = c.d_model * (c.hyena_order + 1)
        self.in_proj = nn.Linear(c.d_model, width, **kw)
        self.out_proj = nn.Linear(c.d_model, c.d_model, **kw)
        self.short_filter = nn.Conv1d(
            width, width, c.short_filter_order, padding=c.short_filter_order - 1, groups=width, **kw
        )
        self.dropout = nn.Dropout(c.hyena_dropout)
        self.filter_fn = HyenaFilter(c, **kw)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``u`` (b, l, d) -> (b, l, d)."""
        length = u.shape[1]
        uc = self.short_filter(rearrange(self.in_proj(u), "b l c -> b c l"))[..., :length]  # causal crop
        x0, x1, v = uc.split(self.d_model, dim=1)
        f = self.filter_fn
        v = self.dropout(v * x1)
        v = fftconv_fn(v, f.filter(length), f.bias if f.use_bias else None)
        return self.out_proj(rearrange(v * x0, "b d l -> b l d"))


class Mlp(nn.Module):
    def __init__(self, d_model: int, d_inner: int, device: torch.device | None = None, dtype: Any = None):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_inner, device=device, dtype=dtype)
        self.fc2 = nn.Linear(d_inner, d_model, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class HyenaBlock(nn.Module):
    """Pre-norm block: ``r += drop(h); h = mixer(LN1(r)); r += drop(h); h = mlp(LN2(r))``; returns ``(h, r)``."""

    def __init__(self, config: HyenaDNAConfig, first: bool, device: torch.device | None = None, dtype: Any = None):
        super().__init__()
        c, kw = config, {"device": device, "dtype": dtype}
        self.residual_in_fp32 = c.residual_in_fp32
        self.dropout1 = nn.Dropout(c.embed_dropout if first else c.resid_dropout)
        self.mixer = HyenaOperator(c, **kw)
        self.dropout2 = nn.Dropout(c.resid_dropout)
        self.norm1 = nn.LayerNorm(c.d_model, eps=c.layer_norm_epsilon, **kw)
        self.norm2 = nn.LayerNorm(c.d_model, eps=c.layer_norm_epsilon, **kw)
        self.mlp = Mlp(c.d_model, c.d_inner, **kw)  # type: ignore[arg-type]

    def _add(self, h: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        residual = h if residual is None else residual + h
        return residual.float() if self.residual_in_fp32 else residual

    def forward(self, h: torch.Tensor, residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        residual = self._add(self.dropout1(h), residual)
        h = self.mixer(self.norm1(residual.to(self.norm1.weight.dtype)))
        residual = self._add(self.dropout2(h), residual)
        return self.mlp(self.norm2(residual.to(self.norm2.weight.dtype))), residual


class HyenaEmbeddings(nn.Module):
    def __init__(self, config: HyenaDNAConfig, device: torch.device | None = None, dtype: Any = None):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.padded_vocab_size, config.d_model, device=device, dtype=dtype)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.word_embeddings(input_ids)


class HyenaBackbone(nn.Module):
    """Token embedding -> ``n_layer`` pre-norm Hyena blocks -> final LayerNorm (no positional embedding)."""

    def __init__(self, config: HyenaDNAConfig, device: torch.device | None = None, dtype: Any = None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.embeddings = HyenaEmbeddings(config, **kw)
        self.layers = nn.ModuleList([HyenaBlock(config, i == 0, **kw) for i in range(config.n_layer)])
        self.drop_f = nn.Dropout(config.resid_dropout)
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.layer_norm_epsilon, **kw)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden`` (b, l, d) token embeddings -> (b, l, d) final normed states."""
        residual = None
        for layer in self.layers:
            hidden, residual = layer(hidden, residual)
        residual = self.drop_f(hidden) + residual
        return self.ln_f(residual.to(self.ln_f.weight.dtype))


# main class


class HyenaDNA(nn.Module):
    """HyenaDNA backbone (the authors' ``HyenaDNAModel`` without head): keys ``backbone.*``.

    Args:
        config: hyper-parameters.
        device: where to allocate parameters (``"meta"`` to count them without memory).
        dtype: parameter dtype.
    """

    def __init__(self, config: HyenaDNAConfig, device: torch.device | str | None = None, dtype: Any = None):
        super().__init__()
        self.config = config
        self.backbone = HyenaBackbone(config, device=device, dtype=dtype)  # type: ignore[arg-type]
        self._init_weights()

    def _init_weights(self) -> None:
        """The authors' scheme: N(0, 0.02) for Linear/Embedding weights, zero biases, out_proj/fc2 rescaled."""
        std = self.config.initializer_range
        with torch.no_grad():
            for name, module in self.named_modules():
                if isinstance(module, nn.Linear):
                    scale = 1 / math.sqrt(2 * self.config.n_layer) if name.endswith(("out_proj", "fc2")) else 1.0
                    module.weight.normal_(0, std * scale)
                    if module.bias is not None:
                        module.bias.zero_()
                elif isinstance(module, nn.Embedding):
                    module.weight.normal_(0, std)

    def embed(self, input_ids: torch.Tensor | None = None, token_probs: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings (b, l, d) from ids (b, l) or from token weights (b, l, vocab) by a matmul."""
        weight = self.backbone.embeddings.word_embeddings.weight
        if (input_ids is None) == (token_probs is None):
            raise InputError("pass exactly one of input_ids or token_probs")
        if token_probs is not None:
            return token_probs.to(weight.dtype) @ weight
        return self.backbone.embeddings(input_ids)

    def forward(
        self, input_ids: torch.Tensor | None = None, *, token_probs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Hidden states (b, l, d_model) for token ids (b, l) or token weights (b, l, vocab)."""
        ref = input_ids if input_ids is not None else token_probs
        if ref is not None and ref.shape[1] > self.config.l_max:
            raise InputError(
                f"input length {ref.shape[1]} exceeds this HyenaDNA model's l_max {self.config.l_max}: "
                "split the sequence or use a checkpoint with a longer max_seq_len"
            )
        return self.backbone(self.embed(input_ids, token_probs))

    def num_parameters(self, include_pos_emb: bool = False) -> int:
        """Parameters, the shared Sin ``freq`` counted once; ``include_pos_emb`` adds ``z`` (5 l_max per layer)."""
        n = sum(p.numel() for p in self.parameters())
        if include_pos_emb:
            n += sum(layer.mixer.filter_fn.pos_emb.z.numel() for layer in self.backbone.layers)  # type: ignore[union-attr]
        return n


# checkpoints

CONFIG_NAME = "config.json"
WEIGHT_NAMES = ("model.safetensors", "weights.ckpt", "pytorch_model.bin")
_DERIVED = (".pos_emb.z", ".pos_emb.t", ".modulation.deltas")  # deterministic: regenerated when absent
_FREQ = re.compile(r"^(backbone\.layers\.\d+\.mixer\.filter_fn\.implicit_filter)\.(\d+)\.freq$")


def _find_files(path: Path) -> tuple[Path, Path]:
    if not path.exists():
        raise CheckpointError(
            f"HyenaDNA checkpoint path {path} does not exist: pass a directory with config.json and "
            "model.safetensors (-hf layout) or weights.ckpt (original layout)"
        )
    folder = path if path.is_dir() else path.parent
    config = folder / CONFIG_NAME
    if not config.is_file():
        raise CheckpointError(f"no config.json in {folder}: a HyenaDNA checkpoint needs its config.json")
    if path.is_file():
        return config, path
    weights = next((path / n for n in WEIGHT_NAMES if (path / n).is_file()), None)
    if weights is None:
        ckpts = sorted(path.glob("*.ckpt"))
        if len(ckpts) != 1:
            raise CheckpointError(
                f"no weights in {path}: expected model.safetensors (-hf layout) or weights.ckpt (original layout)"
            )
        weights = ckpts[0]
    return config, weights


def normalize_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map both published layouts onto ``backbone.*`` keys; tensors outside the backbone (LM head) are dropped."""
    out = {}
    for key, value in state.items():
        for prefix in ("model.", "hyena."):  # Lightning module / HF CausalLM wrapper
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        if not key.startswith("backbone."):
            continue
        key = key.replace(".mixer.layer.", ".mixer.").replace(".mlp.layer.", ".mlp.")  # gradient checkpointing
        out[key] = value
    return out


def load_state_dict_into(model: HyenaDNA, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strictly load normalised ``state`` into ``model``; the shared ``freq`` may appear once or at every index."""
    state = dict(state)
    own = model.state_dict()
    if not state:
        raise CheckpointError(f"{source}: no HyenaDNA backbone tensors (keys model.backbone.* or hyena.backbone.*)")
    # shared Sin frequency: gather every stored copy, check they agree, then fill all indices
    groups: dict[str, list[str]] = {}
    for key in own:
        m = _FREQ.match(key)
        if m:
            groups.setdefault(m.group(1), []).append(key)
    for keys in groups.values():
        stored = [k for k in keys if k in state]
        if not stored:
            raise CheckpointError(f"{source}: missing tensor {keys[0]} (the Sin frequency of the implicit filter)")
        first = state[stored[0]]
        for k in stored[1:]:
            if not torch.equal(state[k], first):
                raise CheckpointError(f"{source}: {k} should be the shared Sin frequency {stored[0]} but differs")
        for k in keys:
            state[k] = first
    missing = [k for k in own if k not in state and not k.endswith(_DERIVED)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{source}: missing tensor {missing[0]}{more}; the file does not match config.json")
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{source}: unexpected tensor {unexpected[0]}{more}; the file does not match config.json")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{source}: tensor {key} has shape {tuple(value.shape)}, config.json implies {tuple(own[key].shape)}"
            )
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{source}: tensor {key} contains NaN or inf values")
    model.load_state_dict(state, strict=False)


def from_pretrained(
    path: str | os.PathLike[str],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    trust_pickle: bool = False,
) -> HyenaDNA:
    """Load a :class:`HyenaDNA` backbone in eval mode from a local directory of either published layout.

    Args:
        path: ``-hf`` directory (``config.json`` + ``model.safetensors``), original directory (``config.json`` +
            ``weights.ckpt``), or a weights file with ``config.json`` beside it.
        device: where to put the model.
        dtype: parameter dtype (default float32).
        trust_pickle: allow arbitrary unpickling of a ``.ckpt``/``.bin`` that holds more than tensors (Lightning
            hyper-parameters); by default pickles are read with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: missing or corrupt files, unusable config, missing/unexpected/mis-shaped tensors.
    """
    from caduceus_plugin.checkpoint import read_state_dict

    config_path, weights_path = _find_files(Path(path))
    config = HyenaDNAConfig.from_json_file(config_path)
    state = normalize_keys(read_state_dict(weights_path, trust_pickle=trust_pickle))
    model = HyenaDNA(config)
    load_state_dict_into(model, state, source=str(weights_path))
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model.eval()


def export_state_dict(model: HyenaDNA, layout: str = "hf") -> dict[str, torch.Tensor]:
    """State dict in a published layout: ``hf`` (``hyena.backbone.*``, ``freq`` once) or ``original``."""
    if layout not in ("hf", "original"):
        raise InputError(f"unknown checkpoint layout {layout!r}: choose 'hf' or 'original'")
    out = {}
    for key, value in model.state_dict().items():
        m = _FREQ.match(key)
        if layout == "hf":
            if m and int(m.group(2)) != 1:
                continue  # the shared frequency is stored once, under index 1
            out["hyena." + key] = value.detach().contiguous().cpu().clone()
        else:
            out["model." + key] = value.detach().cpu()  # shared freq stays one tensor under three keys
    return out


def save_pretrained(model: HyenaDNA, directory: str | os.PathLike[str], layout: str = "hf") -> Path:
    """Write ``model`` as a checkpoint directory; the directory appears whole or not at all (temp dir + rename).

    Args:
        model: the backbone to save.
        directory: target directory (replaced if it exists).
        layout: ``"hf"`` (``config.json`` + ``model.safetensors``) or ``"original"`` (nested ``config.json`` +
            Lightning-style ``weights.ckpt``).
    """
    state = export_state_dict(model, layout)
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} exists and is not a directory: choose another output path")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    old: Path | None = None
    try:
        if layout == "hf":
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            config = model.config.to_hf_dict()
        else:
            torch.save({"state_dict": state}, tmp / "weights.ckpt")
            config = model.config.to_original_dict()
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
    except BaseException:
        if old is not None and not target.exists():
            os.replace(old / target.name, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return target


# trunk (gReLU-style component)


class HyenaDNATrunk(nn.Module):
    """HyenaDNA on one-hot input, channels first: ``(N, 4, L)`` -> ``(N, d_model, L)``.

    The one-hot enters through a matmul with the A/C/G/T rows of the embedding (N columns select the N row), so
    gradients reach the input. HyenaDNA is causal and not RC-aware; ``conjoin=True`` averages ``f(x)`` with the
    length-flipped ``f(rc(x))`` (post-hoc conjoining), which makes length-pooled outputs RC-invariant.

    Args:
        pretrained: a local checkpoint directory (either layout); it fixes the architecture.
        conjoin: average the two strands as above (two forward passes).
        **config: :class:`HyenaDNAConfig` fields (``d_model``, ``n_layer``, ``l_max``, ...); defaults are the
            medium-160k architecture (d_model 256, 8 layers, l_max 160,002).
    """

    def __init__(self, pretrained: str | None = None, conjoin: bool = False, **config: Any):
        super().__init__()
        fields = {f.name for f in dataclasses.fields(HyenaDNAConfig)}
        unknown = sorted(set(config) - fields)
        if unknown:
            raise InputError(f"unknown HyenaDNA option {unknown[0]!r}: choose from {', '.join(sorted(fields))}")
        if pretrained is not None:
            self.hyena = from_pretrained(pretrained).train()
            clash = [k for k, v in config.items() if getattr(self.hyena.config, k) != v]
            if clash:
                k = clash[0]
                raise InputError(
                    f"{k}={config[k]!r} disagrees with the checkpoint ({getattr(self.hyena.config, k)!r}): "
                    "drop it or use a different checkpoint"
                )
        else:
            try:
                self.hyena = HyenaDNA(HyenaDNAConfig(**config))
            except ValueError as err:
                raise InputError(str(err)) from None
        self.config = self.hyena.config
        self.conjoin = conjoin
        self.out_channels = self.config.d_model

    def _strand(self, x: torch.Tensor) -> torch.Tensor:
        probs = onehot_to_token_probs(x, self.config.padded_vocab_size)
        return rearrange(self.hyena(token_probs=probs), "n l c -> n c l")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, 4, L) one-hot -> (N, d_model, L)."""
        if x.dim() != 3 or x.shape[1] != 4:
            raise InputError(f"expected one-hot input of shape (batch, 4, length), got {tuple(x.shape)}")
        out = self._strand(x)
        if self.conjoin:
            out = 0.5 * (out + self._strand(x.flip(1, 2)).flip(-1))
        return out

    def num_parameters(self, include_pos_emb: bool = False) -> int:
        return self.hyena.num_parameters(include_pos_emb)


def hyenadna(**kwargs: Any) -> HyenaDNATrunk:
    """HyenaDNA trunk for the component registry (see :class:`HyenaDNATrunk` for the arguments)."""
    return HyenaDNATrunk(**kwargs)
