"""With transformers installed, its Auto classes build the compat classes for ``model_type: caduceus`` — offline,
without remote code — and the weights really load (no silent random initialisation)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

transformers = pytest.importorskip("transformers")

from caduceus_plugin import compat  # noqa: E402  (registers the Auto classes)
from caduceus_plugin.compat.configuration_caduceus import CaduceusConfig  # noqa: E402
from caduceus_plugin.compat.modeling_caduceus import (  # noqa: E402
    Caduceus,
    CaduceusForMaskedLM,
    CaduceusForSequenceClassification,
)
from tests.conftest import CADUCEUS_FIXTURES, rel_err  # noqa: E402

#: what the released config.json files point at: the remote code next to the weights, which we never run
AUTO_MAP = {
    "AutoConfig": "configuration_caduceus.CaduceusConfig",
    "AutoModel": "modeling_caduceus.Caduceus",
    "AutoModelForMaskedLM": "modeling_caduceus.CaduceusForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_caduceus.CaduceusForSequenceClassification",
}


@pytest.fixture(params=["ps_d32_l2_fused", "ph_d24_l2_fused"])
def released(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A fixture checkpoint laid out exactly like a released one: its config.json names the remote code."""
    folder = tmp_path / request.param
    shutil.copytree(CADUCEUS_FIXTURES / request.param, folder)
    data = json.loads((folder / "config.json").read_text())
    data["auto_map"] = AUTO_MAP
    (folder / "config.json").write_text(json.dumps(data))
    return folder


def test_registration_is_idempotent() -> None:
    assert compat.register_auto_classes() and compat.register_auto_classes()
    assert issubclass(CaduceusConfig, transformers.PretrainedConfig)


def test_auto_config(released: Path) -> None:
    cfg = transformers.AutoConfig.from_pretrained(released)
    assert type(cfg) is CaduceusConfig and cfg.auto_map == AUTO_MAP
    assert transformers.AutoConfig.from_pretrained(released, n_layer=1).n_layer == 1
    with pytest.raises(TypeError, match="n_layers"):
        transformers.AutoConfig.from_pretrained(released, n_layers=1)


def test_auto_model_for_masked_lm_loads_the_weights(released: Path) -> None:
    expected = load_file(str(released / "expected.safetensors"))
    model = transformers.AutoModelForMaskedLM.from_pretrained(released)
    assert type(model) is CaduceusForMaskedLM and not model.training
    with torch.no_grad():
        out = model(expected["input_ids"], output_hidden_states=True)
    assert rel_err(out.logits, expected["logits"]) < 1e-5
    assert rel_err(out.hidden_states[-1], expected["hidden_states"]) < 1e-5
    # without trust_remote_code (or with False) local code wins; the auto_map's files are never looked for
    again = transformers.AutoModelForMaskedLM.from_pretrained(released, trust_remote_code=False)
    assert type(again) is CaduceusForMaskedLM


def test_auto_model_and_sequence_classification(released: Path) -> None:
    expected = load_file(str(released / "expected.safetensors"))
    bare = transformers.AutoModel.from_pretrained(released)
    assert type(bare) is Caduceus
    with torch.no_grad():
        assert rel_err(bare(expected["input_ids"]).last_hidden_state, expected["hidden_states"]) < 1e-5
    clf = transformers.AutoModelForSequenceClassification.from_pretrained(
        released, num_labels=2, pooling_strategy="max", conjoin_eval=True
    )
    assert type(clf) is CaduceusForSequenceClassification and clf.num_labels == 2 and clf.pooling_strategy == "max"
    for name, p in bare.state_dict().items():
        assert torch.equal(clf.caduceus.state_dict()[name], p), name


def test_auto_model_from_config(released: Path) -> None:
    cfg = transformers.AutoConfig.from_pretrained(released, n_layer=1)
    model = transformers.AutoModelForMaskedLM.from_config(cfg)
    assert type(model) is CaduceusForMaskedLM and len(model.caduceus.backbone.layers) == 1
    assert model.lm_head.weight is model.get_input_embeddings().weight


def test_a_config_from_the_hub_layout_builds_an_equivariant_ps_model(tmp_path: Path) -> None:
    """The released config.json stores the complement map with text keys ("0", "1", "10", ...): read by key."""
    cfg = transformers.AutoConfig.from_pretrained(CADUCEUS_FIXTURES / "ps_d32_l2_fused")
    model = transformers.AutoModelForMaskedLM.from_config(cfg)
    assert model.lm_head.complement_map.tolist() == [0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15]
