"""The authors'-API config: their class defaults, Hugging Face keywords, loud failures, our config underneath."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from caduceus_plugin.compat.configuration_caduceus import CaduceusConfig
from caduceus_plugin.errors import CheckpointError
from caduceus_plugin.models.caduceus.config import CaduceusConfig as PluginConfig
from tests.conftest import CADUCEUS_FIXTURES, ROOT

AUTHORS_DEFAULTS = dict(
    d_model=2560, n_layer=64, vocab_size=50277, ssm_cfg=None, rms_norm=True, residual_in_fp32=True,
    fused_add_norm=True, pad_vocab_size_multiple=8, norm_epsilon=1e-5, initializer_cfg=None, bidirectional=True,
    bidirectional_strategy="add", bidirectional_weight_tie=True, rcps=False, complement_map=None,
)  # fmt: skip


def test_class_defaults_are_the_authors() -> None:
    cfg = CaduceusConfig()
    assert {k: getattr(cfg, k) for k in AUTHORS_DEFAULTS} == AUTHORS_DEFAULTS
    assert cfg.model_type == "caduceus"


def test_positional_arguments_in_the_authors_order() -> None:
    cfg = CaduceusConfig(32, 2, 12)
    assert (cfg.d_model, cfg.n_layer, cfg.vocab_size) == (32, 2, 12)


def test_hugging_face_keywords() -> None:
    cfg = CaduceusConfig(d_model=8, n_layer=1, num_labels=3, pad_token_id=4, problem_type="regression",
                         return_dict=False, output_hidden_states=True, tie_word_embeddings=False)  # fmt: skip
    assert cfg.num_labels == 3 and len(cfg.id2label) == 3
    assert (cfg.pad_token_id, cfg.problem_type, cfg.use_return_dict, cfg.output_hidden_states) == (
        4,
        "regression",
        False,
        True,
    )
    assert cfg.tie_word_embeddings is False


def test_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="d_modle"):
        CaduceusConfig(d_modle=128)


def test_complement_map_is_read_by_key() -> None:
    text_order = {"0": 0, "1": 1, "10": 7, "2": 2, "7": 10, "8": 9, "9": 8}
    cfg = CaduceusConfig(complement_map=text_order)
    assert list(cfg.complement_map.items()) == [(0, 0), (1, 1), (2, 2), (7, 10), (8, 9), (9, 8), (10, 7)]
    with pytest.raises(TypeError, match="dict"):
        CaduceusConfig(complement_map=[0, 1, 2])


def test_to_plugin_config_validates_and_pads() -> None:
    ours = CaduceusConfig(
        d_model=16, n_layer=2, vocab_size=12, rcps=True, complement_map={7: 10, 10: 7}
    ).to_plugin_config()
    assert isinstance(ours, PluginConfig) and ours.vocab_size == 16 and ours.rcps and ours.half_swap
    assert ours.complement_map[7] == 10 and ours.complement_map[15] == 15
    with pytest.raises(CheckpointError, match="bidirectional_strategy"):
        CaduceusConfig(bidirectional_strategy="concat").to_plugin_config()
    with pytest.raises(CheckpointError, match="involution"):
        CaduceusConfig(vocab_size=16, complement_map={7: 10}).to_plugin_config()


def test_our_half_swap_switch_comes_through() -> None:
    cfg = CaduceusConfig(d_model=8, n_layer=1, rcps=True, rcps_fused_half_swap=False)
    assert cfg.to_plugin_config().half_swap is False
    assert "rcps_fused_half_swap" not in CaduceusConfig().to_dict()


def test_from_pretrained_reads_a_released_config() -> None:
    cfg = CaduceusConfig.from_pretrained(str(CADUCEUS_FIXTURES / "ps_d32_l2_fused"))
    stored = json.loads((CADUCEUS_FIXTURES / "ps_d32_l2_fused" / "config.json").read_text())
    assert (cfg.d_model, cfg.n_layer, cfg.rcps, cfg.residual_in_fp32) == (32, 2, True, False)
    assert cfg.complement_map == {int(k): v for k, v in stored["complement_map"].items()}


def test_from_pretrained_overrides_and_refuses_unknown_overrides() -> None:
    folder = str(CADUCEUS_FIXTURES / "ph_d24_l2_fused")
    cfg = CaduceusConfig.from_pretrained(folder, n_layer=1, num_labels=5)
    assert cfg.n_layer == 1 and cfg.num_labels == 5
    with pytest.raises(TypeError, match="n_layers"):
        CaduceusConfig.from_pretrained(folder, n_layers=1)
    cfg, unused = CaduceusConfig.from_pretrained(folder, return_unused_kwargs=True, pooling_strategy="max")
    assert unused == {"pooling_strategy": "max"}


def test_unknown_keys_of_a_stored_config_are_kept(tmp_path: Path) -> None:
    data = json.loads((CADUCEUS_FIXTURES / "ph_d24_l2_fused" / "config.json").read_text())
    data["auto_map"] = {"AutoConfig": "configuration_caduceus.CaduceusConfig"}
    data["gradient_checkpointing_stride"] = 2  # a field of later versions of the authors' config
    cfg = CaduceusConfig.from_dict(data)
    assert cfg.gradient_checkpointing_stride == 2 and cfg.to_dict()["auto_map"] == data["auto_map"]
    cfg.save_pretrained(tmp_path)
    again = CaduceusConfig.from_pretrained(str(tmp_path))
    assert again.gradient_checkpointing_stride == 2 and again.d_model == 24


def test_save_pretrained_writes_every_field(tmp_path: Path) -> None:
    """Fields equal to the authors' class defaults are written too, so our loader cannot read other defaults."""
    CaduceusConfig(d_model=8, n_layer=1).save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["residual_in_fp32"] is True and stored["vocab_size"] == 50277
    assert PluginConfig.from_json_file(tmp_path / "config.json").residual_in_fp32 is True


