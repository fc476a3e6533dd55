"""The fused channels-last mixer (numba forward + backward) against its definition, and whole models' gradients on
the fast path against the ``ref`` scan backend for every configuration flag, PS and Ph."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("numba")

import caduceus_plugin
from caduceus_plugin import CaduceusConfig, CaduceusForMaskedLM
from caduceus_plugin.models.mamba import Mamba
from caduceus_plugin.ops import mixer
from caduceus_plugin.ops.mixer import mixer_inner, mixer_inner_ref
from caduceus_plugin.ops.numba.mixer import mixer_inner_numba

TOL = 1e-5


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp(min=1e-30)).item()


def layers(d: int, count: int, seed: int, conv_bias: bool = True, **kw: object) -> list[Mamba]:
    """Mamba layers with their SSM parameters moved off the initial values (A_log, D, conv bias all distinct)."""
    torch.manual_seed(seed)
    out = []
    for _ in range(count):
        m = Mamba(d, conv_bias=conv_bias, **kw)  # type: ignore[arg-type]
        with torch.no_grad():
            m.A_log.add_(torch.randn_like(m.A_log) * 0.3)
            m.D.add_(torch.randn_like(m.D))
            m.dt_proj.bias.add_(torch.randn_like(m.dt_proj.bias) * 0.3)
            if m.conv1d.bias is not None:
                m.conv1d.bias.normal_()
        out.append(m)
    return out


def compare(b: int, length: int, d: int, reverses: tuple[bool, ...], seed: int = 0, **kw: object) -> None:
    ms = layers(d, len(reverses), seed, **kw)
    dirs = [m.inner_params() for m in ms]
    e = ms[0].d_inner
    xz = torch.randn(b, length, 2 * e, generator=torch.Generator().manual_seed(seed + 1), requires_grad=True)
    wrt = [xz] + [p for dr in dirs for p in dr if p is not None]
    y_ref = mixer_inner_ref(xz, dirs, reverses)
    gy = torch.randn_like(y_ref)
    g_ref = torch.autograd.grad(y_ref, wrt, gy)
    y = mixer_inner_numba(xz, dirs, reverses)
    g = torch.autograd.grad(y, wrt, gy)
    assert y.shape == (b, length, e)
    assert rel(y, y_ref) < TOL
    names = ["xz"] + [
        f"dir{k}.{name}" for k, dr in enumerate(dirs) for name, p in zip(mixer.PARAMS, dr, strict=True) if p is not None
    ]
    for name, a, r in zip(names, g, g_ref, strict=True):
        assert rel(a, r) < TOL, name


@pytest.mark.parametrize(
    "b, length, d, reverses",
    [
        (1, 1, 16, (False,)),  # a single step
        (2, 37, 24, (False, True)),  # tied BiMamba: both directions on one xz
        (1, 300, 32, (True,)),  # reverse alone, more than one checkpoint interval
        (3, 129, 20, (False, True)),  # e = 40: a partial lane group
        (2, 530, 8, (True, False, True)),  # three directions, several forward chunks
    ],
)
def test_matches_definition_outputs_and_every_gradient(b: int, length: int, d: int, reverses: tuple[bool, ...]) -> None:
    compare(b, length, d, reverses)


@pytest.mark.parametrize("kw", [{"d_state": 5}, {"d_state": 12}, {"d_conv": 2}, {"d_conv": 7}, {"conv_bias": False},
                                {"expand": 1, "dt_rank": 3}])  # fmt: skip
def test_matches_definition_for_other_shapes(kw: dict[str, object]) -> None:
    compare(2, 203, 24, (False, True), seed=3, **kw)


@pytest.mark.parametrize("bias", [False, True])
def test_in_proj_inside_the_op_matches_definition(bias: bool) -> None:
    """With ``in_proj`` the op takes u (here a strided strand view) and recomputes xz in its backward."""
    ms = layers(16, 2, 8)
    dirs = [m.inner_params() for m in ms]
    g = torch.Generator().manual_seed(9)
    h = torch.randn(2, 70, 32, generator=g, requires_grad=True)
    w = torch.randn(2 * ms[0].d_inner, 16, generator=g, requires_grad=True)
    b = torch.randn(2 * ms[0].d_inner, generator=g, requires_grad=True) if bias else None
    u = h[..., 16:]
    wrt = [h, w] + ([b] if bias else []) + [p for dr in dirs for p in dr]
    y_ref = mixer_inner_ref(torch.nn.functional.linear(u, w, b), dirs, (False, True))
    gy = torch.randn_like(y_ref)
    g_ref = torch.autograd.grad(y_ref, wrt, gy)
    y = mixer_inner_numba(u, dirs, (False, True), in_proj=(w, b))
    assert rel(y, y_ref) < TOL
    for k, (a, r) in enumerate(zip(torch.autograd.grad(y, wrt, gy), g_ref, strict=True)):
        assert rel(a, r) < TOL, k
    with torch.no_grad():
        assert rel(mixer_inner_numba(u, dirs, (False, True), in_proj=(w, b)), y_ref) < TOL


def test_no_grad_forward_and_partial_requires_grad() -> None:
    (m,) = layers(16, 1, 4)
    dirs = [m.inner_params()]
    xz = torch.randn(2, 50, 2 * m.d_inner)
    with torch.no_grad():
        y0 = mixer_inner_numba(xz, dirs, [True])
    assert rel(y0, mixer_inner_ref(xz, dirs, [True])) < TOL
    (g,) = torch.autograd.grad(mixer_inner_numba(xz, dirs, [True]).sum(), [m.A_log])
    (g_ref,) = torch.autograd.grad(mixer_inner_ref(xz, dirs, [True]).sum(), [m.A_log])
    assert rel(g, g_ref) < TOL


def test_bf16_input_gives_bf16_output_and_gradient() -> None:
    (m,) = layers(16, 1, 5)
    xz = torch.randn(1, 64, 2 * m.d_inner).bfloat16().requires_grad_()
    y = mixer_inner_numba(xz, [m.inner_params()], [False])
    assert y.dtype == torch.bfloat16
    (g,) = torch.autograd.grad(y.float().sum(), [xz])
    assert g.dtype == torch.bfloat16
    (g_ref,) = torch.autograd.grad(mixer_inner_ref(xz.float(), [m.inner_params()], [False]).sum(), [xz])
    assert rel(g.float(), g_ref.float()) < 2e-2


def test_dispatch_follows_the_scan_backend() -> None:
    (m,) = layers(16, 1, 6)
    xz = torch.randn(1, 20, 2 * m.d_inner)
    with caduceus_plugin.scan_backend("chunked"):
        assert not mixer.fused_available("cpu")
        y_chunked = mixer_inner(xz, [m.inner_params()], [False])
    assert mixer.fused_available("cpu")
    assert rel(mixer_inner(xz, [m.inner_params()], [False]), y_chunked) < TOL


def test_rejects_a_wrong_number_of_tensors() -> None:
    (m,) = layers(16, 1, 7)
    with pytest.raises(ValueError, match="7 tensors per direction"):
        mixer_inner_numba(torch.randn(1, 4, 2 * m.d_inner), [m.inner_params()[:6]], [False])


# ------------------------------------------------------------------------------------------------ whole models

CONFIGS = {
    "ps": dict(rcps=True),
    "ph": dict(rcps=False),
    "ps_untied": dict(rcps=True, bidirectional_weight_tie=False),
    "ph_ew_multiply": dict(rcps=False, bidirectional_strategy="ew_multiply"),
    "ps_ew_multiply_untied": dict(rcps=True, bidirectional_strategy="ew_multiply", bidirectional_weight_tie=False),
    "ph_unidirectional": dict(rcps=False, bidirectional=False),
    "ps_layernorm_fp32_residual": dict(rcps=True, rms_norm=False, residual_in_fp32=True),
    "ps_no_half_swap": dict(rcps=True, rcps_fused_half_swap=False),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("checkpointing", [False, True])
def test_model_gradients_equal_the_ref_backend(name: str, checkpointing: bool) -> None:
    """Fast path (fused mixer, flip-free strands and norms, residual-only checkpoints) vs the ``ref`` scan through
    the module-by-module path: loss and every parameter's gradient."""
    torch.manual_seed(0)
    config = CaduceusConfig(d_model=24, n_layer=3, **CONFIGS[name])  # type: ignore[arg-type]
    model = CaduceusForMaskedLM(config)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, Mamba):
                mod.A_log.add_(torch.randn_like(mod.A_log) * 0.3)
                mod.D.add_(torch.randn_like(mod.D))
    model.backbone.gradient_checkpointing = checkpointing
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(7, 11, (2, 61), generator=g)
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.3, ids, -100)
    results = {}
    for backend in ("ref", "numba"):
        model.zero_grad()
        with caduceus_plugin.scan_backend(backend):
            loss = model(ids, labels=labels).loss
            loss.backward()
        results[backend] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    loss_ref, grads_ref = results["ref"]
    loss, grads = results["numba"]
    assert rel(loss, loss_ref) < TOL
    assert grads.keys() == grads_ref.keys()
    for n, gr in grads_ref.items():
        assert rel(grads[n], gr) < TOL, n


