"""Caduceus-PS and Caduceus-Ph backbones and the masked-LM model.

The module tree mirrors the authors' Hugging Face state-dict keys (spec §3) so released checkpoints load by
name: ``caduceus.backbone.{embeddings.word_embeddings, layers.{i}.{norm, mixer}, norm_f}`` and ``lm_head``.
One difference: the RCPS add-norm wrapper of the unfused PS model is a function here, so its key
``norm.submodule.weight`` is stored as ``norm.weight`` (the checkpoint module renames it both ways).

Shapes: ``input_ids`` (b, l) -> ``hidden_states`` (b, l, c) with ``c = 2 * d_model`` (PS) or ``d_model`` (Ph)
-> ``logits`` (b, l, vocab).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from caduceus_plugin.models.caduceus.config import CaduceusConfig
from caduceus_plugin.models.mamba import BiMamba, keep_in_proj_output, make_norm
from caduceus_plugin.models.rcps import RCPSEmbedding, RCPSLMHead, RCPSWrapper, rcps_norm, swap_halves
from caduceus_plugin.ops.gemm import keeps_float32


@dataclass
class MaskedLMOutput:
    """``logits`` (b, l, vocab); ``hidden_states`` (b, l, c) final normed backbone output; ``loss`` if labels."""

    logits: torch.Tensor
    hidden_states: torch.Tensor
    loss: torch.Tensor | None = None


#: Layers are recomputed in the backward pass by default when the activations a backward would keep are estimated
#: above this many bytes (see :func:`saved_activation_bytes`).
CHECKPOINT_BUDGET_BYTES = 1 << 30
#: Bytes kept per position, layer and hidden channel for the backward without layer checkpointing, measured on the
#: fused CPU path (PS 7.7M at 8,192 bp: 1.55 GB of activations, peak RSS with a 4 MiB mmap threshold).
SAVED_BYTES_PER_CHANNEL = 24


def saved_activation_bytes(batch: int, length: int, channels: int, n_layer: int) -> int:
    """Estimated bytes of activations a training step keeps for its backward without layer checkpointing."""
    return SAVED_BYTES_PER_CHANNEL * batch * length * channels * n_layer


def checkpointed_layers(batch: int, length: int, channels: int, n_layer: int,
                        budget: int = CHECKPOINT_BUDGET_BYTES) -> int:  # fmt: skip
    """How many of ``n_layer`` layers to recompute so that the kept activations fit ``budget`` bytes: a
    checkpointed layer keeps only its residual stream (``4 * channels`` bytes per position), the others
    :func:`saved_activation_bytes` of one layer. 0 when everything fits; ``n_layer`` when even that does not."""
    full = saved_activation_bytes(batch, length, channels, 1)
    kept = 4 * batch * length * channels
    excess = n_layer * full - budget
    if excess <= 0:
        return 0
    return min(n_layer, -(-excess // max(1, full - kept)))


class CaduceusEmbeddings(nn.Module):
    """Token ids (b, l) -> embeddings (b, l, c): ``nn.Embedding`` (Ph) or :class:`RCPSEmbedding` (PS, ``c = 2d``)."""

    def __init__(self, config: CaduceusConfig, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        v, d = config.padded_vocab_size, config.d_model
        if config.rcps:
            self.word_embeddings: nn.Module = RCPSEmbedding(v, d, config.full_complement_map(), device, dtype)
        else:
            self.word_embeddings = nn.Embedding(v, d, device=device, dtype=dtype)

    @property
    def weight(self) -> torch.Tensor:
        return self.word_embeddings.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids (b, l) -> embeddings (b, l, c)."""
        return self.word_embeddings(input_ids)

    def from_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """Embedding as a matmul with ``probs`` (b, l, vocab): differentiable with respect to ``probs``."""
        emb = self.word_embeddings
        if isinstance(emb, RCPSEmbedding):
            return emb.from_probs(probs)
        return probs.to(emb.weight.dtype) @ emb.weight


