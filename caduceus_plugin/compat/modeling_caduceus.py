"""The authors' Caduceus models (``caduceus/modeling_caduceus.py``) with their constructors, forward signatures,
return structures and Hugging Face methods, on our modules (:mod:`caduceus_plugin.models.caduceus.modeling`):
no mamba-ssm, no Triton, no ``trust_remote_code``, any device PyTorch runs on.

Names: :func:`create_block`, :class:`BiMambaWrapper`, :class:`CaduceusEmbeddings`, :class:`CaduceusMixerModel`,
:class:`CaduceusPreTrainedModel`, :class:`Caduceus`, :class:`CaduceusForMaskedLM`,
:class:`CaduceusForSequenceClassification`, :func:`cross_entropy`, :func:`weighted_cross_entropy`, and the config
(:class:`CaduceusConfig`), re-exported as the authors' module does. ``from_pretrained`` / ``save_pretrained`` read
and write a local directory in the released layout (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``; also the authors' Lightning ``.ckpt``), strictly: only a task head that the checkpoint lacks
(``score`` of a classifier loaded from a masked-LM checkpoint) is initialised, and that is logged.

Where the authors' code has a bug or a silent misreading, these classes differ (each is in the method's docstring):
the bare :class:`Caduceus` returns ``(last_hidden_state,)`` rather than the bare tensor when ``return_dict=False``
(so ``out[0]`` is never a batch row); ``hidden_states`` holds every layer's input and the final output in the
unfused branch too; the masked-LM loss ignores ``config.pad_token_id`` or, when it is None, -100 (theirs fails);
``weighted_cross_entropy`` does not write into ``loss_weights``; the ``first``/``last`` pooling strategies work;
``input_ids`` together with ``inputs_embeds`` is an error.

``state_dict()`` holds each shared tensor once (the tied ``mamba_rev`` projections and LM head are left out, as in
the released files), so it saves with safetensors (e.g. from the Hugging Face ``Trainer``); ``load_state_dict``
takes it with or without those aliases and keeps the ties.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from caduceus_plugin.compat._hf import HUB_KWARGS, local_path, read_config_json
from caduceus_plugin.compat._outputs import BaseModelOutputWithNoAttention, MaskedLMOutput, SequenceClassifierOutput
from caduceus_plugin.compat.configuration_caduceus import CaduceusConfig
from caduceus_plugin.compat.layernorm import RMSNorm
from caduceus_plugin.compat.modeling_rcps import (
    RCPSLMHead,
    RCPSMambaBlock,
    _Block,
    refuse_inference_params,
)
from caduceus_plugin.errors import CheckpointError
from caduceus_plugin.fileio import atomic_write
from caduceus_plugin.models.caduceus import checkpoint as _checkpoint
from caduceus_plugin.models.caduceus import modeling as _ours
from caduceus_plugin.models.caduceus.config import CaduceusConfig as PluginConfig
from caduceus_plugin.models.mamba import BiMamba, LayerNorm
from caduceus_plugin.models.state_dict import read_state_dict

__all__ = [
    "BiMambaWrapper",
    "Block",
    "Caduceus",
    "CaduceusConfig",
    "CaduceusEmbeddings",
    "CaduceusForMaskedLM",
    "CaduceusForSequenceClassification",
    "CaduceusMixerModel",
    "CaduceusPreTrainedModel",
    "create_block",
    "cross_entropy",
    "weighted_cross_entropy",
]

logger = logging.getLogger(__name__)

POOLING_STRATEGIES = ("mean", "max", "first", "last")


def _plugin_config(config: CaduceusConfig | PluginConfig) -> PluginConfig:
    if isinstance(config, PluginConfig):
        return config
    if isinstance(config, CaduceusConfig):
        return config.to_plugin_config()
    raise TypeError(f"config must be a CaduceusConfig, not {type(config).__name__}")


# ---------------------------------------------------------------------------------------------------------------
# layers


class BiMambaWrapper(BiMamba):
    """``BiMambaWrapper(d_model, bidirectional=True, bidirectional_strategy="add", bidirectional_weight_tie=True,
    **mamba_kwargs)``: our :class:`~caduceus_plugin.models.mamba.BiMamba` under the authors' keyword names.

    ``mamba_kwargs`` are Mamba's (``d_state``, ``d_conv``, ``expand``, ``dt_rank``, ..., ``layer_idx``,
    ``device``, ``dtype``); anything else is a TypeError.
    """

    def __init__(
        self,
        d_model: int,
        bidirectional: bool = True,
        bidirectional_strategy: str | None = "add",
        bidirectional_weight_tie: bool = True,
        **mamba_kwargs: Any,
    ):
        strategy = "add" if bidirectional_strategy is None or not bidirectional else bidirectional_strategy
        if strategy not in ("add", "ew_multiply"):
            raise NotImplementedError(f"`{strategy}` strategy for bi-directionality is not implemented!")
        super().__init__(
            d_model, bidirectional=bidirectional, strategy=strategy, weight_tie=bidirectional_weight_tie, **mamba_kwargs
        )
        self.bidirectional_strategy = strategy

    def forward(self, hidden_states: torch.Tensor, inference_params: object = None) -> torch.Tensor:  # type: ignore[override]
        """(b, l, d) -> (b, l, d)."""
        refuse_inference_params(inference_params)
        return super().forward(hidden_states)

    def allocate_inference_cache(self, *args: object, **kwargs: object) -> None:
        refuse_inference_params(True)


class Block(_Block):
    """mamba-ssm's ``Block(dim, mixer_cls, norm_cls=nn.LayerNorm, fused_add_norm=False, residual_in_fp32=False)``
    (Add -> Norm -> mixer), the non-RCPS layer of :func:`create_block`."""


def create_block(
    d_model: int,
    ssm_cfg: dict[str, Any] | None = None,
    norm_epsilon: float = 1e-5,
    rms_norm: bool = False,
    residual_in_fp32: bool = False,
    fused_add_norm: bool = False,
    layer_idx: int | None = None,
    bidirectional: bool = True,
    bidirectional_strategy: str | None = "add",
    bidirectional_weight_tie: bool = True,
    rcps: bool = False,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Block | RCPSMambaBlock:
    """One Caduceus layer (the authors' signature): :class:`RCPSMambaBlock` (``rcps``) or :class:`Block` around a
    :class:`BiMambaWrapper`, with :class:`~caduceus_plugin.compat.layernorm.RMSNorm` or LayerNorm.

    ``block(hidden_states, residual=None)`` returns ``(hidden_states, residual)``, both (b, l, c).
    """
    factory = {"device": device, "dtype": dtype}
    mixer_cls = partial(
        BiMambaWrapper,
        layer_idx=layer_idx,
        **(ssm_cfg or {}),
        bidirectional=bidirectional,
        bidirectional_strategy=bidirectional_strategy,
        bidirectional_weight_tie=bidirectional_weight_tie,
        **factory,
    )
    norm_cls = partial(RMSNorm if rms_norm else LayerNorm, eps=norm_epsilon, **factory)
    block_cls = RCPSMambaBlock if rcps else Block
    block = block_cls(
        d_model, mixer_cls, norm_cls=norm_cls, fused_add_norm=fused_add_norm, residual_in_fp32=residual_in_fp32
    )
    block.layer_idx = layer_idx
    return block


class CaduceusEmbeddings(_ours.CaduceusEmbeddings):
    """``CaduceusEmbeddings(config, device=None, dtype=None)``: ids (b, l) -> (b, l, c)."""

    def __init__(
        self,
        config: CaduceusConfig | PluginConfig,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(_plugin_config(config), device, dtype)


class CaduceusMixerModel(_ours.CaduceusBackbone):
    """``CaduceusMixerModel(config, device=None, dtype=None)``: our backbone with the authors' layer classes.

    ``forward(input_ids, inputs_embeds=None, output_hidden_states=False)`` returns ``(hidden_states,
    all_hidden_states)``: the final normed states (b, l, c) and a tuple (empty unless ``output_hidden_states``) of
    every layer's input followed by the final states. ``self.config`` is our config (validated, padded); without
    gradients the forward runs our length-chunked inference path (same outputs, bounded memory).
    """

    def __init__(
        self,
        config: CaduceusConfig | PluginConfig,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        plugin = _plugin_config(config)
        super().__init__(plugin, device, dtype)
        self.fused_add_norm, self.rcps, self.residual_in_fp32 = (
            plugin.fused_add_norm,
            plugin.rcps,
            plugin.residual_in_fp32,
        )

    def make_embeddings(
        self, config: PluginConfig, device: torch.device | None, dtype: torch.dtype | None
    ) -> nn.Module:
        return CaduceusEmbeddings(config, device, dtype)

    def make_layer(
        self, config: PluginConfig, index: int, device: torch.device | None, dtype: torch.dtype | None
    ) -> nn.Module:
        block = create_block(
            config.d_model,
            ssm_cfg=config.mamba_kwargs,
            norm_epsilon=config.norm_epsilon,
            rms_norm=config.rms_norm,
            residual_in_fp32=config.residual_in_fp32,
            fused_add_norm=config.fused_add_norm,
            layer_idx=index,
            bidirectional=config.bidirectional,
            bidirectional_strategy=config.bidirectional_strategy,
            bidirectional_weight_tie=config.bidirectional_weight_tie,
            rcps=config.rcps,
            device=device,
            dtype=dtype,
        )
        block.fused_half_swap = config.half_swap  # honours our rcps_fused_half_swap where a config sets it
        return block

    def make_final_norm(
        self, config: PluginConfig, device: torch.device | None, dtype: torch.dtype | None
    ) -> nn.Module:
        norm_cls = RMSNorm if config.rms_norm else LayerNorm
        return norm_cls(config.d_model, eps=config.norm_epsilon, device=device, dtype=dtype)

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``(hidden_states (b, l, c), all_hidden_states)``; exactly one of ``input_ids`` (b, l) and
        ``inputs_embeds`` (b, l, c)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        hidden = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if output_hidden_states:
            collected: list[torch.Tensor] = []
            out = self.forward_embeddings(hidden, collected)
            return out, tuple(collected)
        if inputs_embeds is not None and not torch.is_grad_enabled():
            hidden = hidden.clone()  # the chunked path works in place in its input
        return self.run(hidden), ()


# ---------------------------------------------------------------------------------------------------------------
# the Hugging Face-style models


class CaduceusPreTrainedModel(nn.Module):
    """Base of the compat models: ``config``, ``from_pretrained`` / ``save_pretrained`` on a local directory,
    ``_from_config``, the authors' initialisation, weight tying, gradient checkpointing, ``device`` / ``dtype``.

    A ``torch.nn.Module`` (not a ``transformers.PreTrainedModel``): loading never goes through transformers'
    weight initialisation, so a weight is either read from the checkpoint or the load fails naming it.
    """

    config_class: ClassVar[type] = CaduceusConfig
    base_model_prefix: ClassVar[str] = "caduceus"
    supports_gradient_checkpointing: ClassVar[bool] = True
    _no_split_modules: ClassVar[list[str]] = ["BiMambaWrapper"]
    main_input_name: ClassVar[str] = "input_ids"
    #: head parameters this class may initialise when a checkpoint lacks them (see from_pretrained)
    _head_prefixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: CaduceusConfig | PluginConfig):
        super().__init__()
        if isinstance(config, PluginConfig):
            config = CaduceusConfig.from_plugin_config(config)
        if not isinstance(config, CaduceusConfig):
            raise TypeError(f"config must be a caduceus_plugin.compat CaduceusConfig, not {type(config).__name__}")
        self.config = config
        self.name_or_path = getattr(config, "name_or_path", "")
        self._full_state_dict = False
        # public names from torch 2.5 on; the private ones (same hooks) before
        post = getattr(self, "register_state_dict_post_hook", None) or self._register_state_dict_hook
        post(_drop_tied_aliases)
        if hasattr(self, "register_load_state_dict_pre_hook"):
            self.register_load_state_dict_pre_hook(_fill_tied_aliases)
        else:  # pragma: no cover - torch < 2.0
            self._register_load_state_dict_pre_hook(_fill_tied_aliases, with_module=True)

    # --- structure -----------------------------------------------------------------------------------------

    def _pad_config(self) -> PluginConfig:
        """Pad ``config.vocab_size`` and extend ``config.complement_map`` to what the model uses (the authors'
        model does the same to its config); returns our config for these values."""
        if self.config.rcps and self.config.complement_map is None:
            raise ValueError("Complement map must be provided for RCPS (config.complement_map)")
        plugin = self.config.to_plugin_config()
        self.config.vocab_size = plugin.vocab_size
        if self.config.complement_map is not None:
            self.config.complement_map = dict(plugin.complement_map or {})
        return plugin

    @property
    def _backbone(self) -> CaduceusMixerModel:
        return self.caduceus.backbone if hasattr(self, "caduceus") else self.backbone

    def _output_linear(self) -> nn.Linear | None:
        head = getattr(self, "lm_head", None)
        return head.lm_head if isinstance(head, RCPSLMHead) else head

    def post_init(self) -> None:
        """The authors' initialisation (:func:`caduceus_plugin.models.caduceus.modeling.init_weights`), then ties."""
        plugin = self._backbone.config
        _ours.init_weights(plugin, self, self._backbone, self._output_linear())
        self.tie_weights()

    def tie_weights(self) -> None:
        """Tie the LM head (if any) to the embedding and ``mamba_rev``'s in/out projections to ``mamba_fwd``'s."""
        _ours.tie_weights(self._backbone.config, self._backbone, self._output_linear())

    def get_input_embeddings(self) -> nn.Module:
        return self._backbone.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        if self.config.rcps:
            raise NotImplementedError("Setting input embeddings for RCPS LM is not supported.")
        self._backbone.embeddings.word_embeddings = value

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(p.dtype for p in self.parameters() if p.is_floating_point())

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameters, each shared tensor counted once."""
        skip = {id(self.get_input_embeddings().weight)} if exclude_embeddings else set()
        return sum(
            p.numel() for p in self.parameters() if id(p) not in skip and (p.requires_grad or not only_trainable)
        )

    def can_generate(self) -> bool:
        return False

    # --- gradient checkpointing (recomputation in the backward pass, per layer) --------------------------------

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Recompute every layer in the backward pass. ``gradient_checkpointing_kwargs`` may hold ``use_reentrant``
        only; the recomputation is always torch's non-reentrant checkpoint."""
        unknown = set(gradient_checkpointing_kwargs or {}) - {"use_reentrant"}
        if unknown:
            raise TypeError(f"gradient_checkpointing_kwargs: unknown key(s) {sorted(unknown)}; only use_reentrant")
        self._backbone.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self._backbone.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(self._backbone.gradient_checkpointing)

    # --- construction and (de)serialisation ----------------------------------------------------------------

    @classmethod
    def _from_config(cls, config: CaduceusConfig, **kwargs: Any) -> CaduceusPreTrainedModel:
        """A freshly initialised model for ``config`` (``AutoModel*.from_config``); ``torch_dtype``/``dtype`` set
        the parameter dtype, other keywords go to the constructor."""
        dtype = _resolve_dtype(kwargs.pop("torch_dtype", None), kwargs.pop("dtype", None), config)
        kwargs.pop("trust_remote_code", None)
        model = cls(config, **kwargs)
        return model if dtype is None else model.to(dtype)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str],
        *model_args: Any,
        config: CaduceusConfig | None = None,
        subfolder: str = "",
        use_safetensors: bool | None = None,
        torch_dtype: torch.dtype | str | None = None,
        dtype: torch.dtype | str | None = None,
        device_map: str | torch.device | int | None = None,
        device: str | torch.device | None = None,
        output_loading_info: bool = False,
        ignore_mismatched_sizes: bool = False,
        low_cpu_mem_usage: bool | None = None,
        adapter_kwargs: dict[str, Any] | None = None,
        trust_pickle: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Load from a local directory laid out like the released checkpoints (offline; no remote code).

        Args:
            pretrained_model_name_or_path: the directory (or a Lightning ``.ckpt`` with ``config.json`` beside it).
            *model_args, **kwargs: keywords of the config (when ``config`` is None, e.g. ``num_labels=2``) and then
                of the constructor (e.g. ``pooling_strategy="max"``, ``conjoin_eval=True``); anything else is a
                TypeError. Hub-only keywords (``cache_dir``, ``revision``, ``token``, ``trust_remote_code``, ...)
                are accepted and have no effect on a local directory, as in transformers.
            config: a config to use instead of the directory's ``config.json``.
            subfolder: a folder inside the directory.
            use_safetensors: True: require ``model.safetensors``; False: never read it.
            torch_dtype, dtype: parameter dtype (``"auto"``: as stored).
            device_map, device: where to put the model (a device; ``"auto"`` means the CPU unless CUDA is there).
            output_loading_info: also return ``{"missing_keys", "unexpected_keys", "mismatched_keys",
                "error_msgs"}`` (what was initialised / dropped).
            ignore_mismatched_sizes: must be False (a mis-shaped tensor is an error).
            low_cpu_mem_usage: accepted; no effect.
            trust_pickle: allow arbitrary unpickling of ``.bin`` / ``.ckpt`` files (safetensors never needs it).

        Raises:
            CheckpointError: missing or corrupt files, a config our model cannot honour, a missing, unexpected or
                mis-shaped tensor of the backbone.
        """
        for key in HUB_KWARGS:
            kwargs.pop(key, None)
        if ignore_mismatched_sizes:
            raise NotImplementedError("ignore_mismatched_sizes=True is not supported: mis-shaped tensors are errors")
        if adapter_kwargs:
            raise NotImplementedError("adapters (PEFT) are not supported by from_pretrained here")
        del low_cpu_mem_usage
        path = local_path(pretrained_model_name_or_path, subfolder)
        if config is None:
            folder = path.parent if path.is_file() else path
            config_file = next(
                (folder / n for n in _checkpoint.CONFIG_NAMES if (folder / n).is_file()), folder / "config.json"
            )
            config_dict = read_config_json(config_file)
            config_dict.setdefault("_name_or_path", str(pretrained_model_name_or_path))
            config, kwargs = CaduceusConfig.from_dict(config_dict, return_unused_kwargs=True, **kwargs)
        elif not isinstance(config, CaduceusConfig):
            raise TypeError(f"config must be a caduceus_plugin.compat CaduceusConfig, not {type(config).__name__}")
        weights = _weights_file(path, use_safetensors)
        model = cls(config, *model_args, **kwargs)
        info = model._load_checkpoint(read_state_dict(weights, trust_pickle=trust_pickle), str(weights))
        model.name_or_path = str(pretrained_model_name_or_path)
        model.config.name_or_path = str(pretrained_model_name_or_path)
        target_dtype = _resolve_dtype(torch_dtype, dtype, config)
        target_device = _resolve_device(device_map, device)
        if target_dtype is not None or target_device is not None:
            model.to(device=target_device, dtype=target_dtype)
        model.eval()
        return (model, info) if output_loading_info else model

    def _load_checkpoint(self, state: dict[str, torch.Tensor], source: str) -> dict[str, list[str]]:
        """Load a state dict of any released layout into this model: the backbone strictly, the head leniently."""
        state = _checkpoint.normalize_keys(state)  # -> CaduceusForMaskedLM keys (caduceus.backbone.*, lm_head.*)
        if not hasattr(self, "caduceus"):  # the bare backbone: backbone.*
            state = {k.removeprefix("caduceus."): v for k, v in state.items()}
        with self.full_state_dict():
            own = self.state_dict()
            aliases = _checkpoint._tied_aliases(self)
        missing_heads = []
        for key in own:
            if key not in state and key not in aliases and key.startswith(self._head_prefixes):
                state[key] = own[key]  # a fresh head (or a head buffer derived from the config)
                if not key.endswith("complement_map"):
                    missing_heads.append(key)
        foreign = [k for k in state if k.startswith(("lm_head.", "score.")) and k not in own]
        for key in foreign:
            del state[key]
        with self.full_state_dict():
            _checkpoint.load_state_dict_into(self, state, source=source)
        if missing_heads:
            logger.warning(
                "%s: newly initialised from the config (not in %s): %s; train them before use",
                type(self).__name__,
                source,
                ", ".join(missing_heads),
            )
        if foreign:
            logger.info("%s: checkpoint tensors of another head left out: %s", type(self).__name__, ", ".join(foreign))
        return {"missing_keys": missing_heads, "unexpected_keys": foreign, "mismatched_keys": [], "error_msgs": []}

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        is_main_process: bool = True,
        state_dict: dict[str, torch.Tensor] | None = None,
        safe_serialization: bool = True,
        push_to_hub: bool = False,
    ) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (or ``pytorch_model.bin`` with
        ``safe_serialization=False``) in the released layout; each file appears atomically."""
        if push_to_hub:
            raise ValueError("push_to_hub is not supported: this package works offline")
        directory = Path(save_directory)
        if not is_main_process:
            return directory
        if directory.is_file():
            raise CheckpointError(f"{directory} is a file; save_pretrained wants a directory")
        directory.mkdir(parents=True, exist_ok=True)
        tensors = _checkpoint.export_state_dict(self) if state_dict is None else state_dict
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        if safe_serialization:
            atomic_write(directory / "model.safetensors", lambda p: save_file(tensors, p, metadata={"format": "pt"}))
        else:
            atomic_write(directory / "pytorch_model.bin", lambda p: torch.save(tensors, p))
        self.config.architectures = [type(self).__name__]
        text = self.config.to_json_string(use_diff=False)
        atomic_write(directory / "config.json", lambda p: Path(p).write_text(text))
        return directory

    @contextlib.contextmanager
    def full_state_dict(self) -> Iterator[None]:
        """Within the block ``state_dict()`` also holds the tied aliases (as a plain ``nn.Module``'s does)."""
        models = [m for m in self.modules() if isinstance(m, CaduceusPreTrainedModel)]
        previous = [m._full_state_dict for m in models]
        for m in models:
            m._full_state_dict = True
        try:
            yield
        finally:
            for m, flag in zip(models, previous):
                m._full_state_dict = flag


