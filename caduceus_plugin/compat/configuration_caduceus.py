"""The authors' ``CaduceusConfig`` (``caduceus/configuration_caduceus.py``): their keywords, class defaults and
Hugging Face keywords, on top of :class:`caduceus_plugin.models.caduceus.config.CaduceusConfig` (ours), which
validates it and which our modules are built from (:meth:`CaduceusConfig.to_plugin_config`).

A ``transformers.PretrainedConfig`` where transformers is installed (else a stand-in with the same API).
Differences from the authors' class, all toward loud failures instead of silent misreadings:

* an unknown keyword is a TypeError (theirs stores any keyword as an attribute); keys of a stored ``config.json``
  are kept verbatim, as transformers keeps them;
* ``complement_map`` is read by key (``{"7": 10, ...}`` and ``{7: 10, ...}`` alike) and stored with int keys in
  id order; the authors' modules read a dict's values in insertion order, which for the string keys of a
  ``config.json`` (sorted as text: "0", "1", "10", ...) is a different map;
* values our model cannot honour raise :class:`~caduceus_plugin.errors.CheckpointError` (a ValueError) when a
  model is built.

``rcps_fused_half_swap`` (ours; see the spec §1.6) may be given; by default it follows the authors' code.
"""

from __future__ import annotations

from typing import Any

from caduceus_plugin.compat._hf import (
    HF_CONFIG_KEYWORDS,
    READING_FILE,
    check_keywords,
    config_base,
    transformers_keywords,
)
from caduceus_plugin.models.caduceus.config import CaduceusConfig as PluginConfig

__all__ = ["CaduceusConfig"]

_KNOWN = HF_CONFIG_KEYWORDS | transformers_keywords()


class CaduceusConfig(config_base()):  # type: ignore[misc]
    """Config that extends the original MambaConfig with bi-directionality and RC equivariance (the authors').

    Args (the authors' names and class defaults — those of Mamba-2.8B; the released checkpoints set their own):
        d_model: 2560. n_layer: 64. vocab_size: 50277 (padded up to ``pad_vocab_size_multiple`` when a model is
        built, which writes the padded size back here, as the authors' model does). ssm_cfg: None (Mamba
        defaults). rms_norm: True. residual_in_fp32: True. fused_add_norm: True. pad_vocab_size_multiple: 8.
        norm_epsilon: 1e-5. initializer_cfg: None (the defaults). bidirectional: True.
        bidirectional_strategy: "add". bidirectional_weight_tie: True. rcps: False. complement_map: None.
        rcps_fused_half_swap: None (ours; keyword only).
        **kwargs: Hugging Face ``PretrainedConfig`` keywords (``num_labels``, ``pad_token_id``, ``id2label``,
        ``problem_type``, ``return_dict``, ``output_hidden_states``, ``tie_word_embeddings``, ...). Anything else
        is a TypeError.
    """

    model_type = "caduceus"

    def __init__(
        self,
        d_model: int = 2560,
        n_layer: int = 64,
        vocab_size: int = 50277,
        ssm_cfg: dict[str, Any] | None = None,
        rms_norm: bool = True,
        residual_in_fp32: bool = True,
        fused_add_norm: bool = True,
        pad_vocab_size_multiple: int = 8,
        norm_epsilon: float = 1e-5,
        initializer_cfg: dict[str, Any] | None = None,
        bidirectional: bool = True,
        bidirectional_strategy: str | None = "add",
        bidirectional_weight_tie: bool = True,
        rcps: bool = False,
        complement_map: dict[int, int] | dict[str, int] | None = None,
        *,
        rcps_fused_half_swap: bool | None = None,
        **kwargs: Any,
    ):
        check_keywords(type(self).__name__, kwargs, _KNOWN)
        super().__init__(**kwargs)
        self.d_model = d_model
        self.n_layer = n_layer
        self.vocab_size = vocab_size
        self.ssm_cfg = ssm_cfg
        self.rms_norm = rms_norm
        self.residual_in_fp32 = residual_in_fp32
        self.fused_add_norm = fused_add_norm
        self.pad_vocab_size_multiple = pad_vocab_size_multiple
        self.norm_epsilon = norm_epsilon
        self.initializer_cfg = initializer_cfg
        self.bidirectional = bidirectional
        self.bidirectional_strategy = bidirectional_strategy
        self.bidirectional_weight_tie = bidirectional_weight_tie
        self.rcps = rcps
        self.complement_map = _by_key(complement_map)
        if rcps_fused_half_swap is not None:
            self.rcps_fused_half_swap = rcps_fused_half_swap

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        """From a stored config (keys kept verbatim); ``kwargs`` override attributes, and one that is no attribute
        is a TypeError unless ``return_unused_kwargs=True`` (then it is handed back, as transformers does)."""
        return_unused = kwargs.pop("return_unused_kwargs", False)
        token = READING_FILE.set(True)
        try:
            config, unused = super().from_dict(dict(config_dict), return_unused_kwargs=True, **kwargs)
        finally:
            READING_FILE.reset(token)
        if return_unused:
            return config, unused
        if unused:
            raise TypeError(
                f"{cls.__name__}: unknown keyword argument(s) {', '.join(map(repr, sorted(unused)))} (not a field "
                "of the config)"
            )
        return config

    def to_json_string(self, use_diff: bool = True) -> str:
        """The full config as JSON, whatever ``use_diff`` says: a file that left out the fields equal to this
        class's defaults (the Mamba-2.8B ones) would be read with other defaults by other loaders (ours included).
        """
        del use_diff
        return super().to_json_string(use_diff=False)

    def to_plugin_config(self) -> PluginConfig:
        """Our :class:`~caduceus_plugin.models.caduceus.config.CaduceusConfig` for these values (validated; the
        vocabulary padded, the complement map over every id)."""
        strategy = self.bidirectional_strategy
        return PluginConfig(
            d_model=self.d_model,
            n_layer=self.n_layer,
            vocab_size=self.vocab_size,
            ssm_cfg=dict(self.ssm_cfg or {}),
            rms_norm=self.rms_norm,
            residual_in_fp32=self.residual_in_fp32,
            fused_add_norm=self.fused_add_norm,
            pad_vocab_size_multiple=self.pad_vocab_size_multiple,
            norm_epsilon=self.norm_epsilon,
            initializer_cfg=dict(self.initializer_cfg or {}),
            bidirectional=self.bidirectional,
            bidirectional_strategy="add" if strategy is None or not self.bidirectional else strategy,
            bidirectional_weight_tie=self.bidirectional_weight_tie,
            rcps=self.rcps,
            complement_map=self.complement_map,
            pad_token_id=self.pad_token_id,
            tie_word_embeddings=self.tie_word_embeddings,
            rcps_fused_half_swap=getattr(self, "rcps_fused_half_swap", None),
        )

    @classmethod
    def from_plugin_config(cls, config: PluginConfig, **kwargs: Any) -> CaduceusConfig:
        """The compat config for one of ours (generic keys it kept in ``extra`` come along)."""
        data = config.to_dict()
        data.update(kwargs)
        return cls.from_dict(data)


def _by_key(complement_map: Any) -> dict[int, int] | None:
    """A complement map as ``{int id: int id}`` in id order, read by key; None stays None."""
    if complement_map is None:
        return None
    if not isinstance(complement_map, dict):
        raise TypeError(f"complement_map must be a dict {{id: complement id}}, not {type(complement_map).__name__}")
    try:
        pairs = sorted((int(k), int(v)) for k, v in complement_map.items())
    except (TypeError, ValueError):
        raise ValueError("complement_map keys and values must be token ids (integers)") from None
    return dict(pairs)
