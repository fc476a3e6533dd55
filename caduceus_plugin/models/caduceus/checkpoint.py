"""Offline loading and saving of Caduceus checkpoints in the authors' layouts.

Accepted inputs (spec §3):

* a directory laid out like the released Hugging Face repos: ``config.json`` + ``model.safetensors`` (preferred)
  or ``pytorch_model.bin``;
* the authors' Lightning ``.ckpt`` (keys prefixed ``model.``), as a file path with ``config.json`` (or the
  authors' ``model_config.json``) beside it, or inside a directory.

Keys of ``CaduceusForMaskedLM`` (``caduceus.backbone.*``) and of the bare ``Caduceus`` (``backbone.*``) are both
accepted. The tied aliases (``mamba_rev.in_proj/out_proj`` under ``bidirectional_weight_tie`` and the LM-head
weight under ``tie_word_embeddings``) may be present or absent; they are re-tied after loading. Nothing is ever
initialised at random: a missing, unexpected or mis-shaped tensor raises :class:`CheckpointError` naming it.
Pickled files are read with ``torch.load(weights_only=True)`` unless the caller passes ``trust_pickle=True``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from caduceus_plugin.errors import CheckpointError
from caduceus_plugin.fileio import atomic_write as _atomic_write
from caduceus_plugin.models.caduceus.config import CaduceusConfig
from caduceus_plugin.models.caduceus.modeling import CaduceusForMaskedLM

# read_state_dict is shared by the families; kept importable from here
from caduceus_plugin.models.state_dict import check_state_dict, read_state_dict

CONFIG_NAMES = ("config.json", "model_config.json")
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
_LIGHTNING_SKIP = ("decoder.", "encoder.", "head.", "heads.")


def _find_files(path: Path) -> tuple[Path, Path]:
    if not path.exists():
        raise CheckpointError(
            f"checkpoint path {path} does not exist: pass a directory with config.json + model.safetensors"
        )
    folder = path if path.is_dir() else path.parent
    config = next((folder / n for n in CONFIG_NAMES if (folder / n).is_file()), None)
    if config is None and path.is_file():  # e.g. --weights naming a BED, or a weights file copied on its own
        raise CheckpointError(
            f"{path} is a file with no config.json beside it: weights are a Caduceus checkpoint directory "
            "(config.json + model.safetensors), a weights file beside its config.json, or a gReLU .ckpt file"
        )
    if config is None:
        raise CheckpointError(
            f"no config.json in {folder}: a Caduceus checkpoint needs its config.json beside the weights"
        )
    if path.is_file():
        return config, path
    weights = next((path / n for n in WEIGHT_NAMES if (path / n).is_file()), None)
    if weights is None:
        ckpts = sorted(path.glob("*.ckpt"))
        if len(ckpts) == 1:
            weights = ckpts[0]
        else:
            raise CheckpointError(
                f"no weights in {path}: expected model.safetensors, pytorch_model.bin or one Lightning .ckpt file"
            )
    return config, weights


def normalize_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the authors' key names onto ours (``CaduceusForMaskedLM`` layout, norms without ``.submodule``)."""
    if state and all(k.startswith("model.") for k in state):  # Lightning
        state = {k[len("model.") :]: v for k, v in state.items() if not k[len("model.") :].startswith(_LIGHTNING_SKIP)}
    out = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            key = "caduceus." + key
        key = re.sub(r"\b(norm|norm_f)\.submodule\.", r"\1.", key)
        out[key] = value
    return out


def _tied_aliases(model: CaduceusForMaskedLM) -> dict[str, str]:
    """alias key -> source key, for the parameters the authors' files drop."""
    aliases = {}
    names = {id(p): n for n, p in model.named_parameters()}  # first (canonical) name of every parameter
    for key, tensor in model.state_dict(keep_vars=True).items():
        if isinstance(tensor, torch.nn.Parameter) and names.get(id(tensor)) not in (None, key):
            aliases[key] = names[id(tensor)]
    return aliases


def load_state_dict_into(
    model: CaduceusForMaskedLM, state: dict[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Strictly load ``state`` (already normalised) into ``model``; raise naming any key that does not fit."""
    state = dict(state)
    own = model.state_dict()
    aliases = _tied_aliases(model)
    for alias, src in aliases.items():
        if alias in state:
            if src in state and not torch.equal(state[alias], state[src]):
                raise CheckpointError(
                    f"{source}: tensor {alias} should be tied to {src} but differs; if the weights are really "
                    "untied, set bidirectional_weight_tie/tie_word_embeddings to false in config.json"
                )
            if src not in state:
                state[src] = state[alias]
            del state[alias]
    expected = {k: v for k, v in own.items() if k not in aliases}
    check_state_dict(state, expected, source)  # from here on, state holds exactly the keys of expected
    for key, value in expected.items():
        if key.endswith("complement_map") and not torch.equal(state[key].long(), value):
            raise CheckpointError(f"{source}: buffer {key} disagrees with complement_map in config.json")
    model.load_state_dict(state, strict=False)
    model.tie_weights()


def from_pretrained(
    path: str | os.PathLike[str],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    trust_pickle: bool = False,
) -> CaduceusForMaskedLM:
    """Load a ``CaduceusForMaskedLM`` in eval mode from a local checkpoint directory (or ``.ckpt`` file).

    Args:
        path: directory laid out like the released HF repos, or a Lightning ``.ckpt`` with ``config.json`` beside it.
        device: where to put the model.
        dtype: parameter dtype (default float32, as released).
        trust_pickle: allow arbitrary unpickling of ``.bin``/``.ckpt`` files (never needed for safetensors).

    Raises:
        CheckpointError: missing files, corrupt files, unknown config values, missing/unexpected/mis-shaped keys.
    """
    config_path, weights_path = _find_files(Path(path))
    config = CaduceusConfig.from_json_file(config_path)
    state = normalize_keys(read_state_dict(weights_path, trust_pickle=trust_pickle))
    model = CaduceusForMaskedLM(config)
    load_state_dict_into(model, state, source=str(weights_path))
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model.eval()


def export_state_dict(model: CaduceusForMaskedLM) -> dict[str, torch.Tensor]:
    """The state dict in the released layout: tied aliases dropped, unfused RCPS norms under ``.submodule``."""
    cfg = model.config
    aliases = _tied_aliases(model)
    out = {}
    for key, value in model.state_dict().items():
        if key in aliases:
            continue
        if cfg.rcps and not cfg.fused_add_norm:
            key = re.sub(r"\b(norm|norm_f)\.(weight|bias)$", r"\1.submodule.\2", key)
        out[key] = value.detach().contiguous().cpu()
    return out


def save_pretrained(model: CaduceusForMaskedLM, directory: str | os.PathLike[str]) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (released layout). Files appear atomically (temp + rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(
        directory / "model.safetensors", lambda p: save_file(export_state_dict(model), p, metadata={"format": "pt"})
    )
    _atomic_write(directory / "config.json", lambda p: Path(p).write_text(model.config.to_json_string()))
    return directory