class CaduceusBlock(nn.Module):
    """Add -> Norm -> BiMamba (RCPS-wrapped for PS): the authors' layer, the fused RCPS half swap included.

    ``norm`` is the d-channel norm (for PS it is applied to both strands, the reverse one in RC orientation).
    """

    def __init__(self, config: CaduceusConfig, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self._config = config
        self.rcps, self.residual_in_fp32 = config.rcps, config.residual_in_fp32
        self.norm = make_norm(config.d_model, config.rms_norm, config.norm_epsilon, device=device, dtype=dtype)
        mixer = BiMamba(
            config.d_model,
            bidirectional=config.bidirectional,
            strategy=config.bidirectional_strategy,
            weight_tie=config.bidirectional_weight_tie,
            device=device,
            dtype=dtype,
            **config.mamba_kwargs,
        )
        self.mixer: nn.Module = RCPSWrapper(mixer) if config.rcps else mixer

    @property
    def half_swap(self) -> bool:
        """Whether this block exchanges the channel halves of its inputs first (the fused RCPS block, spec §1.6)."""
        return self._config.half_swap

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``hidden`` (b, l, c) and the running ``residual`` (b, l, c; None for the first layer) ->
        ``(mixer_out, new_residual)``, both (b, l, c), with ``new_residual = hidden + residual`` (after the half
        swap when :attr:`half_swap`; float32 with ``residual_in_fp32``) and ``mixer_out = mixer(norm(new_residual))``.
        """
        residual = self.add_residual(hidden, residual)
        return self.mix(residual, hidden.dtype), residual

    def add_residual(self, hidden: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        """The new residual stream (b, l, c): half swap (when :attr:`half_swap`), add, float32 with
        ``residual_in_fp32``."""
        if self.half_swap:
            hidden = swap_halves(hidden)
            residual = None if residual is None else swap_halves(residual)
        residual = hidden if residual is None else hidden + residual
        return residual.float() if self.residual_in_fp32 else residual

    def mix(self, residual: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``mixer(norm(residual))`` (b, l, c), the norm's output cast to ``dtype`` (the block input's) first."""
        normed = rcps_norm(self.norm, residual) if self.rcps else self.norm(residual)
        return self.mixer(normed if dtype is None else normed.to(dtype))


class CaduceusBackbone(nn.Module):
    """Embedding -> n_layer blocks -> final norm (spec §1.4, §1.7). The blocks apply the fused-RCPS half swap.

    Subclasses (the authors'-API classes in :mod:`caduceus_plugin.compat`) choose the module classes by overriding
    :meth:`make_embeddings`, :meth:`make_layer` and :meth:`make_final_norm`; the computation stays here.
    """

    def __init__(self, config: CaduceusConfig, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.config = config
        self.embeddings = self.make_embeddings(config, device, dtype)
        self.layers = nn.ModuleList(self.make_layer(config, i, device, dtype) for i in range(config.n_layer))
        self.norm_f = self.make_final_norm(config, device, dtype)
        #: Recompute layers in the backward pass instead of storing their activations (training memory
        #: O(n_layer * l * c) instead of O(n_layer * l * e * several); a recomputed layer costs ~1.3x). True: every
        #: layer; False: none; None (automatic): as few as keep the activations within ``CHECKPOINT_BUDGET_BYTES``
        #: (1 GiB; :func:`checkpointed_layers`; for the 7.7M models none up to about 5,400 tokens per batch,
        #: 7 of 16 at 8,192, all from about 26,000).
        self.gradient_checkpointing: bool | None = None
        #: Compute dtype of the projections on the length-chunked inference path: None (float32; bf16 under CPU
        #: bf16 autocast or with ``CADUCEUS_MATMUL_DTYPE=bf16``), or ``torch.bfloat16`` / ``"bf16"``.
        self.matmul_dtype: torch.dtype | str | None = None

    def make_embeddings(
        self, config: CaduceusConfig, device: torch.device | None, dtype: torch.dtype | None
    ) -> nn.Module:
        return CaduceusEmbeddings(config, device, dtype)

    def make_layer(
        self, config: CaduceusConfig, index: int, device: torch.device | None, dtype: torch.dtype | None
    ) -> nn.Module:
        """Layer ``index``: called as ``layer(hidden, residual)``, returns ``(mixer_out, residual)``; the streaming
        path uses its ``norm`` (d channels) and ``mixer`` (``BiMamba``, RCPS-wrapped for PS)."""
        return CaduceusBlock(config, device, dtype)

    def make_final_norm(
        self, config: CaduceusConfig, device: torch.device | None, dtype: torch.dtype | None
    ) -> nn.Module:
        return make_norm(config.d_model, config.rms_norm, config.norm_epsilon, device=device, dtype=dtype)

    @keeps_float32
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_probs: torch.Tensor | None = None,
        stream: bool | None = None,
    ) -> torch.Tensor:
        """Token ids (b, l), or token distributions ``token_probs`` (b, l, vocab), to hidden states (b, l, c).

        Returns the final normed hidden states as one tensor (b, l, c), ``c = 2 * d_model`` for PS — not a tuple:
        ``out[0]`` is the first batch row. (The authors' ``CaduceusMixerModel`` returns ``(hidden_states,
        all_hidden_states)``; :class:`caduceus_plugin.compat.modeling_caduceus.CaduceusMixerModel` does too.)

        ``stream`` selects the length-chunked inference path (bounded memory, same outputs); by default it is
        used whenever gradients are off.
        """
        if (input_ids is None) == (token_probs is None):
            raise ValueError("pass exactly one of input_ids or token_probs")
        hidden = self.embeddings(input_ids) if input_ids is not None else self.embeddings.from_probs(token_probs)
        return self.run(hidden, stream)

    @keeps_float32
    def run(self, hidden: torch.Tensor, stream: bool | None = None) -> torch.Tensor:
        """Layers and final norm on embeddings ``hidden`` (b, l, c) -> final hidden states (b, l, c).

        The streaming path (``stream``, default: when gradients are off) uses ``hidden`` as its residual buffer:
        pass a tensor you do not need afterwards.
        """
        if stream is None:
            stream = not torch.is_grad_enabled() and stream_supported(hidden.device)
        if stream:
            from caduceus_plugin.models.caduceus.streaming import backbone_stream

            return backbone_stream(self, hidden, matmul_dtype=self.matmul_dtype)
        return self.forward_embeddings(hidden)

    @keeps_float32
    def forward_embeddings(
        self, hidden: torch.Tensor, all_hidden_states: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Layers and final norm, with autograd, on embeddings ``hidden`` (b, l, c) -> final hidden states (b, l, c).

        With a list ``all_hidden_states``, the input of every layer and then the final output are appended to it
        (``n_layer + 1`` tensors; the first is ``hidden``).
        """
        residual: torch.Tensor | None = None
        n = len(self.layers)
        if not torch.is_grad_enabled():
            n_ckpt = 0
        elif self.gradient_checkpointing is None:
            n_ckpt = checkpointed_layers(*hidden.shape, n)
        else:
            n_ckpt = n if self.gradient_checkpointing else 0
        for i, layer in enumerate(self.layers):
            if all_hidden_states is not None:
                all_hidden_states.append(hidden)
            ckpt = i < n_ckpt
            if ckpt and type(layer).forward is CaduceusBlock.forward:
                # only the residual stream is kept per layer: the add is outside the recomputed part; inside, the
                # mixer keeps its in_proj output (it is dropped and recomputed with the layer anyway)
                residual = layer.add_residual(hidden, residual)
                hidden = checkpoint(_keeping_in_proj, layer.mix, residual, hidden.dtype, use_reentrant=False)
            elif ckpt:
                hidden, residual = checkpoint(layer, hidden, residual, use_reentrant=False)
            else:
                hidden, residual = layer(hidden, residual)
        residual = hidden if residual is None else hidden + residual
        # in the residual stream's dtype (float32 under bf16 autocast or with residual_in_fp32)
        out = rcps_norm(self.norm_f, residual) if self.config.rcps else self.norm_f(residual)
        if all_hidden_states is not None:
            all_hidden_states.append(out)
        return out


def _keeping_in_proj(fn, *args):  # type: ignore[no-untyped-def]
    with keep_in_proj_output():
        return fn(*args)


def stream_supported(device: torch.device) -> bool:
    """The chunked path carries the scan state between chunks, which mamba-ssm's CUDA kernel cannot take."""
    from caduceus_plugin.ops.scan import resolve_backend

    return resolve_backend(device) != "mamba_ssm"


class Caduceus(nn.Module):
    """The bare backbone under the authors' ``backbone.`` prefix (HF ``AutoModel``)."""

    def __init__(self, config: CaduceusConfig, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.config = config
        self.backbone = CaduceusBackbone(config, device, dtype)

    def forward(
        self, input_ids: torch.Tensor | None = None, token_probs: torch.Tensor | None = None, stream: bool | None = None
    ) -> torch.Tensor:
        """Final hidden states (b, l, c) as one tensor (see :meth:`CaduceusBackbone.forward`)."""
        return self.backbone(input_ids, token_probs, stream=stream)


class CaduceusForMaskedLM(nn.Module):
    """Caduceus backbone + MLM head (tied to the embedding). Call with ``input_ids`` (b, l) of the authors' ids.

    Example:
        >>> model = CaduceusForMaskedLM(CaduceusConfig(d_model=32, n_layer=2, rcps=True))
        >>> out = model(torch.tensor([[7, 8, 9, 10]]))
        >>> out.logits.shape, out.hidden_states.shape
        (torch.Size([1, 4, 16]), torch.Size([1, 4, 64]))
    """

    def __init__(self, config: CaduceusConfig, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.config = config
        self.caduceus = Caduceus(config, device, dtype)
        v, d = config.padded_vocab_size, config.d_model
        if config.rcps:
            self.lm_head: nn.Module = RCPSLMHead(v, d, config.full_complement_map(), device, dtype)
        else:
            self.lm_head = nn.Linear(d, v, bias=False, device=device, dtype=dtype)
        self.init_weights()
        self.tie_weights()

    @property
    def backbone(self) -> CaduceusBackbone:
        return self.caduceus.backbone

    def _output_linear(self) -> nn.Linear:
        return self.lm_head.lm_head if isinstance(self.lm_head, RCPSLMHead) else self.lm_head  # type: ignore[return-value]

    def tie_weights(self) -> None:
        """Share the LM head with the embedding (``tie_word_embeddings``) and re-tie BiMamba's in/out projections."""
        tie_weights(self.config, self.backbone, self._output_linear())

    def init_weights(self) -> None:
        """The authors' initialisation (see :func:`init_weights`)."""
        init_weights(self.config, self, self.backbone, self._output_linear())

    @keeps_float32
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        token_probs: torch.Tensor | None = None,
        ignore_index: int = -100,
    ) -> MaskedLMOutput:
        """MLM logits and final hidden states; ``labels`` (b, l) with ``ignore_index`` gives the MLM loss too.

        Returns a :class:`MaskedLMOutput` (attributes ``logits`` (b, l, vocab) float32, ``hidden_states`` (b, l, c)
        the final normed backbone output — one tensor, not per layer — and ``loss``); it is not indexable. For the
        authors' return structure (indexable, per-layer hidden states, ``return_dict``) use
        :class:`caduceus_plugin.compat.modeling_caduceus.CaduceusForMaskedLM`.
        """
        hidden = self.caduceus(input_ids, token_probs)
        logits = self.lm_head(hidden).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=ignore_index)
        return MaskedLMOutput(logits=logits, hidden_states=hidden, loss=loss)

    def num_parameters(self) -> int:
        """Trainable parameters, each shared tensor counted once (as the paper counts them)."""
        return sum(p.numel() for p in self.parameters())


def tie_weights(config: CaduceusConfig, backbone: CaduceusBackbone, output_linear: nn.Linear | None) -> None:
    """Share ``output_linear`` (the MLM head's Linear, if any) with the embedding table (``tie_word_embeddings``)
    and ``mamba_rev``'s in/out projections with ``mamba_fwd``'s (``bidirectional_weight_tie``)."""
    if output_linear is not None and config.tie_word_embeddings:
        output_linear.weight = backbone.embeddings.word_embeddings.weight  # type: ignore[assignment]
    if config.bidirectional and config.bidirectional_weight_tie:
        for layer in backbone.layers:
            bimamba = layer.mixer.submodule if config.rcps else layer.mixer
            bimamba.mamba_rev.in_proj = bimamba.mamba_fwd.in_proj
            bimamba.mamba_rev.out_proj = bimamba.mamba_fwd.out_proj


@torch.no_grad()
def init_weights(
    config: CaduceusConfig, root: nn.Module, backbone: CaduceusBackbone, output_linear: nn.Linear | None
) -> None:
    """The authors' initialisation (spec §2.1 ``initializer_cfg``) of every module under ``root``: embedding
    N(0, 0.02), Linear biases zero (except dt_proj), out_proj re-scaled by 1/sqrt(n_residuals_per_layer * n_layer);
    an untied ``output_linear`` N(0, 0.02)."""
    cfg = config.initializer_cfg
    std = cfg["initializer_range"]
    nn.init.normal_(backbone.embeddings.word_embeddings.weight, std=std)
    for name, module in root.named_modules():
        if isinstance(module, nn.Linear) and module.bias is not None and not getattr(module.bias, "_no_reinit", False):
            nn.init.zeros_(module.bias)
        if cfg["rescale_prenorm_residual"] and name.endswith("out_proj"):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            module.weight /= math.sqrt(cfg["n_residuals_per_layer"] * config.n_layer)
    if output_linear is not None and not config.tie_word_embeddings:
        nn.init.normal_(output_linear.weight, std=std)
