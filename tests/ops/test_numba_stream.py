"""Channels-last inference kernels (conv + SiLU, scan from a state, reverse walk) against the references."""

from __future__ import annotations

import pytest
import torch

from caduceus_plugin.ops.conv import causal_conv1d_ref
from caduceus_plugin.ops.scan import selective_scan_ref
from tests.conftest import rel_err

mn = pytest.importorskip("caduceus_plugin.ops.numba.stream")


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(("k", "e", "t"), [(4, 40, 33), (4, 16, 2), (3, 7, 9), (2, 5, 1)])
def test_conv_silu_pieces_equal_whole(reverse: bool, k: int, e: int, t: int) -> None:
    g = torch.Generator().manual_seed(k * 100 + e + t)
    xz = torch.randn(2, 3 * t, 2 * e, generator=g)
    w, b = torch.randn(e, 1, k, generator=g), torch.randn(e, generator=g)
    order = xz[..., :e].flip(1) if reverse else xz[..., :e]
    whole = causal_conv1d_ref(order.transpose(1, 2), w, b).transpose(1, 2)
    whole = whole.flip(1) if reverse else whole
    ctx, pieces = None, []
    spans = [(0, t), (t, 3 * t)]
    for s, end in spans[::-1] if reverse else spans:
        y, ctx = mn.conv_silu(xz[:, s:end].contiguous(), w, b, ctx, reverse)
        pieces.append((s, y))
    got = torch.cat([y for _, y in sorted(pieces, key=lambda p: p[0])], dim=1)
    assert rel_err(got, whole) < 1e-6


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(("e", "n", "t"), [(40, 16, 70), (16, 4, 1), (9, 3, 20), (24, 6, 17)])
def test_scan_pieces_with_state_equal_ref(reverse: bool, e: int, n: int, t: int) -> None:
    g = torch.Generator().manual_seed(e + n + t)
    b, r = 2, 3
    x = torch.randn(b, 2 * t, e, generator=g)
    delta = torch.randn(b, 2 * t, e, generator=g) - 1
    A = -torch.exp(torch.randn(e, n, generator=g) * 0.5)
    bc = torch.randn(b, 2 * t, r + 2 * n, generator=g)
    D, bias = torch.randn(e, generator=g), torch.randn(e, generator=g) * 0.3
    xz = torch.randn(b, 2 * t, 2 * e, generator=g)  # gate in channels [e, 2e)

    def flip(u):
        return u.flip(1) if reverse else u

    ref = selective_scan_ref(
        flip(x).transpose(1, 2), flip(delta).transpose(1, 2), A, flip(bc[..., r : r + n]).transpose(1, 2),
        flip(bc[..., r + n :]).transpose(1, 2), D, flip(xz[..., e:]).transpose(1, 2), bias,
    ).transpose(1, 2)  # fmt: skip
    ref = flip(ref)
    h, pieces = None, {}
    spans = [(0, t), (t, 2 * t)]
    for s, end in spans[::-1] if reverse else spans:
        sl = slice(s, end)
        y, h = mn.scan(x[:, sl], delta[:, sl], A, bc[:, sl], r, D, bias, xz[:, sl].contiguous(), e, h, reverse)
        pieces[s] = y
    got = torch.cat([pieces[s] for s, _ in spans], dim=1)
    assert rel_err(got, ref) < 1e-5


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(("k", "e", "t"), [(4, 40, 33), (3, 7, 9)])
def test_conv_silu_reads_and_writes_bf16_exactly(reverse: bool, k: int, e: int, t: int) -> None:
    """bf16 input is widened exactly (the result of its float32 copy, up to float32 rounding: the two compilations
    may contract differently); bf16 output is the float32 result rounded to nearest, as torch rounds it."""
    g = torch.Generator().manual_seed(k + e + t)
    xz = torch.randn(2, t, 2 * e, generator=g).bfloat16()
    w, b = torch.randn(e, 1, k, generator=g), torch.randn(e, generator=g)
    ctx = torch.randn(2, k - 1, e, generator=g)
    y32, c32 = mn.conv_silu(xz.float(), w, b, ctx, reverse)
    y, c = mn.conv_silu(xz, w, b, ctx, reverse)
    assert y.dtype == torch.float32 and rel_err(y, y32) < 1e-6 and torch.equal(c, c32)
    y16, c16 = mn.conv_silu(xz, w, b, ctx, reverse, out_dtype=torch.bfloat16)
    assert y16.dtype == torch.bfloat16 and torch.equal(c16, c32)
    assert (y16 == y32.bfloat16()).float().mean() > 0.99  # rounding ties may differ by the last float32 bit
    assert ((y16.float() - y32).abs() <= y32.abs() * 2**-8).all()  # within half a bf16 ulp


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(("e", "n", "t"), [(40, 16, 70), (9, 3, 20)])
def test_scan_reads_bf16_activations_exactly(reverse: bool, e: int, n: int, t: int) -> None:
    """x, delta and the gate given as bf16: the float32 output for their float32 copies (to float32 rounding)."""
    g = torch.Generator().manual_seed(e * n + t)
    b, r = 2, 3
    x = torch.randn(b, t, e, generator=g).bfloat16()
    delta = (torch.randn(b, t, e, generator=g) - 1).bfloat16()
    A = -torch.exp(torch.randn(e, n, generator=g) * 0.5)
    bc = torch.randn(b, t, r + 2 * n, generator=g)
    D, bias = torch.randn(e, generator=g), torch.randn(e, generator=g) * 0.3
    xz = torch.randn(b, t, 2 * e, generator=g).bfloat16()
    h0 = torch.randn(b, e, n, generator=g)
    y32, h32 = mn.scan(x.float(), delta.float(), A, bc, r, D, bias, xz.float(), e, h0, reverse)
    y, h = mn.scan(x, delta, A, bc, r, D, bias, xz, e, h0, reverse)
    assert y.dtype == torch.float32 and rel_err(y, y32) < 1e-6 and rel_err(h, h32) < 1e-6


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_adds_acc_and_rounds_once_to_bf16(reverse: bool) -> None:
    """``acc`` is added in float32 before the single rounding of a bf16 output."""
    g = torch.Generator().manual_seed(7)
    b, t, e, n, r = 2, 37, 40, 16, 3
    x, delta = torch.randn(b, t, e, generator=g), torch.randn(b, t, e, generator=g) - 1
    A = -torch.exp(torch.randn(e, n, generator=g) * 0.5)
    bc = torch.randn(b, t, r + 2 * n, generator=g)
    D, bias = torch.randn(e, generator=g), torch.randn(e, generator=g) * 0.3
    xz, acc = torch.randn(b, t, 2 * e, generator=g), torch.randn(b, t, e, generator=g)
    y, h = mn.scan(x, delta, A, bc, r, D, bias, xz, e, None, reverse)
    y_acc, h_acc = mn.scan(x, delta, A, bc, r, D, bias, xz, e, None, reverse, acc=acc)
    assert rel_err(y_acc, y + acc) < 1e-6 and torch.equal(h_acc, h)
    y16, _ = mn.scan(x, delta, A, bc, r, D, bias, xz, e, None, reverse, acc=acc, out_dtype=torch.bfloat16)
    assert y16.dtype == torch.bfloat16
    assert ((y16.float() - y_acc).abs() <= y_acc.abs() * 2**-8 + 1e-6).all()


