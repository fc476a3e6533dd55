"""The authors'-API models (``caduceus_plugin.compat.modeling_caduceus``) on CPU: RC equivariance of the backbone
and the LM, collapse invariance, return structures, loading the authors' outputs back from their checkpoints, and
the classifier's pooling and conjoining."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import caduceus_plugin
from caduceus_plugin.compat.configuration_caduceus import CaduceusConfig
from caduceus_plugin.compat.modeling_caduceus import (
    BiMambaWrapper,
    Caduceus,
    CaduceusForMaskedLM,
    CaduceusForSequenceClassification,
    CaduceusMixerModel,
    create_block,
    weighted_cross_entropy,
)
from caduceus_plugin.errors import CheckpointError
from caduceus_plugin.models.rcps import rc_hidden, rc_ids
from tests.compat.test_modeling_rcps import complement_dict, ids
from tests.conftest import CADUCEUS_FIXTURES, perturb_, rel_err, tiny_model

SSM = {"d_state": 8, "d_conv": 4, "expand": 2, "dt_rank": "auto", "use_fast_path": True}
TOL = dict(rtol=1e-4, atol=1e-5)


def config(**overrides) -> CaduceusConfig:
    kwargs = dict(d_model=12, n_layer=2, vocab_size=12, ssm_cfg=SSM, residual_in_fp32=False, rcps=True,
                  complement_map=complement_dict(7))  # fmt: skip
    kwargs.update(overrides)
    return CaduceusConfig(**kwargs)


def table(cfg: CaduceusConfig) -> list[int]:
    return [cfg.complement_map[i] for i in range(cfg.vocab_size)]


# --- RC equivariance and collapse invariance ---------------------------------------------------------------------

BACKBONE_CASES = [
    dict(fused_add_norm=f, bidirectional=b, bidirectional_weight_tie=t, n_layer=n)
    for (f, b, t), n in zip(itertools.product([True, False], [True, False], [True, False]), [1, 2, 3, 1, 2, 3, 1, 2])
]


@pytest.mark.parametrize("case", BACKBONE_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_backbone_is_equivariant(case: dict) -> None:
    torch.manual_seed(0)
    cfg = config(**case)
    backbone = perturb_(CaduceusMixerModel(cfg, device="cpu", dtype=torch.float32))
    x = ids(2, 40)
    out = backbone(x)
    assert isinstance(out, tuple) and out[1] == ()
    h, h_rc = out[0], backbone(rc_ids(x, backbone.config.full_complement_map()))[0]
    assert h.shape == (2, 40, 24)
    torch.testing.assert_close(h_rc, rc_hidden(h), **TOL)


def test_backbone_is_equivariant_in_half_precision() -> None:
    torch.manual_seed(1)
    cfg = config(fused_add_norm=True, n_layer=2)
    backbone = CaduceusMixerModel(cfg, dtype=torch.float16)
    x = ids(2, 32)
    h, h_rc = backbone(x)[0], backbone(rc_ids(x, backbone.config.full_complement_map()))[0]
    assert h.dtype == torch.float16
    torch.testing.assert_close(h_rc, rc_hidden(h), rtol=3e-3, atol=5e-3)


@pytest.mark.parametrize(("bidirectional", "tie"), [(True, True), (True, False), (False, True)])
def test_masked_lm_is_equivariant(bidirectional: bool, tie: bool) -> None:
    torch.manual_seed(2)
    model = perturb_(CaduceusForMaskedLM(config=config(bidirectional=bidirectional, bidirectional_weight_tie=tie)))
    x = ids(2, 25)
    comp = model.lm_head.complement_map
    with torch.no_grad():
        logits, logits_rc = model(x).logits, model(rc_ids(x, comp.tolist())).logits
    assert logits.shape == (2, 25, model.config.vocab_size) == (2, 25, 16)
    torch.testing.assert_close(logits_rc, logits[..., comp].flip(1), **TOL)
    torch.testing.assert_close(logits_rc.softmax(-1), logits.softmax(-1)[..., comp].flip(1), **TOL)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_collapsed_outputs_are_invariant(bidirectional: bool) -> None:
    """Averaging the forward strand with the reverse strand read backwards gives the same for x and rc(x)."""
    torch.manual_seed(3)
    cfg = config(bidirectional=bidirectional)
    backbone = perturb_(CaduceusMixerModel(cfg))
    d = cfg.d_model
    x = ids(2, 30)

    def collapse(h: torch.Tensor) -> torch.Tensor:
        return (h[..., :d] + h[..., d:].flip(1, 2)) / 2

    with torch.no_grad():
        a = collapse(backbone(x)[0])
        b = collapse(backbone(rc_ids(x, backbone.config.full_complement_map()))[0])
    assert a.shape == (2, 30, d)
    torch.testing.assert_close(a, b, **TOL)


# --- the compat classes compute what ours compute -------------------------------------------------------------

SAME_AS_OURS = [
    dict(rcps=True, fused_add_norm=True),
    dict(rcps=True, fused_add_norm=False),
    dict(rcps=True, fused_add_norm=True, rcps_fused_half_swap=False),
    dict(rcps=False),
    dict(rcps=True, rms_norm=False, bidirectional_weight_tie=False),
    dict(rcps=False, bidirectional_strategy="ew_multiply"),
]


@pytest.mark.parametrize("overrides", SAME_AS_OURS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_compat_model_computes_our_model(overrides: dict) -> None:
    ours = tiny_model(seed=4, **overrides)
    theirs = CaduceusForMaskedLM(CaduceusConfig.from_plugin_config(ours.config))
    theirs.load_state_dict(ours.state_dict())
    x = ids(2, 19)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x).logits, ours(x).logits, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(theirs(x, output_hidden_states=True).logits, ours(x).logits, rtol=1e-5, atol=1e-6)


def test_fused_rcps_block_swaps_the_halves_like_the_authors() -> None:
    torch.manual_seed(5)
    fused = perturb_(create_block(8, ssm_cfg=SSM, rms_norm=True, fused_add_norm=True, rcps=True), seed=5)
    unfused = create_block(8, ssm_cfg=SSM, rms_norm=True, fused_add_norm=False, rcps=True)
    unfused.load_state_dict(fused.state_dict())
    h, r = torch.randn(2, 9, 16), torch.randn(2, 9, 16)

    def swap(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t[..., 8:], t[..., :8]], dim=-1)

    with torch.no_grad():
        for a, b in zip(fused(h, r), unfused(swap(h), swap(r))):
            torch.testing.assert_close(a, b)
        assert rel_err(fused(h, r)[0], unfused(h, r)[0]) > 1e-2


# --- return structures ---------------------------------------------------------------------------------------


def test_mixer_model_collects_every_layer() -> None:
    backbone = perturb_(CaduceusMixerModel(config(n_layer=3)))
    x = ids(2, 10)
    with torch.no_grad():
        out, states = backbone(x, output_hidden_states=True)
        assert len(states) == 4
        torch.testing.assert_close(states[0], backbone.embeddings(x))
        torch.testing.assert_close(states[-1], out)
        torch.testing.assert_close(backbone(x)[0], out, rtol=1e-5, atol=1e-6)  # the chunked path, same outputs


def test_masked_lm_outputs_index_like_hugging_face() -> None:
    model = CaduceusForMaskedLM(config(pad_token_id=4))
    x = ids(2, 10)
    out = model(x)
    assert out[0] is out.logits is out["logits"] and out.loss is None and out.hidden_states is None
    labels = torch.full_like(x, 4)
    labels[:, 3] = x[:, 3]
    out = model(x, labels=labels, output_hidden_states=True)
    assert out[0] is out.loss and out[1] is out.logits and len(out[2]) == 3
    loss, logits, states = model(x, labels=labels, output_hidden_states=True, return_dict=False)
    torch.testing.assert_close(loss, out.loss)
    assert logits is not None and len(states) == 3
    assert model(x, return_dict=False)[0].shape == (2, 10, 16)
    model.config.output_hidden_states = True
    assert len(model(x).hidden_states) == 3


def test_bare_caduceus_never_returns_a_bare_tensor() -> None:
    model = Caduceus(config())
    x = ids(3, 7)
    out = model(x, return_dict=False)
    assert isinstance(out, tuple) and out[0].shape == (3, 7, 24)  # [0] is the hidden states, not batch row 0
    assert model(x).last_hidden_state.shape == (3, 7, 24)
    assert len(model(x, output_hidden_states=True, return_dict=False)) == 2


def test_inputs_embeds_is_the_embedding_path() -> None:
    model = perturb_(CaduceusForMaskedLM(config()))
    x = ids(2, 8)
    emb = model.get_input_embeddings()(x)
    with torch.no_grad():
        torch.testing.assert_close(model(inputs_embeds=emb.clone()).logits, model(x).logits)
        kept = emb.clone()
        model(inputs_embeds=emb)
        assert torch.equal(emb, kept)  # the caller's tensor is not used as a buffer
    with pytest.raises(ValueError, match="exactly one"):
        model(x, inputs_embeds=emb)


def test_loss_ignores_the_pad_token_or_minus_100() -> None:
    x = ids(2, 6)
    for pad in (None, 4):
        model = perturb_(CaduceusForMaskedLM(config(pad_token_id=pad)))
        ignore = -100 if pad is None else pad
        labels = torch.full_like(x, ignore)
        labels[0, 2] = 3
        out = model(x, labels=labels)
        expected = torch.nn.functional.cross_entropy(out.logits[0, 2:3], torch.tensor([3]))
        torch.testing.assert_close(out.loss, expected)


def test_weighted_loss_leaves_the_weights_alone() -> None:
    logits, y = torch.randn(1, 4, 16), torch.tensor([[7, 8, -100, 9]])
    weights = torch.tensor([[1.0, 2.0, 5.0, 1.0]])
    kept = weights.clone()
    loss = weighted_cross_entropy(logits, y, weights)
    assert torch.equal(weights, kept)
    ce = torch.nn.functional.cross_entropy(logits[0, [0, 1, 3]], y[0, [0, 1, 3]], reduction="none")
    torch.testing.assert_close(loss, (ce * torch.tensor([1.0, 2.0, 1.0]) / 4).sum())
    model = CaduceusForMaskedLM(config())
    model(ids(1, 4), labels=y, loss_weights=weights)
    assert torch.equal(weights, kept)


def test_building_a_model_pads_the_config_like_the_authors() -> None:
    cfg = config(vocab_size=12)
    assert cfg.vocab_size == 12 and len(cfg.complement_map) == 7
    CaduceusForMaskedLM(cfg)
    assert cfg.vocab_size == 16 and cfg.complement_map == complement_dict(16)
    with pytest.raises(ValueError, match="Complement map"):
        Caduceus(CaduceusConfig(d_model=8, n_layer=1, rcps=True))


def test_hugging_face_methods() -> None:
    model = CaduceusForMaskedLM(config())
    assert model.get_input_embeddings() is model.caduceus.backbone.embeddings.word_embeddings
    assert model.get_output_embeddings() is model.lm_head and model.get_decoder() is model.caduceus
    assert model.lm_head.weight is model.get_input_embeddings().weight
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())
    with pytest.raises(NotImplementedError):
        model.set_input_embeddings(torch.nn.Embedding(16, 12))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert model.is_gradient_checkpointing
    with pytest.raises(TypeError):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"preserve_rng_state": True})
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    fresh = CaduceusForMaskedLM._from_config(config(), torch_dtype=torch.float16)
    assert fresh.dtype == torch.float16


@pytest.mark.parametrize(
    "call",
    [
        lambda: CaduceusForMaskedLM(config(), num_labels=2),
        lambda: CaduceusForSequenceClassification(config(), pool="mean"),
        lambda: Caduceus(config(), layer_idx=0),
        lambda: CaduceusMixerModel(config(), residual_in_fp32=True),
        lambda: create_block(8, rcps=True, norm_cls=None),
        lambda: BiMambaWrapper(8, d_stat=16),
        lambda: CaduceusForMaskedLM(config())(ids(1, 3), attention_mask=torch.ones(1, 3)),
        lambda: CaduceusForMaskedLM.from_pretrained(str(CADUCEUS_FIXTURES / "ps_d32_l2_fused"), pooling="mean"),
    ],
    ids=[
        "MaskedLM",
        "SeqCls",
        "Caduceus",
        "MixerModel",
        "create_block",
        "BiMambaWrapper",
        "forward",
        "from_pretrained",
    ],
)
def test_unknown_keywords_are_type_errors(call) -> None:
    with pytest.raises(TypeError):
        call()


def test_bimamba_wrapper_takes_the_authors_names() -> None:
    bm = BiMambaWrapper(8, bidirectional=True, bidirectional_strategy="ew_multiply", bidirectional_weight_tie=False,
                        d_state=4, layer_idx=2)  # fmt: skip
    assert bm.strategy == bm.bidirectional_strategy == "ew_multiply" and bm.mamba_fwd.layer_idx == 2
    assert bm.mamba_rev.in_proj is not bm.mamba_fwd.in_proj
    x = torch.randn(1, 5, 8)
    torch.testing.assert_close(bm(x, inference_params=None), bm(x))
    with pytest.raises(NotImplementedError, match="inference_params"):
        bm(x, inference_params={"seqlen_offset": 0})
    with pytest.raises(NotImplementedError, match="strategy"):
        BiMambaWrapper(8, bidirectional_strategy="concat")


# --- checkpoints: the authors' outputs, round trips, strictness -----------------------------------------------

FIXTURES = ["ps_d32_l2_fused", "ph_d24_l2_fused"]


@pytest.mark.parametrize("name", FIXTURES)
def test_from_pretrained_reproduces_the_authors_outputs(name: str) -> None:
    folder = CADUCEUS_FIXTURES / name
    expected = load_file(str(folder / "expected.safetensors"))
    model = CaduceusForMaskedLM.from_pretrained(str(folder))
    assert not model.training
    with torch.no_grad():
        out = model(expected["input_ids"], output_hidden_states=True)  # the autograd path
        streamed = model(expected["input_ids"])  # the chunked inference path
    assert rel_err(out.logits, expected["logits"]) < 1e-5
    assert rel_err(out.hidden_states[-1], expected["hidden_states"]) < 1e-5
    assert rel_err(streamed.logits, expected["logits"]) < 1e-5
    bare = Caduceus.from_pretrained(str(folder))
    with torch.no_grad():
        assert rel_err(bare(expected["input_ids"]).last_hidden_state, expected["hidden_states"]) < 1e-5


def test_save_pretrained_round_trip(tmp_path: Path) -> None:
    folder = CADUCEUS_FIXTURES / "ps_d32_l2_fused"
    expected = load_file(str(folder / "expected.safetensors"))
    model = CaduceusForMaskedLM.from_pretrained(str(folder))
    model.save_pretrained(tmp_path / "safe")
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert (
        load_file(str(tmp_path / "safe" / "model.safetensors")).keys()
        == load_file(str(folder / "model.safetensors")).keys()
    )  # the released layout: tied aliases left out
    for sub in ("safe", "bin"):
        again = CaduceusForMaskedLM.from_pretrained(str(tmp_path / sub))
        with torch.no_grad():
            assert rel_err(again(expected["input_ids"]).logits, expected["logits"]) < 1e-5
    ours = caduceus_plugin.from_pretrained(tmp_path / "safe")  # our loader reads what compat wrote ...
    caduceus_plugin.save_pretrained(ours, tmp_path / "ours")
    back = CaduceusForMaskedLM.from_pretrained(str(tmp_path / "ours"))  # ... and the other way round
    with torch.no_grad():
        assert rel_err(back(expected["input_ids"]).logits, expected["logits"]) < 1e-5


def test_unfused_rcps_norms_are_saved_under_the_authors_keys(tmp_path: Path) -> None:
    model = CaduceusForMaskedLM(config(fused_add_norm=False))
    model.save_pretrained(tmp_path)
    keys = load_file(str(tmp_path / "model.safetensors")).keys()
    assert (
        "caduceus.backbone.layers.0.norm.submodule.weight" in keys
        and "caduceus.backbone.norm_f.submodule.weight" in keys
    )
    CaduceusForMaskedLM.from_pretrained(str(tmp_path))


def test_state_dict_holds_each_tensor_once_and_loads_back(tmp_path: Path) -> None:
    model = perturb_(CaduceusForMaskedLM(config()))
    state = model.state_dict()
    assert not [
        k for k in state if "mamba_rev.in_proj" in k or "mamba_rev.out_proj" in k or k == "lm_head.lm_head.weight"
    ]
    save_file(state, str(tmp_path / "x.safetensors"))  # what the HF Trainer does with a plain nn.Module
    other = CaduceusForMaskedLM(config())
    other.load_state_dict(load_file(str(tmp_path / "x.safetensors")))
    assert other.lm_head.weight is other.get_input_embeddings().weight
    bimamba = other.caduceus.backbone.layers[0].mixer.submodule
    assert bimamba.mamba_rev.in_proj is bimamba.mamba_fwd.in_proj
    x = ids(1, 9)
    with torch.no_grad():
        torch.testing.assert_close(other(x).logits, model(x).logits)
    with model.full_state_dict():
        assert "lm_head.lm_head.weight" in model.state_dict()
    with pytest.raises(RuntimeError, match="Missing"):
        other.load_state_dict({k: v for k, v in state.items() if "norm_f" not in k})


def test_from_pretrained_is_strict_about_the_backbone(tmp_path: Path) -> None:
    folder = CADUCEUS_FIXTURES / "ph_d24_l2_fused"
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    state = load_file(str(folder / "model.safetensors"))
    del state["caduceus.backbone.layers.1.mixer.mamba_rev.A_log"]
    save_file(state, str(tmp_path / "model.safetensors"))
    for cls in (CaduceusForMaskedLM, CaduceusForSequenceClassification, Caduceus):
        with pytest.raises(CheckpointError, match=r"missing tensor .*mamba_rev\.A_log"):
            cls.from_pretrained(str(tmp_path))
    with pytest.raises(CheckpointError, match="Hub repo id"):
        CaduceusForMaskedLM.from_pretrained("kuleshov-group/caduceus-ph_seqlen-131k_d_model-256_n_layer-16")
    with pytest.raises(CheckpointError, match="no weights"):
        CaduceusForMaskedLM.from_pretrained(str(folder), use_safetensors=False)
    with pytest.raises(NotImplementedError):
        CaduceusForMaskedLM.from_pretrained(str(folder), ignore_mismatched_sizes=True)


def test_classifier_from_a_masked_lm_checkpoint(caplog: pytest.LogCaptureFixture) -> None:
    folder = CADUCEUS_FIXTURES / "ps_d32_l2_fused"
    expected = load_file(str(folder / "expected.safetensors"))
    with caplog.at_level(logging.WARNING):
        model, info = CaduceusForSequenceClassification.from_pretrained(
            str(folder), num_labels=3, pooling_strategy="max", output_loading_info=True, revision="main"
        )
    assert info["missing_keys"] == ["score.weight"] and "lm_head.complement_map" in info["unexpected_keys"]
    assert "score.weight" in caplog.text and "newly initialised" in caplog.text
    assert model.num_labels == 3 and model.pooling_strategy == "max" and abs(model.score.weight.std() - 0.02) < 0.01
    with torch.no_grad():
        out = model(expected["input_ids"], output_hidden_states=True)
    assert out.logits.shape == (2, 3)
    assert rel_err(out.hidden_states[-1], expected["hidden_states"]) < 1e-5  # the backbone really loaded


def test_classifier_round_trip_and_back_to_masked_lm(tmp_path: Path) -> None:
    folder = CADUCEUS_FIXTURES / "ph_d24_l2_fused"
    expected = load_file(str(folder / "expected.safetensors"))
    model = CaduceusForSequenceClassification.from_pretrained(str(folder), num_labels=2)
    model.save_pretrained(tmp_path)
    again, info = CaduceusForSequenceClassification.from_pretrained(str(tmp_path), output_loading_info=True)
    assert info["missing_keys"] == [] and torch.equal(again.score.weight, model.score.weight)
    lm = CaduceusForMaskedLM.from_pretrained(str(tmp_path))
    with torch.no_grad():
        assert rel_err(lm(expected["input_ids"]).logits, expected["logits"]) < 1e-5


# --- sequence classification ---------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["mean", "max", "first", "last"])
def test_pooling_strategies(strategy: str) -> None:
    torch.manual_seed(6)
    model = perturb_(CaduceusForSequenceClassification(config(rcps=False, num_labels=2), pooling_strategy=strategy))
    x = ids(2, 11)
    with torch.no_grad():
        h = model.caduceus(x).last_hidden_state
        pooled = {"mean": h.mean(1), "max": h.max(1).values, "first": h[:, 0], "last": h[:, -1]}[strategy]
        torch.testing.assert_close(model(x).logits, model.score(pooled))


@pytest.mark.parametrize("strategy", ["mean", "max"])
def test_ps_classifier_is_rc_invariant(strategy: str) -> None:
    torch.manual_seed(7)
    model = perturb_(CaduceusForSequenceClassification(config(num_labels=3), pooling_strategy=strategy))
    x = ids(2, 17)
    with torch.no_grad():
        torch.testing.assert_close(model(rc_ids(x, table(model.config))).logits, model(x).logits, **TOL)


def test_ph_conjoining() -> None:
    torch.manual_seed(8)
    cfg = config(rcps=False, num_labels=2)
    model = perturb_(CaduceusForSequenceClassification(cfg, conjoin_eval=True)).eval()
    x = ids(2, 13)
    both = torch.stack([x, rc_ids(x, table(model.config))], dim=-1)
    with torch.no_grad():
        logits = model(both).logits
        torch.testing.assert_close(logits, model(torch.stack([both[..., 1], both[..., 0]], -1)).logits, **TOL)
        single = model.score(model.caduceus(x).last_hidden_state.mean(1))
        single_rc = model.score(model.caduceus(both[..., 1]).last_hidden_state.mean(1))
        torch.testing.assert_close(logits, (single + single_rc) / 2)
        with pytest.raises(ValueError, match="conjoining"):
            model(x)
        model.train()
        assert model(x).logits.shape == (2, 2)  # conjoin_eval: plain input while training
    trained = CaduceusForSequenceClassification(config(rcps=False), conjoin_train=True)
    with pytest.raises(ValueError, match="conjoining"):
        trained(x)
    assert CaduceusForSequenceClassification(config(rcps=False), conjoin_test=True).conjoin_eval
    with pytest.raises(ValueError, match="disagree"):
        CaduceusForSequenceClassification(config(rcps=False), conjoin_eval=True, conjoin_test=False)
    with pytest.raises(NotImplementedError, match="Pooling"):
        CaduceusForSequenceClassification(config(), pooling_strategy="cls")


@pytest.mark.parametrize(
    ("num_labels", "labels", "problem"),
    [(1, torch.tensor([0.5, -1.0]), "regression"), (3, torch.tensor([0, 2]), "single_label_classification"),
     (2, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "multi_label_classification")],
)  # fmt: skip
def test_classifier_losses(num_labels: int, labels: torch.Tensor, problem: str) -> None:
    model = CaduceusForSequenceClassification(config(num_labels=num_labels))
    out = model(ids(2, 6), labels=labels)
    assert model.config.problem_type == problem and out.loss.ndim == 0 and out[0] is out.loss
    out.loss.backward()
    assert model.score.weight.grad is not None
