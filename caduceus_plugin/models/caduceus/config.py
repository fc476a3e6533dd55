"""CaduceusConfig: the model's hyper-parameters, read from and written to the authors' ``config.json`` layout.

The released checkpoints store the Hugging Face ``to_dict()`` of the authors' ``CaduceusConfig``: the model fields
below plus many generic ``PretrainedConfig`` fields (``architectures``, ``id2label``, ...). Model fields are
validated; generic fields are kept verbatim in :attr:`CaduceusConfig.extra` so that saving writes them back
unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caduceus_plugin.errors import CheckpointError

#: Default complement map of the authors' character tokenizer: specials map to themselves, A<->T, C<->G.
DEFAULT_COMPLEMENT_MAP = {i: i for i in range(7)} | {7: 10, 8: 9, 9: 8, 10: 7, 11: 11}

#: Fields of the authors' generic HF config that we keep but do not interpret.
_SSM_DEFAULTS: dict[str, Any] = {
    "d_state": 16,
    "d_conv": 4,
    "expand": 2,
    "dt_rank": "auto",
    "dt_min": 0.001,
    "dt_max": 0.1,
    "dt_init": "random",
    "dt_scale": 1.0,
    "dt_init_floor": 1e-4,
    "conv_bias": True,
    "bias": False,
    "use_fast_path": True,
}
_INIT_DEFAULTS: dict[str, Any] = {
    "initializer_range": 0.02,
    "rescale_prenorm_residual": True,
    "n_residuals_per_layer": 1,
}


@dataclass
class CaduceusConfig:
    """Hyper-parameters of Caduceus-PS (``rcps=True``) and Caduceus-Ph (``rcps=False``).

    Defaults are those of the released models (not the authors' class defaults, which are Mamba-2.8B's; for those,
    and for Hugging Face keywords, use :class:`caduceus_plugin.compat.configuration_caduceus.CaduceusConfig`).
    ``rcps_fused_half_swap`` (ours, not in the authors' config) selects the per-layer channel-half swap of the
    authors' fused RCPS block; ``None`` means "as the authors' code does": on when ``rcps and fused_add_norm``.

    What the model uses is what the config says: ``vocab_size`` is padded up to a multiple of
    ``pad_vocab_size_multiple`` here (as the authors' model does to its config), and ``complement_map`` holds one
    entry per id of that vocabulary (ids not given map to themselves). A complement map is read by key (int or digit
    string keys), never by position. Unknown keywords are a TypeError.
    """

    d_model: int = 256
    n_layer: int = 16
    vocab_size: int = 16
    ssm_cfg: dict[str, Any] = field(default_factory=lambda: dict(_SSM_DEFAULTS))
    rms_norm: bool = True
    residual_in_fp32: bool = False
    fused_add_norm: bool = True
    pad_vocab_size_multiple: int = 8
    norm_epsilon: float = 1e-5
    initializer_cfg: dict[str, Any] = field(default_factory=lambda: dict(_INIT_DEFAULTS))
    bidirectional: bool = True
    bidirectional_strategy: str = "add"
    bidirectional_weight_tie: bool = True
    rcps: bool = False
    complement_map: dict[int, int] | None = None  # None: the tokenizer's map (A<->T, C<->G, others fixed)
    pad_token_id: int | None = None
    tie_word_embeddings: bool = True
    rcps_fused_half_swap: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.ssm_cfg = {**_SSM_DEFAULTS, **(self.ssm_cfg or {})}
        self.initializer_cfg = {**_INIT_DEFAULTS, **(self.initializer_cfg or {})}
        if self.complement_map is not None:
            self.complement_map = {int(k): int(v) for k, v in self.complement_map.items()}
        self.validate()
        # what the model uses, written out (as the released configs have it): the padded vocabulary, one complement
        # entry per id
        self.vocab_size = self.padded_vocab_size
        self.complement_map = dict(enumerate(self.full_complement_map()))

    # ---------------------------------------------------------------------------------------------------------------
    # derived sizes

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_size_multiple
        return self.vocab_size if m <= 1 else int(math.ceil(self.vocab_size / m) * m)

    @property
    def mamba_kwargs(self) -> dict[str, Any]:
        """``ssm_cfg`` as :class:`~caduceus_plugin.models.mamba.Mamba` keywords (``layer``, validated, dropped)."""
        return {k: v for k, v in self.ssm_cfg.items() if k != "layer"}

    @property
    def d_state(self) -> int:
        return int(self.ssm_cfg["d_state"])

    @property
    def d_conv(self) -> int:
        return int(self.ssm_cfg["d_conv"])

    @property
    def d_inner(self) -> int:
        return int(self.ssm_cfg["expand"] * self.d_model)

    @property
    def dt_rank(self) -> int:
        r = self.ssm_cfg["dt_rank"]
        return math.ceil(self.d_model / 16) if r == "auto" else int(r)

    @property
    def half_swap(self) -> bool:
        """Whether the per-layer half swap of the authors' fused RCPS block is applied (spec §1.6)."""
        if not self.rcps:
            return False
        return self.fused_add_norm if self.rcps_fused_half_swap is None else bool(self.rcps_fused_half_swap)

    @property
    def hidden_size(self) -> int:
        """Channels of the backbone output: ``2 * d_model`` for PS, ``d_model`` for Ph."""
        return 2 * self.d_model if self.rcps else self.d_model

    def full_complement_map(self) -> list[int]:
        """The complement map as a list over the padded vocabulary (padding ids map to themselves)."""
        cmap = DEFAULT_COMPLEMENT_MAP if self.complement_map is None else self.complement_map
        return [cmap.get(i, i) for i in range(self.padded_vocab_size)]

    # ---------------------------------------------------------------------------------------------------------------
    # validation

    def validate(self) -> None:
        """Raise :class:`CheckpointError` naming the first field whose value this implementation cannot honour."""

        def bad(name: str, value: Any, why: str) -> CheckpointError:
            return CheckpointError(f"config field {name}={value!r}: {why}")

        for name in ("d_model", "n_layer", "vocab_size", "pad_vocab_size_multiple"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(name, v, "expected a positive integer")
        for name in (
            "rms_norm",
            "residual_in_fp32",
            "fused_add_norm",
            "bidirectional",
            "bidirectional_weight_tie",
            "rcps",
            "tie_word_embeddings",
        ):
            v = getattr(self, name)
            if not isinstance(v, bool):
                raise bad(name, v, "expected true or false")
        if self.rcps_fused_half_swap is not None and not isinstance(self.rcps_fused_half_swap, bool):
            raise bad("rcps_fused_half_swap", self.rcps_fused_half_swap, "expected true, false or null")
        if self.bidirectional_strategy not in ("add", "ew_multiply"):
            raise bad("bidirectional_strategy", self.bidirectional_strategy, "expected 'add' or 'ew_multiply'")
        if not isinstance(self.norm_epsilon, (int, float)) or not self.norm_epsilon > 0:
            raise bad("norm_epsilon", self.norm_epsilon, "expected a positive number")
        ssm = self.ssm_cfg
        for name in ("d_state", "d_conv", "expand"):
            v = ssm[name]
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(f"ssm_cfg.{name}", v, "expected a positive integer")
        r = ssm["dt_rank"]
        if r != "auto" and (not isinstance(r, int) or isinstance(r, bool) or r < 1):
            raise bad("ssm_cfg.dt_rank", r, "expected 'auto' or a positive integer")
        if ssm["dt_init"] not in ("random", "constant"):
            raise bad("ssm_cfg.dt_init", ssm["dt_init"], "expected 'random' or 'constant'")
        for name in ("conv_bias", "bias"):
            if not isinstance(ssm[name], bool):
                raise bad(f"ssm_cfg.{name}", ssm[name], "expected true or false")

        # the initialisation scales: unused when weights load, but a bad value must not crash the constructor
        def positive_number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0

        for name in ("dt_min", "dt_max", "dt_init_floor", "dt_scale"):
            if not positive_number(ssm[name]):
                raise bad(f"ssm_cfg.{name}", ssm[name], "expected a positive number")
        if ssm["dt_min"] > ssm["dt_max"]:
            raise bad("ssm_cfg.dt_min", ssm["dt_min"], f"expected at most dt_max ({ssm['dt_max']})")
        init = self.initializer_cfg or {}
        if not isinstance(init, dict):
            raise bad("initializer_cfg", init, "expected an object")
        if "initializer_range" in init and not positive_number(init["initializer_range"]):
            raise bad("initializer_cfg.initializer_range", init["initializer_range"], "expected a positive number")
        n_res = init.get("n_residuals_per_layer", 1)
        if not isinstance(n_res, int) or isinstance(n_res, bool) or n_res < 1:
            raise bad("initializer_cfg.n_residuals_per_layer", n_res, "expected a positive integer")
        if not isinstance(init.get("rescale_prenorm_residual", True), bool):
            raise bad(
                "initializer_cfg.rescale_prenorm_residual", init["rescale_prenorm_residual"], "expected true or false"
            )
        if not math.isfinite(self.norm_epsilon):
            raise bad("norm_epsilon", self.norm_epsilon, "expected a finite positive number")
        unknown = set(ssm) - set(_SSM_DEFAULTS) - {"layer", "use_fast_path"}
        if unknown:
            raise bad("ssm_cfg", sorted(unknown), "unknown Mamba-v1 options")
        if ssm.get("layer", "Mamba1") not in ("Mamba1", "mamba1", "Mamba"):
            raise bad("ssm_cfg.layer", ssm["layer"], "only the Mamba v1 layer is supported")
        if self.pad_token_id is not None and (
            not isinstance(self.pad_token_id, int) or isinstance(self.pad_token_id, bool)
        ):
            raise bad("pad_token_id", self.pad_token_id, "expected an integer or null")
        self._validate_complement_map()

    def _validate_complement_map(self) -> None:
        if self.complement_map is None:
            return
        v = self.padded_vocab_size
        for k, c in self.complement_map.items():
            if not (0 <= k < v and 0 <= c < v):
                raise CheckpointError(
                    f"config field complement_map: entry {k}->{c} is outside the vocabulary 0..{v - 1}"
                )
        full = self.full_complement_map()
        for i, c in enumerate(full):
            if full[c] != i:
                raise CheckpointError(
                    f"config field complement_map is not an involution: {i}->{c} but {c}->{full[c]} "
                    "(complementing twice must give back the same token)"
                )

    # ---------------------------------------------------------------------------------------------------------------
    # (de)serialisation

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaduceusConfig:
        """Build from an authors'-layout dict; unknown keys are kept in :attr:`extra`."""
        data = copy.deepcopy(data)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: data.pop(k) for k in list(data) if k in names}
        if data.get("model_type", "caduceus") != "caduceus":
            raise CheckpointError(f"config field model_type={data['model_type']!r}: expected 'caduceus'")
        return cls(**kwargs, extra=data)

    @classmethod
    def from_json_file(cls, path: str | Path) -> CaduceusConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{path}: expected a JSON object")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The authors' layout: string keys in ``complement_map``, ``model_type`` set, extras written back."""
        out: dict[str, Any] = copy.deepcopy(self.extra)
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = copy.deepcopy(getattr(self, f.name))
            if f.name == "rcps_fused_half_swap" and value is None:
                continue
            if f.name == "complement_map" and value is not None:
                value = {str(k): v for k, v in value.items()}
            out[f.name] = value
        out.setdefault("model_type", "caduceus")
        out.setdefault("architectures", ["CaduceusForMaskedLM"])
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
