"""Parity with the authors' code (fixtures) and with an independent reading of the spec (other configurations)."""

from __future__ import annotations

import itertools

import pytest
import torch
from safetensors.torch import load_file

import caduceus_plugin
from caduceus_plugin.models.caduceus.checkpoint import export_state_dict
from caduceus_plugin.ops.scan import scan_backend
from tests import spec_reference
from tests.conftest import CADUCEUS_FIXTURES, CPU_BACKENDS, random_ids, rel_err, tiny_model

FIXTURE_DIRS = ["ps_d32_l2_fused", "ph_d24_l2_fused"]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", FIXTURE_DIRS)
def test_fixture_parity(name: str, backend: str) -> None:
    folder = CADUCEUS_FIXTURES / name
    expected = load_file(str(folder / "expected.safetensors"))
    model = caduceus_plugin.from_pretrained(folder)
    assert not model.training
    with scan_backend(backend), torch.no_grad():
        out = model(expected["input_ids"])
    assert out.hidden_states.shape == expected["hidden_states"].shape
    assert out.logits.shape == expected["logits"].shape
    assert rel_err(out.hidden_states, expected["hidden_states"]) < 1e-5
    assert rel_err(out.logits, expected["logits"]) < 1e-5


def test_fixture_parity_batch_independent() -> None:
    """Each row of the fixture batch also matches when run alone (no cross-talk through batching of strands)."""
    folder = CADUCEUS_FIXTURES / "ps_d32_l2_fused"
    expected = load_file(str(folder / "expected.safetensors"))
    model = caduceus_plugin.from_pretrained(folder)
    with torch.no_grad():
        out = model(expected["input_ids"][1:])
    assert rel_err(out.logits, expected["logits"][1:]) < 1e-5


CONFIGS = [dict(rcps=rcps, fused_add_norm=fused) for rcps, fused in itertools.product([True, False], [True, False])] + [
    dict(rcps=True, fused_add_norm=True, rcps_fused_half_swap=False),
    dict(rcps=True, fused_add_norm=False, bidirectional_weight_tie=False),
    dict(rcps=False, bidirectional_weight_tie=False),
    dict(rcps=True, residual_in_fp32=True, n_layer=3),
    dict(rcps=True, rms_norm=False),
    dict(rcps=False, rms_norm=False, fused_add_norm=False),
    dict(rcps=True, bidirectional=False),
    dict(rcps=False, bidirectional=False),
    dict(rcps=True, bidirectional_strategy="ew_multiply"),
    dict(rcps=False, bidirectional_strategy="ew_multiply", bidirectional_weight_tie=False),
    dict(rcps=True, tie_word_embeddings=False, d_model=20, n_layer=1),
    dict(rcps=True, d_model=24, n_layer=3, ssm_cfg={"d_state": 8, "d_conv": 3, "expand": 1, "dt_rank": 3}),
    dict(rcps=False, vocab_size=12, pad_vocab_size_multiple=8, norm_epsilon=1e-3),
]


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("length", [1, 13])
def test_matches_spec_reference(overrides: dict, length: int) -> None:
    model = tiny_model(seed=length, **overrides)
    ids = random_ids(2, length, seed=length, with_specials=True)
    with torch.no_grad():
        out = model(ids)
        ref_hidden, ref_logits = spec_reference.forward(export_state_dict(model), model.config.to_dict(), ids)
    assert rel_err(out.hidden_states, ref_hidden) < 1e-5
    assert rel_err(out.logits, ref_logits) < 1e-5


def test_fused_half_swap_is_not_unfused() -> None:
    """Spec §1.6: fused PS != unfused PS on the same weights, and fused == unfused with the per-layer swap."""
    fused = tiny_model(seed=3, rcps=True, fused_add_norm=True, n_layer=3)
    unfused = tiny_model(seed=3, rcps=True, fused_add_norm=False, n_layer=3)
    unfused.load_state_dict(fused.state_dict())
    ids = random_ids(2, 17, seed=3)
    with torch.no_grad():
        a, b = fused(ids).hidden_states, unfused(ids).hidden_states
        assert rel_err(a, b) > 1e-2
        unfused.config.rcps_fused_half_swap = True
        assert rel_err(unfused(ids).hidden_states, a) < 1e-6
