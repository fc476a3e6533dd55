"""RC equivariance as a property, at every RCPS layer and end to end (many random draws via hypothesis)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from caduceus_plugin.models.caduceus.features import embed, mean_pool, rc_invariant_features
from caduceus_plugin.models.caduceus.modeling import CaduceusBlock
from caduceus_plugin.models.mamba import BiMamba, make_norm
from caduceus_plugin.models.rcps import RCPSEmbedding, RCPSLMHead, RCPSWrapper, rc_hidden, rc_ids, rcps_norm
from tests.conftest import perturb_, random_ids, tiny_model

COMP = [0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15]
TOL = dict(rtol=1e-4, atol=1e-5)
SETTINGS = settings(max_examples=25, deadline=None)

shapes = st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(0, 10_000))


def _hidden(b: int, length: int, c: int, seed: int) -> torch.Tensor:
    return torch.randn(b, length, c, generator=torch.Generator().manual_seed(seed))


@SETTINGS
@given(shapes)
def test_rcps_embedding(shape) -> None:
    b, length, seed = shape
    torch.manual_seed(seed)
    emb = perturb_(RCPSEmbedding(16, 8, COMP), seed)
    ids = random_ids(b, length, seed, with_specials=True)
    with torch.no_grad():
        assert emb(ids).shape == (b, length, 16)
        torch.testing.assert_close(emb(rc_ids(ids, COMP)), rc_hidden(emb(ids)), **TOL)
        probs = torch.nn.functional.one_hot(ids, 16).float()
        torch.testing.assert_close(emb.from_probs(probs), emb(ids), **TOL)


@SETTINGS
@given(shapes, st.sampled_from(["bimamba", "mlp"]))
def test_rcps_wrapper(shape, kind: str) -> None:
    b, length, seed = shape
    torch.manual_seed(seed)
    inner = (
        BiMamba(8)
        if kind == "bimamba"
        else torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.GELU(), torch.nn.Linear(12, 8))
    )
    wrapper = perturb_(RCPSWrapper(inner), seed).eval()
    x = _hidden(b, length, 16, seed)
    with torch.no_grad():
        torch.testing.assert_close(wrapper(rc_hidden(x)), rc_hidden(wrapper(x)), **TOL)


@SETTINGS
@given(shapes, st.booleans())
def test_rcps_norm(shape, rms: bool) -> None:
    b, length, seed = shape
    torch.manual_seed(seed)
    norm = perturb_(make_norm(8, rms, 1e-5), seed)
    x = _hidden(b, length, 16, seed)
    with torch.no_grad():
        torch.testing.assert_close(rcps_norm(norm, rc_hidden(x)), rc_hidden(rcps_norm(norm, x)), **TOL)


@SETTINGS
@given(shapes)
def test_rcps_lm_head(shape) -> None:
    b, length, seed = shape
    torch.manual_seed(seed)
    head = perturb_(RCPSLMHead(16, 8, COMP), seed)
    x = _hidden(b, length, 16, seed)
    with torch.no_grad():
        logits, logits_rc = head(x), head(rc_hidden(x))
        # logits(rc h)[t, v] == logits(h)[L-1-t, comp(v)]
        torch.testing.assert_close(logits_rc, logits.flip(1)[..., COMP], **TOL)
        torch.testing.assert_close(logits_rc.softmax(-1), logits.softmax(-1).flip(1)[..., COMP], **TOL)


@SETTINGS
@given(shapes, st.booleans(), st.booleans(), st.booleans())
def test_rcps_block(shape, fused: bool, bidirectional: bool, with_residual: bool) -> None:
    b, length, seed = shape
    model = tiny_model(seed, d_model=8, n_layer=1, fused_add_norm=fused, bidirectional=bidirectional)
    block: CaduceusBlock = model.backbone.layers[0]
    x = _hidden(b, length, 16, seed)
    r = _hidden(b, length, 16, seed + 1) if with_residual else None
    with torch.no_grad():
        h1, r1 = block(x, r)
        h2, r2 = block(rc_hidden(x), None if r is None else rc_hidden(r))
    torch.testing.assert_close(h2, rc_hidden(h1), **TOL)
    torch.testing.assert_close(r2, rc_hidden(r1), **TOL)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(fused_add_norm=False),
        dict(bidirectional=False),
        dict(bidirectional_weight_tie=False),
        dict(rms_norm=False, n_layer=3),
        dict(residual_in_fp32=True),
        dict(bidirectional_strategy="ew_multiply"),
    ],
)
@SETTINGS
@given(shape=shapes)
def test_ps_end_to_end(overrides: dict, shape) -> None:
    b, length, seed = shape
    model = tiny_model(seed % 7, **overrides)
    ids = random_ids(b, length, seed, with_specials=True)
    ids_rc = rc_ids(ids, model.config.full_complement_map())
    with torch.no_grad():
        out, out_rc = model(ids), model(ids_rc)
        torch.testing.assert_close(out_rc.hidden_states, rc_hidden(out.hidden_states), **TOL)
        comp = model.config.full_complement_map()
        torch.testing.assert_close(out_rc.logits, out.logits.flip(1)[..., comp], **TOL)
        f, f_rc = rc_invariant_features(out.hidden_states), rc_invariant_features(out_rc.hidden_states)
        torch.testing.assert_close(f_rc, f.flip(1), **TOL)  # per position: invariant up to the length flip
        torch.testing.assert_close(mean_pool(f_rc), mean_pool(f), **TOL)


@SETTINGS
@given(shapes)
def test_ph_conjoined_invariant(shape) -> None:
    b, length, seed = shape
    model = tiny_model(seed % 5, rcps=False)
    ids = random_ids(b, length, seed)
    ids_rc = rc_ids(ids, model.config.full_complement_map())
    f, f_rc = embed(model, ids), embed(model, ids_rc)
    torch.testing.assert_close(f_rc, f.flip(1), **TOL)
    torch.testing.assert_close(mean_pool(f_rc), mean_pool(f), **TOL)


def test_ph_is_not_equivariant_without_conjoining() -> None:
    """Guard against a vacuous test above: the bare Ph backbone is not RC-invariant."""
    model = tiny_model(1, rcps=False)
    ids = random_ids(2, 30, 1)
    ids_rc = rc_ids(ids, model.config.full_complement_map())
    f, f_rc = embed(model, ids, conjoin=False), embed(model, ids_rc, conjoin=False)
    assert (f_rc - f.flip(1)).abs().max() > 1e-3
