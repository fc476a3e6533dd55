"""RC equivariance of the authors'-API RCPS layers (``caduceus_plugin.compat.modeling_rcps``) on CPU, with the
authors' constructor calls: the embedding, the wrapper, the add-norm wrapper, the block and the LM head.

Equivariance: ``f(rc x) == rc f(x)`` with ``rc`` = flip length and channels for hidden tensors, reverse and
complement for ids, and for logits ``logits(rc x)[t, v] == logits(x)[l-1-t, comp(v)]``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from caduceus_plugin.compat.layernorm import RMSNorm
from caduceus_plugin.compat.modeling_caduceus import create_block
from caduceus_plugin.compat.modeling_rcps import (
    RCPSAddNormWrapper,
    RCPSEmbedding,
    RCPSLMHead,
    RCPSMambaBlock,
    RCPSWrapper,
)
from caduceus_plugin.models.rcps import rc_hidden, rc_ids
from tests.conftest import perturb_

#: a small vocabulary written the authors' way: specials, then A C G T N; padded ids map to themselves
VOCAB = {"[CLS]": 0, "[MASK]": 1, "A": 2, "C": 3, "G": 4, "T": 5, "N": 6}
PAIRS = {"A": "T", "C": "G", "G": "C", "T": "A"}
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float16: dict(rtol=3e-3, atol=5e-3)}


def complement_dict(size: int) -> dict[int, int]:
    cmap = {i: VOCAB[PAIRS.get(tok, tok)] for tok, i in VOCAB.items()}
    return cmap | {i: i for i in range(len(VOCAB), size)}


def ids(b: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, len(VOCAB), (b, length), generator=torch.Generator().manual_seed(seed))


def hidden(b: int, length: int, c: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, length, c, generator=torch.Generator().manual_seed(seed)).to(dtype)


def test_embedding() -> None:
    torch.manual_seed(0)
    cmap = complement_dict(16)
    emb = RCPSEmbedding(vocab_size=16, d_model=12, complement_map=cmap, device="cpu", dtype=torch.float32)
    x = ids(3, 40)
    out = emb(x)
    assert out.shape == (3, 40, 24)
    torch.testing.assert_close(emb(rc_ids(x, [cmap[i] for i in range(16)])), rc_hidden(out))
    torch.testing.assert_close(emb.rc(x), rc_ids(x, emb.complement_map.tolist()))
    shared = nn.Parameter(torch.randn(16, 12))
    emb.set_weight(shared)
    assert emb.weight is shared


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_wrapper_of_any_module(dtype: torch.dtype) -> None:
    torch.manual_seed(1)
    inner = nn.Sequential(nn.Linear(8, 16, dtype=dtype), nn.ReLU(), nn.Linear(16, 8, bias=False, dtype=dtype))
    wrapper = RCPSWrapper(inner)
    x = hidden(2, 33, 16, dtype)
    with torch.no_grad():
        out = wrapper(x)
        assert out.shape == x.shape
        torch.testing.assert_close(wrapper(rc_hidden(x)), rc_hidden(out), **TOL[dtype])
    assert torch.equal(RCPSWrapper.rc(x), x.flip(-2, -1))


def test_wrapper_passes_keywords_to_the_submodule() -> None:
    class Scaled(nn.Module):
        def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
            return x * scale

    x = hidden(1, 4, 6)
    torch.testing.assert_close(RCPSWrapper(Scaled())(x, scale=3.0), 3 * x)
    with pytest.raises(TypeError):
        RCPSWrapper(Scaled())(x, shift=1.0)


@pytest.mark.parametrize("prenorm", [False, True])
@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_add_norm_wrapper(prenorm: bool, with_residual: bool, dtype: torch.dtype) -> None:
    norm = RMSNorm(8, eps=1e-5, dtype=dtype)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    wrapper = RCPSAddNormWrapper(norm)
    x, r = hidden(2, 21, 16, dtype), (hidden(2, 21, 16, dtype, seed=1) if with_residual else None)
    out = wrapper(x, residual=r, prenorm=prenorm)
    out_rc = wrapper(rc_hidden(x), residual=None if r is None else rc_hidden(r), prenorm=prenorm)
    outs, outs_rc = (out, out_rc) if prenorm else ((out,), (out_rc,))
    assert len(outs) == (2 if prenorm else 1)
    for a, b in zip(outs, outs_rc):
        assert a.shape == x.shape
        torch.testing.assert_close(b, rc_hidden(a), **TOL[dtype])
    if prenorm:
        torch.testing.assert_close(outs[1], x if r is None else x + r)


@pytest.mark.parametrize("fused_add_norm", [True, False])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("residual_in_fp32", [True, False])
def test_block(fused_add_norm: bool, bidirectional: bool, residual_in_fp32: bool) -> None:
    torch.manual_seed(2)
    block = create_block(
        12, ssm_cfg={"d_state": 8, "use_fast_path": True}, norm_epsilon=1e-5, rms_norm=True,
        residual_in_fp32=residual_in_fp32, fused_add_norm=fused_add_norm, layer_idx=0, bidirectional=bidirectional,
        bidirectional_strategy="add", bidirectional_weight_tie=True, rcps=True,
    )  # fmt: skip
    assert isinstance(block, RCPSMambaBlock) and block.layer_idx == 0
    perturb_(block, seed=2)
    x = hidden(2, 30, 24, seed=3)
    with torch.no_grad():
        for residual in (None, hidden(2, 30, 24, seed=4)):
            out = block(x, residual=residual)
            out_rc = block(rc_hidden(x), residual=None if residual is None else rc_hidden(residual))
            assert isinstance(out, tuple) and len(out) == 2
            for a, b in zip(out, out_rc):
                assert a.shape == x.shape
                torch.testing.assert_close(b.float(), rc_hidden(a).float(), **TOL[torch.float32])
            assert out[1].dtype == (torch.float32 if residual_in_fp32 else x.dtype)


def test_block_refuses_a_decoding_cache() -> None:
    block = create_block(8, rcps=True)
    with pytest.raises(NotImplementedError, match="inference_params"):
        block(hidden(1, 3, 16), inference_params=object())
    with pytest.raises(NotImplementedError):
        block.allocate_inference_cache(1, 10)
    block(hidden(1, 3, 16), inference_params=None)


def test_fused_block_refuses_another_norm() -> None:
    with pytest.raises(TypeError, match="fused_add_norm"):
        RCPSMambaBlock(8, lambda d: nn.Identity(), norm_cls=lambda d: nn.Identity(), fused_add_norm=True)


@pytest.mark.parametrize("length", [1, 37])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_lm_head(length: int, dtype: torch.dtype) -> None:
    torch.manual_seed(3)
    cmap = complement_dict(12)
    head = RCPSLMHead(complement_map=cmap, vocab_size=12, true_dim=10, dtype=dtype)
    assert head.true_dim == 10 and head.weight is head.lm_head.weight
    x = hidden(2, length, 20, dtype)
    logits, logits_rc = head(x), head(rc_hidden(x))
    assert logits.shape == (2, length, 12)
    comp = head.complement_map
    torch.testing.assert_close(logits_rc, logits[..., comp].flip(1), **TOL[dtype])
    torch.testing.assert_close(logits_rc.softmax(-1), logits.softmax(-1)[..., comp].flip(1), **TOL[dtype])
    shared = nn.Parameter(torch.randn(12, 10, dtype=dtype))
    head.set_weight(shared)
    assert head.weight is shared


def test_lm_head_refuses_a_one_strand_input() -> None:
    head = RCPSLMHead(true_dim=10, vocab_size=12, complement_map=complement_dict(12))
    with pytest.raises(ValueError, match="2 \\* 10"):
        head(hidden(1, 3, 10))
