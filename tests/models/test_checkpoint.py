"""Checkpoint loading/saving: round trips, the authors' layouts, and one test per failure kind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import caduceus_plugin
from caduceus_plugin import CheckpointError
from caduceus_plugin.models.caduceus.checkpoint import export_state_dict
from tests.conftest import CADUCEUS_FIXTURES, random_ids, tiny_model

PS = CADUCEUS_FIXTURES / "ps_d32_l2_fused"
PH = CADUCEUS_FIXTURES / "ph_d24_l2_fused"


class Hyper:
    """An arbitrary picklable object, as Lightning checkpoints store hyper-parameters."""


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def _rewrite_weights(folder: Path, edit) -> None:
    sd = load_file(str(folder / "model.safetensors"))
    edit(sd)
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _rewrite_config(folder: Path, edit) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    edit(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


def _logits(model, ids=None):
    ids = random_ids(2, 21, 5) if ids is None else ids
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("src", [PS, PH], ids=["ps", "ph"])
def test_round_trip_is_lossless(src: Path, tmp_path: Path) -> None:
    model = caduceus_plugin.from_pretrained(src)
    out = caduceus_plugin.save_pretrained(model, tmp_path / "saved")
    original, saved = load_file(str(src / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert sorted(original) == sorted(saved)  # same keys: aliases dropped exactly as released
    for k in original:
        assert torch.equal(original[k], saved[k]), k
    reloaded = caduceus_plugin.from_pretrained(out)
    assert torch.equal(_logits(model), _logits(reloaded))
    assert (
        json.loads((out / "config.json").read_text())["complement_map"]
        == json.loads((src / "config.json").read_text())["complement_map"]
    )


@pytest.mark.parametrize(
    "overrides",
    [
        dict(rcps=True, fused_add_norm=False),
        dict(rcps=False, rms_norm=False),
        dict(rcps=True, bidirectional_weight_tie=False, tie_word_embeddings=False),
        dict(rcps=True, bidirectional=False),
    ],
)
def test_round_trip_other_layouts(overrides: dict, tmp_path: Path) -> None:
    model = tiny_model(2, **overrides)
    caduceus_plugin.save_pretrained(model, tmp_path)
    keys = set(load_file(str(tmp_path / "model.safetensors")))
    if overrides.get("fused_add_norm") is False and overrides.get("rcps"):
        assert "caduceus.backbone.layers.0.norm.submodule.weight" in keys
        assert "caduceus.backbone.norm_f.submodule.weight" in keys
    if overrides.get("bidirectional_weight_tie") is False:
        assert "caduceus.backbone.layers.0.mixer.submodule.mamba_rev.in_proj.weight" in keys
        assert "lm_head.lm_head.weight" in keys
    assert torch.equal(_logits(model), _logits(caduceus_plugin.from_pretrained(tmp_path)))


def test_weights_are_retied_after_load() -> None:
    model = caduceus_plugin.from_pretrained(PS)
    mixer = model.backbone.layers[0].mixer.submodule
    assert mixer.mamba_rev.in_proj.weight is mixer.mamba_fwd.in_proj.weight
    assert mixer.mamba_rev.out_proj.weight is mixer.mamba_fwd.out_proj.weight
    assert model.lm_head.lm_head.weight is model.backbone.embeddings.word_embeddings.embedding.weight
    assert mixer.mamba_rev.conv1d.weight is not mixer.mamba_fwd.conv1d.weight
    ph = caduceus_plugin.from_pretrained(PH)
    assert ph.lm_head.weight is ph.backbone.embeddings.word_embeddings.weight


def test_aliases_present_are_accepted(tmp_path: Path) -> None:
    folder = _copy(PS, tmp_path / "ps")

    def add_aliases(sd):
        for i in range(2):
            p = f"caduceus.backbone.layers.{i}.mixer.submodule."
            sd[p + "mamba_rev.in_proj.weight"] = sd[p + "mamba_fwd.in_proj.weight"].clone()
            sd[p + "mamba_rev.out_proj.weight"] = sd[p + "mamba_fwd.out_proj.weight"].clone()
        sd["lm_head.lm_head.weight"] = sd["caduceus.backbone.embeddings.word_embeddings.embedding.weight"].clone()

    _rewrite_weights(folder, add_aliases)
    assert torch.equal(_logits(caduceus_plugin.from_pretrained(folder)), _logits(caduceus_plugin.from_pretrained(PS)))


def test_pytorch_bin_lightning_ckpt_and_bare_backbone(tmp_path: Path) -> None:
    reference = _logits(caduceus_plugin.from_pretrained(PS))
    sd = load_file(str(PS / "model.safetensors"))
    (tmp_path / "bin").mkdir()
    shutil.copy(PS / "config.json", tmp_path / "bin" / "config.json")
    torch.save(sd, tmp_path / "bin" / "pytorch_model.bin")
    assert torch.equal(_logits(caduceus_plugin.from_pretrained(tmp_path / "bin")), reference)

    (tmp_path / "ckpt").mkdir()
    shutil.copy(PS / "config.json", tmp_path / "ckpt" / "model_config.json")
    lightning = {"model." + k: v for k, v in sd.items()}
    lightning["model.decoder.0.output_transform.weight"] = torch.zeros(2, 32)  # task head: skipped
    torch.save({"state_dict": lightning, "epoch": 3}, tmp_path / "ckpt" / "last.ckpt")
    assert torch.equal(_logits(caduceus_plugin.from_pretrained(tmp_path / "ckpt" / "last.ckpt")), reference)
    assert torch.equal(_logits(caduceus_plugin.from_pretrained(tmp_path / "ckpt")), reference)

    (tmp_path / "bare").mkdir()
    shutil.copy(PS / "config.json", tmp_path / "bare" / "config.json")
    bare = {k.removeprefix("caduceus."): v for k, v in sd.items()}
    save_file(bare, str(tmp_path / "bare" / "model.safetensors"))
    assert torch.equal(_logits(caduceus_plugin.from_pretrained(tmp_path / "bare")), reference)


# ------------------------------------------------------------------------------------------------- failure kinds


def _error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        caduceus_plugin.from_pretrained(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_error_missing_directory(tmp_path: Path) -> None:
    assert "does not exist" in _error(tmp_path / "nope")


def test_error_missing_config(tmp_path: Path) -> None:
    folder = _copy(PS, tmp_path / "ps")
    (folder / "config.json").unlink()
    assert "no config.json" in _error(folder)


def test_error_missing_weights(tmp_path: Path) -> None:
    folder = _copy(PS, tmp_path / "ps")
    (folder / "model.safetensors").unlink()
    assert "no weights" in _error(folder)


def test_error_missing_key(tmp_path: Path) -> None:
    folder = _copy(PS, tmp_path / "ps")
    _rewrite_weights(folder, lambda sd: sd.pop("caduceus.backbone.layers.1.mixer.submodule.mamba_rev.A_log"))
    assert "missing tensor caduceus.backbone.layers.1.mixer.submodule.mamba_rev.A_log" in _error(folder)


def test_error_unexpected_key(tmp_path: Path) -> None:
    folder = _copy(PH, tmp_path / "ph")
    _rewrite_weights(folder, lambda sd: sd.__setitem__("caduceus.backbone.layers.2.norm.weight", torch.ones(24)))
    assert "unexpected tensor caduceus.backbone.layers.2.norm.weight" in _error(folder)


def test_error_wrong_shape(tmp_path: Path) -> None:
    folder = _copy(PH, tmp_path / "ph")
    _rewrite_weights(folder, lambda sd: sd.__setitem__("caduceus.backbone.norm_f.weight", torch.ones(25)))
    message = _error(folder)
    assert "caduceus.backbone.norm_f.weight" in message and "(25,)" in message and "(24,)" in message


def test_error_corrupt_safetensors(tmp_path: Path) -> None:
    folder = _copy(PS, tmp_path / "ps")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert "not a readable safetensors file" in _error(folder)


def test_error_corrupt_bin(tmp_path: Path) -> None:
    folder = _copy(PS, tmp_path / "ps")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not a zip file at all")
    assert "not a readable PyTorch checkpoint" in _error(folder)


def test_error_invalid_json(tmp_path: Path) -> None:
    folder = _copy(PS, tmp_path / "ps")
    (folder / "config.json").write_text("{ not json")
    assert "not valid JSON" in _error(folder)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("bidirectional_strategy", "concat", "bidirectional_strategy"),
        ("rms_norm", "yes", "rms_norm"),
        ("d_model", 0, "d_model"),
        ("ssm_cfg", {"d_state": 16, "layer": "Mamba2"}, "ssm_cfg.layer"),
        ("ssm_cfg", {"d_state": 16, "headdim": 64}, "ssm_cfg"),
        ("model_type", "mamba", "model_type"),
    ],
)
def test_error_unknown_config_value(tmp_path: Path, field: str, value, needle: str) -> None:
    folder = _copy(PS, tmp_path / "ps")
    _rewrite_config(folder, lambda cfg: cfg.__setitem__(field, value))
    message = _error(folder)
    assert needle in message


def test_error_complement_map_not_involution(tmp_path: Path) -> None:
    folder = _copy(PS, tmp_path / "ps")
    _rewrite_config(folder, lambda cfg: cfg["complement_map"].__setitem__("7", 8))
    assert "not an involution" in _error(folder)


def test_error_complement_buffer_disagrees(tmp_path: Path) -> None:
    folder = _copy(PS, tmp_path / "ps")
    _rewrite_weights(folder, lambda sd: sd.__setitem__("lm_head.complement_map", torch.arange(16)))
    assert "lm_head.complement_map" in _error(folder)


def test_error_tied_alias_differs(tmp_path: Path) -> None:
    folder = _copy(PS, tmp_path / "ps")
    key = "caduceus.backbone.layers.0.mixer.submodule.mamba_"

    def add_bad_alias(sd):
        sd[key + "rev.in_proj.weight"] = sd[key + "fwd.in_proj.weight"] + 1

    _rewrite_weights(folder, add_bad_alias)
    assert "should be tied" in _error(folder)


def test_error_pickle_needs_trust(tmp_path: Path) -> None:
    folder = _copy(PS, tmp_path / "ps")
    sd = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()

    torch.save({"state_dict": sd, "hyper_parameters": Hyper()}, folder / "model.ckpt")
    assert "--trust-pickle" in _error(folder)
    model = caduceus_plugin.from_pretrained(folder, trust_pickle=True)
    assert torch.equal(_logits(model), _logits(caduceus_plugin.from_pretrained(PS)))


def test_error_nan_weights(tmp_path: Path) -> None:
    folder = _copy(PH, tmp_path / "ph")
    _rewrite_weights(folder, lambda sd: sd["caduceus.backbone.norm_f.weight"].__setitem__(0, float("nan")))
    assert "NaN" in _error(folder)


def test_export_drops_only_aliases() -> None:
    model = tiny_model(0)
    exported = export_state_dict(model)
    assert "lm_head.lm_head.weight" not in exported
    assert not any("mamba_rev.in_proj" in k or "mamba_rev.out_proj" in k for k in exported)
    assert sum(v.numel() for k, v in exported.items() if not k.endswith("complement_map")) == model.num_parameters()