def test_automatic_checkpointing_recomputes_as_few_layers_as_the_budget_allows() -> None:
    from caduceus_plugin.models.caduceus import modeling

    per_layer = modeling.saved_activation_bytes(1, 1000, 64, 1)
    assert modeling.checkpointed_layers(1, 1000, 64, 4, budget=4 * per_layer) == 0
    k = modeling.checkpointed_layers(1, 1000, 64, 4, budget=3 * per_layer)
    kept = 4 * 1000 * 64

    def total(j: int) -> int:
        return (4 - j) * per_layer + j * kept

    assert 0 < k < 4 and total(k) <= 3 * per_layer < total(k - 1)  # enough, and no more than needed
    assert modeling.checkpointed_layers(1, 1000, 64, 4, budget=0) == 4
    # the released 7.7M shape: nothing recomputed at 2 kbp, some layers at 8 kbp, every layer at 131 kbp
    assert modeling.checkpointed_layers(1, 2048, 512, 16) == 0
    assert 0 < modeling.checkpointed_layers(1, 8192, 512, 16) < 16
    assert modeling.checkpointed_layers(1, 131072, 512, 16) == 16


def test_model_under_bf16_autocast_trains_close_to_float32() -> None:
    torch.manual_seed(0)
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=32, n_layer=2, rcps=True))
    ids = torch.randint(7, 11, (2, 80), generator=torch.Generator().manual_seed(2))
    model(ids, labels=ids).loss.backward()
    g32 = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(ids, labels=ids).loss
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32, n
        assert rel(p.grad, g32[n]) < 0.1, n
