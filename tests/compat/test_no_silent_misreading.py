"""Issue 17, part 1: what a user porting the authors' code passes to OUR modules is converted or refused, never
silently misread. Each test here fails on the behaviour before the issue."""

from __future__ import annotations

import inspect

import pytest
import torch

from caduceus_plugin.compat import layernorm as compat_layernorm
from caduceus_plugin.compat import modeling_caduceus as compat_modeling
from caduceus_plugin.compat import modeling_rcps as compat_rcps
from caduceus_plugin.models import mamba, rcps
from caduceus_plugin.models.caduceus import modeling
from caduceus_plugin.models.caduceus.config import CaduceusConfig
from caduceus_plugin.models.mamba import BiMamba, Mamba
from caduceus_plugin.models.rcps import RCPSEmbedding, RCPSLMHead, complement_table, rc_hidden, rc_ids
from tests.conftest import perturb_, random_ids

#: the authors' way to write a complement map: {token id: complement id}
AUTHORS_MAP = {i: i for i in range(16)} | {7: 10, 8: 9, 9: 8, 10: 7}
TABLE = [AUTHORS_MAP[i] for i in range(16)]


# --- a dict complement map ----------------------------------------------------------------------------------------


def test_embedding_reads_a_dict_complement_map_by_key_and_stays_equivariant() -> None:
    torch.manual_seed(0)
    emb = perturb_(RCPSEmbedding(16, 8, AUTHORS_MAP))
    assert emb.complement_map.tolist() == TABLE  # not list(dict) = the keys = the identity
    ids = random_ids(2, 30, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(emb(rc_ids(ids, TABLE)), rc_hidden(emb(ids)))


def test_lm_head_reads_a_dict_complement_map_by_key() -> None:
    head = RCPSLMHead(16, 8, AUTHORS_MAP)
    assert head.complement_map.tolist() == TABLE


def test_string_keys_in_text_order_are_read_by_key() -> None:
    """config.json writes keys as sorted text ("0", "1", "10", ...): position would give a different map."""
    as_in_json = {str(k): v for k, v in sorted(AUTHORS_MAP.items(), key=lambda kv: str(kv[0]))}
    assert list(as_in_json.values()) != TABLE
    assert complement_table(as_in_json, 16) == TABLE
    assert RCPSEmbedding(16, 4, as_in_json).complement_map.tolist() == TABLE


@pytest.mark.parametrize(
    ("cmap", "message"),
    [
        ({0: 0, 1: 1, 2: 5, 3: 4, 4: 3, 5: 2, 6: 6}, "no entry for id"),  # the padded ids left out
        ({**AUTHORS_MAP, 16: 16}, "outside the vocabulary"),
        ({**AUTHORS_MAP, 7: 8}, "not an involution"),
        (TABLE[:12], "12 entries"),
        ([*TABLE[:15], 16], "outside the vocabulary"),
    ],
)
def test_complement_maps_that_cannot_be_meant_are_refused(cmap: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RCPSEmbedding(16, 4, cmap)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        RCPSLMHead(16, 4, cmap)  # type: ignore[arg-type]


def test_a_complement_map_of_another_type_is_refused() -> None:
    with pytest.raises(TypeError, match="complement_map"):
        RCPSEmbedding(16, 4, "ACGT")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="1-D integer"):
        RCPSEmbedding(16, 4, torch.arange(16.0))


def test_a_tensor_or_list_complement_map_is_read_by_position() -> None:
    assert RCPSEmbedding(16, 4, torch.tensor(TABLE)).complement_map.tolist() == TABLE
    assert RCPSLMHead(16, 4, tuple(TABLE)).complement_map.tolist() == TABLE


# --- keywords ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bidirectional_strategy", "bidirectional_weight_tie"])
def test_bimamba_refuses_the_authors_keyword_names(name: str) -> None:
    value = "ew_multiply" if name == "bidirectional_strategy" else False
    with pytest.raises(TypeError, match=f"{name}=.*compat"):
        BiMamba(8, **{name: value})


def test_bimamba_with_our_names_uses_them() -> None:
    bm = BiMamba(8, strategy="ew_multiply", weight_tie=False)
    assert bm.strategy == "ew_multiply" and bm.mamba_rev.in_proj is not bm.mamba_fwd.in_proj


@pytest.mark.parametrize(
    "build",
    [
        lambda: Mamba(8, d_stat=16),
        lambda: BiMamba(8, d_stat=16),
        lambda: Mamba(8, layer="Mamba1"),
        lambda: RCPSEmbedding(16, 4, TABLE, padding_idx=4),
        lambda: RCPSLMHead(16, 4, TABLE, true_dim=4),
        lambda: CaduceusConfig(num_labels=2),
        lambda: modeling.CaduceusForMaskedLM(CaduceusConfig(d_model=8, n_layer=1), num_labels=2),
    ],
    ids=["Mamba", "BiMamba", "Mamba-layer", "RCPSEmbedding", "RCPSLMHead", "CaduceusConfig", "MaskedLM"],
)
def test_unknown_keywords_are_type_errors(build) -> None:
    with pytest.raises(TypeError):
        build()


def test_mamba_takes_the_authors_ssm_cfg() -> None:
    m = Mamba(8, use_fast_path=True, layer_idx=3, dt_rank="auto")
    assert m.layer_idx == 3 and m.use_fast_path


def test_forwards_refuse_unknown_keywords() -> None:
    model = modeling.CaduceusForMaskedLM(CaduceusConfig(d_model=8, n_layer=1, rcps=True))
    ids = random_ids(1, 5)
    for call in (
        lambda: model(ids, return_dict=True),
        lambda: model.caduceus(ids, output_hidden_states=True),
        lambda: model.backbone(ids, inputs_embeds=None),
        lambda: model.backbone.layers[0](torch.zeros(1, 5, 16), inference_params=None),
    ):
        with pytest.raises(TypeError):
            call()


# --- what the config says is what the model uses ---------------------------------------------------------------


def test_config_vocab_size_and_complement_map_are_the_padded_ones() -> None:
    cfg = CaduceusConfig(d_model=8, n_layer=1, vocab_size=12, rcps=True, complement_map={7: 10, 10: 7, 8: 9, 9: 8})
    model = modeling.CaduceusForMaskedLM(cfg)
    assert cfg.vocab_size == 16 == model.backbone.embeddings.word_embeddings.embedding.num_embeddings
    assert sorted(cfg.complement_map) == list(range(16))
    assert [cfg.complement_map[i] for i in range(16)] == model.lm_head.complement_map.tolist() == TABLE
    with torch.no_grad():
        assert model(random_ids(1, 4)).logits.shape[-1] == cfg.vocab_size


# --- returns ---------------------------------------------------------------------------------------------------


def test_our_backbone_returns_one_tensor_and_says_so() -> None:
    """``backbone(ids)[0]`` is a batch row here (the authors' returns a tuple): the docstring says so, and the
    authors'-shaped class is one import away."""
    model = modeling.CaduceusForMaskedLM(CaduceusConfig(d_model=8, n_layer=1, rcps=True))
    ids = random_ids(3, 5)
    with torch.no_grad():
        out = model.backbone(ids)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 5, 16)
    doc = modeling.CaduceusBackbone.forward.__doc__
    assert "not a tuple" in doc and "compat.modeling_caduceus.CaduceusMixerModel" in doc


def test_our_masked_lm_output_documents_its_fields() -> None:
    doc = modeling.CaduceusForMaskedLM.forward.__doc__
    assert "not indexable" in doc and "compat.modeling_caduceus.CaduceusForMaskedLM" in doc


@pytest.mark.parametrize("module", [rcps, mamba, modeling, compat_rcps, compat_modeling, compat_layernorm])
def test_every_forward_has_a_docstring(module) -> None:
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ == module.__name__ and issubclass(cls, torch.nn.Module) and "forward" in vars(cls):
            assert (cls.forward.__doc__ or "").strip(), f"{cls.__name__}.forward has no docstring"
