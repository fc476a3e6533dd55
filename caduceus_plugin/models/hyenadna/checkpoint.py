"""HyenaDNA checkpoints on disk: both published layouts read (:func:`from_pretrained`) and written
(:func:`save_pretrained`).

* original LongSafari repos: ``config.json`` with a nested ``layer`` dict + Lightning ``weights.ckpt``, keys
  ``model.backbone.*`` (possibly with ``.mixer.layer.`` / ``.mlp.layer.`` from gradient checkpointing);
* ``-hf`` repos: flat ``config.json`` + ``model.safetensors``, keys ``hyena.backbone.*``, the shared Sin ``freq``
  stored once.

Both are normalised onto the module tree's ``backbone.*`` keys (see :mod:`caduceus_plugin.models.hyenadna.modeling`);
the deterministic buffers (positional features, modulation deltas) are regenerated when a file lacks them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from caduceus_plugin.errors import CheckpointError, InputError
from caduceus_plugin.fileio import atomic_directory
from caduceus_plugin.models.hyenadna.config import HyenaDNAConfig
from caduceus_plugin.models.hyenadna.modeling import HyenaDNA
from caduceus_plugin.models.state_dict import check_state_dict, read_state_dict

__all__ = ["export_state_dict", "from_pretrained", "load_state_dict_into", "normalize_keys", "save_pretrained"]

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
    check_state_dict(state, own, source, optional={k for k in own if k.endswith(_DERIVED)})
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

    Returns:
        The directory written.

    Raises:
        InputError: ``directory`` is an existing file, or ``layout`` is unknown.
    """
    state = export_state_dict(model, layout)
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} exists and is not a directory: choose another output path")

    def build(tmp: Path) -> None:
        if layout == "hf":
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            config = model.config.to_hf_dict()
        else:
            torch.save({"state_dict": state}, tmp / "weights.ckpt")
            config = model.config.to_original_dict()
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    return atomic_directory(target, build, replace=True)