def test_round_trip_through_our_config() -> None:
    ours = PluginConfig.from_json_file(CADUCEUS_FIXTURES / "ps_d32_l2_fused" / "config.json")
    theirs = CaduceusConfig.from_plugin_config(ours)
    fields = [f.name for f in dataclasses.fields(PluginConfig) if f.name != "extra"]
    back = theirs.to_plugin_config()
    assert {f: getattr(back, f) for f in fields} == {f: getattr(ours, f) for f in fields}
    assert theirs.id2label == {0: "LABEL_0", 1: "LABEL_1"}  # the generic keys come along


STAND_IN = """
import sys
sys.modules["transformers"] = None  # as if transformers were not installed
import json, tempfile
from caduceus_plugin.compat import HAVE_TRANSFORMERS, register_auto_classes
from caduceus_plugin.compat.configuration_caduceus import CaduceusConfig
from caduceus_plugin.compat._hf import StandInConfig
assert not HAVE_TRANSFORMERS and not register_auto_classes()
assert issubclass(CaduceusConfig, StandInConfig)
cfg = CaduceusConfig(d_model=8, n_layer=1, num_labels=3, pad_token_id=4)
assert cfg.num_labels == 3 and cfg.use_return_dict and cfg.pad_token_id == 4 and cfg.d_model == 8
try:
    CaduceusConfig(d_modle=1)
except TypeError:
    pass
else:
    raise AssertionError("unknown keyword accepted")
folder = tempfile.mkdtemp()
cfg.save_pretrained(folder)
again = CaduceusConfig.from_pretrained(folder, n_layer=2)
assert again.n_layer == 2 and again.num_labels == 3 and again.d_model == 8
released = CaduceusConfig.from_pretrained(sys.argv[1])
assert released.rcps and released.d_model == 32 and released.to_plugin_config().vocab_size == 16
import torch
from safetensors.torch import load_file
from caduceus_plugin.compat.modeling_caduceus import CaduceusForMaskedLM
model = CaduceusForMaskedLM.from_pretrained(sys.argv[1])
expected = load_file(sys.argv[1] + "/expected.safetensors")
with torch.no_grad():
    logits = model(expected["input_ids"]).logits
assert ((logits - expected["logits"]).norm() / expected["logits"].norm()).item() < 1e-5
model.save_pretrained(folder + "/model")
assert CaduceusForMaskedLM.from_pretrained(folder + "/model").config.d_model == 32
print("ok")
"""


def test_without_transformers_a_stand_in_gives_the_same_api() -> None:
    """In a fresh interpreter where ``import transformers`` fails: config and model API, parity, round trip."""
    proc = subprocess.run(
        [sys.executable, "-c", STAND_IN, str(CADUCEUS_FIXTURES / "ps_d32_l2_fused")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
