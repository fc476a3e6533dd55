"""Hugging Face ``transformers``, optional: the config base class, the keywords it takes, and Auto-class registration.

With ``transformers`` installed (``pip install 'caduceus-plugin[hf]'``) the compat ``CaduceusConfig`` is a
``transformers.PretrainedConfig`` (and :mod:`caduceus_plugin.compat.auto` registers the compat classes with its
Auto classes). Without it, :class:`StandInConfig` gives the same
attributes and methods (``to_dict``, ``from_pretrained``, ``save_pretrained``, ``num_labels``, ...) on a local
directory.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from caduceus_plugin.errors import CheckpointError
from caduceus_plugin.fileio import atomic_write

try:
    from transformers import PretrainedConfig as _PretrainedConfig
except ImportError:  # not installed (or not importable here): the stand-in below
    _PretrainedConfig = None

HAVE_TRANSFORMERS = _PretrainedConfig is not None

#: Generation defaults every ``PretrainedConfig`` carries (and writes to ``config.json``) in transformers 4.x.
GENERATION_DEFAULTS: dict[str, Any] = {
    "max_length": 20, "min_length": 0, "do_sample": False, "early_stopping": False, "num_beams": 1,
    "num_beam_groups": 1, "diversity_penalty": 0.0, "temperature": 1.0, "top_k": 50, "top_p": 1.0, "typical_p": 1.0,
    "repetition_penalty": 1.0, "length_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None, "num_return_sequences": 1, "output_scores": False, "return_dict_in_generate": False,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "remove_invalid_values": False,
    "exponential_decay_length_penalty": None, "suppress_tokens": None, "begin_suppress_tokens": None,
}  # fmt: skip

#: The generic ``PretrainedConfig`` keywords and their defaults (transformers 4.56), as the stand-in keeps them.
GENERIC_DEFAULTS: dict[str, Any] = {
    "output_hidden_states": False, "output_attentions": False, "return_dict": True, "torchscript": False,
    "dtype": None, "pruned_heads": {}, "tie_word_embeddings": True, "chunk_size_feed_forward": 0,
    "is_encoder_decoder": False, "is_decoder": False, "cross_attention_hidden_size": None,
    "add_cross_attention": False, "tie_encoder_decoder": False, "architectures": None, "finetuning_task": None,
    "task_specific_params": None, "problem_type": None, "tokenizer_class": None, "prefix": None,
    "bos_token_id": None, "pad_token_id": None, "eos_token_id": None, "sep_token_id": None,
    "decoder_start_token_id": None, "tf_legacy_loss": False, "use_bfloat16": False,
}  # fmt: skip

#: Every keyword a Caduceus config accepts besides its own fields (anything else is a TypeError).
HF_CONFIG_KEYWORDS = frozenset(
    {*GENERIC_DEFAULTS, *GENERATION_DEFAULTS}
    | {"id2label", "label2id", "num_labels", "torch_dtype", "name_or_path", "_name_or_path", "_commit_hash",
       "attn_implementation", "_attn_implementation", "transformers_version", "model_type", "auto_map",
       "gradient_checkpointing"}
)  # fmt: skip

#: Set while a config is built from a file (``from_dict``): keys of a stored ``config.json`` are kept verbatim,
#: as Hugging Face keeps them, instead of being refused like a mistyped keyword.
READING_FILE: ContextVar[bool] = ContextVar("caduceus_compat_reading_file", default=False)

_PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


def check_keywords(cls_name: str, kwargs: dict[str, Any], known: frozenset[str]) -> None:
    """Raise TypeError for keywords outside ``known`` (unless a stored config is being read)."""
    if READING_FILE.get():
        return
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(
            f"{cls_name} got unexpected keyword argument(s) {', '.join(map(repr, unknown))}: neither a Caduceus "
            "config field nor a Hugging Face PretrainedConfig keyword"
        )


class StandInConfig:
    """What ``transformers.PretrainedConfig`` offers a Caduceus config, for installs without transformers.

    Generic keywords get the transformers defaults; keys read from a stored ``config.json`` that are not
    understood are kept as attributes and written back, as transformers does.
    """

    model_type = ""

    def __init__(self, **kwargs: Any):
        num_labels = kwargs.pop("num_labels", None)
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        if id2label is not None and not isinstance(id2label, dict):
            raise ValueError("Argument id2label should be a dictionary.")
        if label2id is not None and not isinstance(label2id, dict):
            raise ValueError("Argument label2id should be a dictionary.")
        torch_dtype = kwargs.pop("torch_dtype", None)
        for key, default in {**GENERIC_DEFAULTS, **GENERATION_DEFAULTS}.items():
            setattr(self, key, kwargs.pop(key, copy.deepcopy(default)))
        if self.dtype is None and torch_dtype is not None:
            self.dtype = torch_dtype
        if self.problem_type is not None and self.problem_type not in _PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {', '.join(_PROBLEM_TYPES)}, got {self.problem_type!r}")
        if id2label is None:
            self._create_id_label_maps(2 if num_labels is None else num_labels)
        else:
            self.id2label = {int(k): v for k, v in id2label.items()}
            self.label2id = label2id if label2id is not None else {v: k for k, v in self.id2label.items()}
        self._name_or_path = str(kwargs.pop("name_or_path", kwargs.pop("_name_or_path", "")))
        self._commit_hash = kwargs.pop("_commit_hash", None)
        self._attn_implementation = kwargs.pop("attn_implementation", kwargs.pop("_attn_implementation", None))
        self.transformers_version = kwargs.pop("transformers_version", None)
        kwargs.pop("model_type", None)
        for key, value in kwargs.items():  # auto_map and keys of a stored config
            setattr(self, key, value)

    def _create_id_label_maps(self, num_labels: int) -> None:
        self.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, num_labels: int) -> None:
        if self.id2label is None or len(self.id2label) != num_labels:
            self._create_id_label_maps(num_labels)

    @property
    def use_return_dict(self) -> bool:
        return bool(self.return_dict and not self.torchscript)

    @property
    def name_or_path(self) -> str:
        return self._name_or_path

    @name_or_path.setter
    def name_or_path(self, value: str) -> None:
        self._name_or_path = str(value)

    # --- (de)serialisation, the transformers way ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("_")}
        out["_name_or_path"] = self._name_or_path
        out["model_type"] = self.model_type
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        if out.get("dtype") is not None and not isinstance(out["dtype"], str):
            out["dtype"] = str(out["dtype"]).removeprefix("torch.")
        return out

    def to_json_string(self, use_diff: bool = False) -> str:
        """The full config as JSON (``use_diff`` is accepted; the stand-in always writes every key)."""
        del use_diff
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike[str], use_diff: bool = False) -> None:
        text = self.to_json_string(use_diff=use_diff)
        atomic_write(Path(json_file_path), lambda p: Path(p).write_text(text))

    def save_pretrained(self, save_directory: str | os.PathLike[str], push_to_hub: bool = False) -> None:
        if push_to_hub:
            raise ValueError("push_to_hub is not supported: this package works offline")
        path = Path(save_directory)
        if path.is_file():
            raise CheckpointError(f"{path} is a file; save_pretrained wants a directory")
        path.mkdir(parents=True, exist_ok=True)
        self.to_json_file(path / "config.json")

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        return_unused_kwargs = kwargs.pop("return_unused_kwargs", False)
        kwargs.pop("_from_auto", None)
        kwargs.pop("_from_pipeline", None)
        if "torch_dtype" in kwargs:
            kwargs.setdefault("dtype", kwargs.pop("torch_dtype"))
        config = cls(**copy.deepcopy(config_dict))
        for key in [k for k in kwargs if k == "num_labels" or hasattr(config, k)]:
            setattr(config, key, kwargs.pop(key))
        return (config, kwargs) if return_unused_kwargs else config

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike[str]) -> Any:
        return cls.from_dict(read_config_json(Path(json_file)))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike[str], **kwargs: Any) -> Any:
        for hub_only in HUB_KWARGS:
            kwargs.pop(hub_only, None)
        subfolder = kwargs.pop("subfolder", "") or ""
        path = local_path(pretrained_model_name_or_path, subfolder)
        file = path if path.is_file() else path / "config.json"
        config_dict = read_config_json(file)
        config_dict.setdefault("_name_or_path", str(pretrained_model_name_or_path))
        return cls.from_dict(config_dict, **kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StandInConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


#: Keywords of ``from_pretrained`` that only matter when downloading from the Hub (no effect on a local directory,
#: as in transformers).
HUB_KWARGS = (
    "cache_dir", "force_download", "local_files_only", "proxies", "resume_download", "revision", "token",
    "use_auth_token", "trust_remote_code", "code_revision", "_commit_hash", "_from_auto", "_from_pipeline",
)  # fmt: skip


def local_path(name_or_path: str | os.PathLike[str], subfolder: str = "") -> Path:
    """A local checkpoint directory (or file); anything else is a one-line CheckpointError (we never download)."""
    path = Path(name_or_path) / subfolder if subfolder else Path(name_or_path)
    if not path.exists():
        hint = ""
        if isinstance(name_or_path, str) and name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/")):
            hint = (
                f" (a Hub repo id? this package loads offline: download it first, e.g. "
                f"`huggingface-cli download {name_or_path} --local-dir DIR`, and pass DIR)"
            )
        raise CheckpointError(f"{path} is not a local directory{hint}")
    return path


def read_config_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"no config.json in {path.parent}: a Caduceus checkpoint needs its config.json")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def config_base() -> type:
    """``transformers.PretrainedConfig`` where transformers is installed, else :class:`StandInConfig`."""
    return StandInConfig if _PretrainedConfig is None else _PretrainedConfig


def transformers_keywords() -> frozenset[str]:
    """The generic keywords of the installed ``PretrainedConfig`` (for newer transformers releases), else empty."""
    if _PretrainedConfig is None:
        return frozenset()
    params = inspect.signature(_PretrainedConfig.__init__).parameters
    names = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD} - {"self"}
    getter = getattr(_PretrainedConfig, "_get_global_generation_defaults", None)
    return frozenset(names | set(getter() if getter else ()))