def _drop_tied_aliases(module: CaduceusPreTrainedModel, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    if module._full_state_dict:
        return
    with module.full_state_dict():
        aliases = _checkpoint._tied_aliases(module)
    for alias in aliases:
        state_dict.pop(prefix + alias, None)


def _fill_tied_aliases(module: CaduceusPreTrainedModel, state_dict: dict, prefix: str, *args: object) -> None:
    with module.full_state_dict():
        aliases = _checkpoint._tied_aliases(module)
    for alias, source in aliases.items():
        if prefix + alias not in state_dict and prefix + source in state_dict:
            state_dict[prefix + alias] = state_dict[prefix + source]
        elif prefix + source not in state_dict and prefix + alias in state_dict:
            state_dict[prefix + source] = state_dict[prefix + alias]


def _weights_file(path: Path, use_safetensors: bool | None) -> Path:
    if path.is_file():
        return path
    names = {True: ("model.safetensors",), False: ("pytorch_model.bin",)}.get(
        use_safetensors,
        _checkpoint.WEIGHT_NAMES,  # type: ignore[arg-type]
    )
    for name in names:
        if (path / name).is_file():
            return path / name
    ckpts = sorted(path.glob("*.ckpt"))
    if use_safetensors is not True and len(ckpts) == 1:
        return ckpts[0]
    raise CheckpointError(f"no weights in {path}: expected {' or '.join(names)} (or one Lightning .ckpt file)")


def _resolve_dtype(
    torch_dtype: torch.dtype | str | None, dtype: torch.dtype | str | None, config: CaduceusConfig
) -> torch.dtype | None:
    if torch_dtype is not None and dtype is not None and torch_dtype != dtype:
        raise ValueError("torch_dtype and dtype disagree; pass one")
    value = dtype if dtype is not None else torch_dtype
    if value is None or value == "auto":
        return None
    if isinstance(value, str):
        resolved = getattr(torch, value.removeprefix("torch."), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"dtype {value!r} is not a torch dtype")
        return resolved
    if not isinstance(value, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype or its name, not {type(value).__name__}")
    return value


def _resolve_device(device_map: str | torch.device | int | None, device: str | torch.device | None) -> Any:
    if device_map is not None and device is not None:
        raise ValueError("pass device or device_map, not both")
    value = device if device is not None else device_map
    if value is None:
        return None
    if isinstance(value, dict):
        raise NotImplementedError("a per-module device_map is not supported; pass one device")
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(value)


class Caduceus(CaduceusPreTrainedModel):
    """``Caduceus(config, device=None, dtype=None)``: the bare backbone under ``backbone.`` (HF ``AutoModel``).

    Building it pads ``config.vocab_size`` and extends ``config.complement_map`` to what the model uses, as the
    authors' class does.
    """

    def __init__(
        self,
        config: CaduceusConfig | PluginConfig,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(config)
        self.backbone = CaduceusMixerModel(self._pad_config(), device=device, dtype=dtype)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithNoAttention | tuple[Any, ...]:
        """``BaseModelOutputWithNoAttention(last_hidden_state (b, l, c), hidden_states)``, or with
        ``return_dict=False`` the tuple ``(last_hidden_state, [hidden_states])``. (The authors' returns the bare
        tensor there, so that ``out[0]`` would be the first batch row; here it is always the hidden states.)"""
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if return_dict is None:
            return_dict = self.config.use_return_dict
        hidden, all_hidden = self.backbone(
            input_ids, inputs_embeds=inputs_embeds, output_hidden_states=output_hidden_states
        )
        out = BaseModelOutputWithNoAttention(
            last_hidden_state=hidden, hidden_states=all_hidden if output_hidden_states else None
        )
        return out if return_dict else out.to_tuple()


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean cross entropy over the tokens whose label is not ``ignore_index``."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=ignore_index)


def weighted_cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, loss_weights: torch.Tensor, ignore_index: int = -100
) -> torch.Tensor:
    """Cross entropy weighted per token by ``loss_weights`` (normalised to sum 1 over the tokens that count).

    ``loss_weights`` is not modified (the authors' version zeroes the ignored positions in place).
    """
    y = y.reshape(-1)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y, ignore_index=ignore_index, reduction="none")
    weights = loss_weights.reshape(-1).to(ce.dtype).masked_fill(y == ignore_index, 0.0)
    return (ce * (weights / weights.sum())).sum()


class CaduceusForMaskedLM(CaduceusPreTrainedModel):
    """``CaduceusForMaskedLM(config, device=None, dtype=None)``: backbone + MLM head tied to the embedding."""

    _head_prefixes = ("lm_head.",)

    def __init__(
        self,
        config: CaduceusConfig | PluginConfig,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(config)
        self.caduceus = Caduceus(self.config, device=device, dtype=dtype)
        plugin = self.caduceus.backbone.config
        if plugin.rcps:
            self.lm_head: nn.Module = RCPSLMHead(
                plugin.d_model, plugin.vocab_size, plugin.full_complement_map(), device=device, dtype=dtype
            )
        else:
            self.lm_head = nn.Linear(plugin.d_model, plugin.vocab_size, bias=False, device=device, dtype=dtype)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        if self.config.rcps:
            raise NotImplementedError("Setting output embeddings for RCPS LM is not supported.")
        self.lm_head = new_embeddings

    def get_decoder(self) -> Caduceus:
        return self.caduceus

    def set_decoder(self, decoder: Caduceus) -> None:
        self.caduceus = decoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        loss_weights: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> MaskedLMOutput | tuple[Any, ...]:
        """``MaskedLMOutput(loss, logits (b, l, vocab) float32, hidden_states)``; with ``return_dict=False`` the
        tuple ``([loss], logits, [hidden_states])``.

        ``labels`` (b, l): the loss ignores ``config.pad_token_id`` (or -100 when it is None; the authors' code
        fails then); ``loss_weights`` (b, l) weights the tokens (:func:`weighted_cross_entropy`).
        """
        if return_dict is None:
            return_dict = self.config.use_return_dict
        outputs = self.caduceus(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.lm_head(outputs.last_hidden_state).float()
        loss = None
        if labels is not None:
            ignore = -100 if self.config.pad_token_id is None else self.config.pad_token_id
            labels = labels.to(logits.device)
            if loss_weights is not None:
                loss = weighted_cross_entropy(logits, labels, loss_weights.to(logits.device), ignore_index=ignore)
            else:
                loss = cross_entropy(logits, labels, ignore_index=ignore)
        out = MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return out if return_dict else out.to_tuple()


class CaduceusForSequenceClassification(CaduceusPreTrainedModel):
    """``CaduceusForSequenceClassification(config, pooling_strategy="mean", conjoin_train=False,
    conjoin_eval=False, device=None, dtype=None)``: backbone + pooling + ``score`` (bias-free Linear, N(0, 0.02)).

    * PS (``rcps``): the forward half and the RC of the reverse half are pooled and scored separately and the
      logits averaged (RC-invariant for ``mean`` and ``max``).
    * Ph with ``conjoin_train`` (always) or ``conjoin_eval`` (in eval mode): ``input_ids`` is (b, l, 2) = the
      forward ids and the reverse-complement ids, each run through the backbone, pooled and scored, logits
      averaged (post-hoc conjoining). ``conjoin_test`` is accepted for ``conjoin_eval`` (the Lightning pipeline's
      name).
    * Pooling over all positions, padding included, as the authors': ``mean``, ``max``, ``first``, ``last``.
    * Loss by ``config.problem_type`` (set from the labels when None, as transformers does): MSE for one label,
      cross entropy for integer labels, BCE-with-logits otherwise.
    """

    _head_prefixes = ("score.",)

    def __init__(
        self,
        config: CaduceusConfig | PluginConfig,
        pooling_strategy: str = "mean",
        conjoin_train: bool = False,
        conjoin_eval: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        *,
        conjoin_test: bool | None = None,
    ):
        super().__init__(config)
        if pooling_strategy not in POOLING_STRATEGIES:
            raise NotImplementedError(
                f"Pooling strategy `{pooling_strategy}` not implemented (one of {', '.join(POOLING_STRATEGIES)})."
            )
        if conjoin_test is not None:
            if conjoin_eval and not conjoin_test:
                raise ValueError("conjoin_test is another name for conjoin_eval; they disagree")
            conjoin_eval = conjoin_test
        self.pooling_strategy = pooling_strategy
        self.num_labels = self.config.num_labels
        self.caduceus = Caduceus(self.config, device=device, dtype=dtype)
        self.score = nn.Linear(self.config.d_model, self.num_labels, bias=False, device=device, dtype=dtype)
        self.conjoin_train, self.conjoin_eval = conjoin_train, conjoin_eval
        self.post_init()
        self.init_scorer()

    def init_scorer(self, initializer_range: float = 0.02) -> None:
        """``score.weight`` ~ N(0, initializer_range) (``initializer_cfg`` wins)."""
        cfg = self.config.initializer_cfg or {}
        with torch.no_grad():
            self.score.weight.normal_(std=cfg.get("initializer_range", initializer_range))

    def pool_hidden_states(self, hidden_states: torch.Tensor, sequence_length_dim: int = 1) -> torch.Tensor:
        """Pool over the length axis: (b, l, ...) -> (b, ...)."""
        if self.pooling_strategy == "mean":
            return hidden_states.mean(dim=sequence_length_dim)
        if self.pooling_strategy == "max":
            return hidden_states.max(dim=sequence_length_dim).values
        index = 0 if self.pooling_strategy == "first" else -1
        return hidden_states.select(sequence_length_dim, index)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple[Any, ...]:
        """``SequenceClassifierOutput(loss, logits (b, num_labels), hidden_states)``; with ``return_dict=False``
        the tuple ``([loss], logits, [hidden_states])``. For conjoined Ph, ``hidden_states`` are the forward
        strand's."""
        if return_dict is None:
            return_dict = self.config.use_return_dict
        d = self.config.d_model
        conjoin = not self.config.rcps and (self.conjoin_train or (self.conjoin_eval and not self.training))
        if conjoin:
            if input_ids is None or inputs_embeds is not None:
                raise ValueError("`input_ids` (not inputs_embeds) must be provided for conjoining.")
            if input_ids.ndim != 3 or input_ids.shape[-1] != 2:
                raise ValueError(
                    "`input_ids` must be a (batch, length, 2) tensor for conjoining: forward and reverse-complement ids"
                )
            outputs = self.caduceus(input_ids[..., 0], output_hidden_states=output_hidden_states, return_dict=True)
            outputs_rc = self.caduceus(input_ids[..., 1], output_hidden_states=False, return_dict=True)
            hidden = torch.stack([outputs.last_hidden_state, outputs_rc.last_hidden_state], dim=-1)
        else:
            outputs = self.caduceus(
                input_ids, inputs_embeds=inputs_embeds, output_hidden_states=output_hidden_states, return_dict=True
            )
            hidden = outputs.last_hidden_state
            if self.config.rcps:  # (b, l, d, 2): the forward strand and the reverse strand read as a sequence
                hidden = torch.stack([hidden[..., :d], hidden[..., d:].flip(1, 2)], dim=-1)
        pooled = self.pool_hidden_states(hidden)
        if hidden.ndim == 4:
            logits = (self.score(pooled[..., 0]) + self.score(pooled[..., 1])) / 2
        else:
            logits = self.score(pooled)
        loss = None if labels is None else self._loss(logits, labels.to(logits.device))
        out = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return out if return_dict else out.to_tuple()

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            if self.num_labels == 1:
                return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
            return F.mse_loss(logits, labels.to(logits.dtype))
        if self.config.problem_type == "single_label_classification":
            return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
