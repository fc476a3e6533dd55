"""HyenaDNA (Nguyen et al. 2023, arXiv 2306.15794) in plain PyTorch: the modules of the backbone.

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

Both published checkpoint layouts are read and written by :mod:`caduceus_plugin.models.hyenadna.checkpoint`; the
hyper-parameters are :class:`~caduceus_plugin.models.hyenadna.config.HyenaDNAConfig`; the long convolution is
:func:`caduceus_plugin.ops.fftconv.fftconv_fn`. Token ids are the same as Caduceus's (A=7 C=8 G=9 T=10 N=11
[PAD]=4, left padding), so :func:`caduceus_plugin.sequence.tokenize` serves both.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from caduceus_plugin.errors import InputError
from caduceus_plugin.models.hyenadna.config import HyenaDNAConfig
from caduceus_plugin.ops.fftconv import fftconv_fn
from caduceus_plugin.ops.gemm import keeps_float32

__all__ = ["HyenaDNA", "HyenaDNAForCausalLM"]

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

    @keeps_float32
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


class HyenaDNAForCausalLM(nn.Module):
    """HyenaDNA backbone + next-token head tied to the token embedding (the ``-hf`` ``HyenaDNAForCausalLM``).

    ``input_ids`` (b, l) -> ``logits`` (b, l, padded vocab) float32, where position ``i`` scores the token at
    ``i + 1`` (the backbone is causal). Used by next-token pre-training (``caduceus pretrain --arch hyenadna``).
    """

    def __init__(self, config: HyenaDNAConfig, device: torch.device | str | None = None, dtype: Any = None):
        super().__init__()
        self.config = config
        self.hyena = HyenaDNA(config, device=device, dtype=dtype)

    @keeps_float32
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (b, l, vocab) for token ids (b, l); the head is the embedding matrix (tied)."""
        hidden = self.hyena(input_ids)
        return F.linear(hidden, self.hyena.backbone.embeddings.word_embeddings.weight).float()

    def num_parameters(self) -> int:
        """Trainable parameters (the tied head adds none)."""
        return self.hyena.num_parameters()