def _norm_ref(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, eps: float) -> torch.Tensor:
    if b is None:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


@pytest.mark.parametrize("offsets", [(0,), (0, 5), (5, 0)])
@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("add", [False, True])
def test_norm_gather_is_add_then_norm_of_each_strand_in_scan_order(offsets, layer_norm: bool, add: bool) -> None:
    g = torch.Generator().manual_seed(len(offsets) * 10 + layer_norm * 2 + add)
    b, length, d = 2, 11, 5
    channels = d * len(offsets)
    res = torch.randn(b, length, channels, generator=g) * 3 + 1
    out = torch.randn(b, length, channels, generator=g)
    w = torch.randn(d, generator=g)
    bias = torch.randn(d, generator=g) if layer_norm else None
    s, e = 3, 9
    original = res.clone()
    expected_res = res + out if add else res.clone()
    got = mn.norm_gather(res, out, add, s, e, offsets, d, w, bias, 1e-5, not layer_norm)
    parts = [expected_res[:, s:e, offsets[0] : offsets[0] + d]]
    if len(offsets) == 2:  # strand 1: rows l-e..l-s reversed, channels reversed
        parts.append(expected_res[:, length - e : length - s, offsets[1] : offsets[1] + d].flip(1, 2))
    want = _norm_ref(torch.cat(parts), w, bias, 1e-5)
    assert got.shape == (len(offsets) * b, e - s, d)
    assert rel_err(got, want) < 1e-6
    # the residual add touched the piece's rows of each strand, and nothing else
    touched = torch.zeros(b, length, channels, dtype=torch.bool)
    touched[:, s:e, offsets[0] : offsets[0] + d] = True
    if len(offsets) == 2:
        touched[:, length - e : length - s, offsets[1] : offsets[1] + d] = True
    assert torch.allclose(res[touched], expected_res[touched])
    assert torch.equal(res[~touched], original[~touched])


@pytest.mark.parametrize("mode", ["set", "add", "mul"])
@pytest.mark.parametrize("offsets", [(0,), (0, 4), (4, 0)])
def test_scatter_inverts_the_gather(mode: str, offsets) -> None:
    g = torch.Generator().manual_seed(len(offsets) + len(mode))
    b, length, d = 3, 10, 4
    dst = torch.randn(b, length, d * len(offsets), generator=g)
    before = dst.clone()
    s, e = 2, 7
    o = torch.randn(len(offsets) * b, e - s, d, generator=g)
    mn.scatter(dst, o, s, e, offsets, d, mode)
    want = before.clone()
    pieces = [(want[:, s:e, offsets[0] : offsets[0] + d], o[:b])]
    if len(offsets) == 2:
        pieces.append((want[:, length - e : length - s, offsets[1] : offsets[1] + d], o[b:].flip(1, 2)))
    for view, src in pieces:
        {"set": view.copy_, "add": view.add_, "mul": view.mul_}[mode](src)
    assert torch.allclose(dst, want, rtol=1e-6, atol=1e-6)
