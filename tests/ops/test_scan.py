"""Scan backends against the sequential reference, the backend switch, and memory growth of the chunked scan."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import caduceus_plugin
from caduceus_plugin.ops import scan
from caduceus_plugin.ops.scan import (
    BackendUnavailableError,
    UnknownBackendError,
    resolve_backend,
    selective_scan,
    selective_scan_chunked,
    selective_scan_ref,
)
from tests.conftest import CPU_BACKENDS, rel_err


def make_inputs(b: int, e: int, n: int, length: int, seed: int, big_decay: bool = False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, e, length, generator=g)
    delta = torch.randn(b, e, length, generator=g) * 0.5 - 1
    A = -torch.exp(torch.randn(e, n, generator=g) * 0.5 + torch.log(torch.arange(1, n + 1).float()))
    if big_decay:
        A = A * 1e3
    B = torch.randn(b, n, length, generator=g)
    C = torch.randn(b, n, length, generator=g)
    D = torch.randn(e, generator=g)
    z = torch.randn(b, e, length, generator=g)
    bias = torch.randn(e, generator=g) * 0.3
    return x, delta, A, B, C, D, z, bias


FAST = [b for b in CPU_BACKENDS if b != "ref"]


@pytest.mark.parametrize("backend", FAST)
@settings(max_examples=12, deadline=None)
@given(
    b=st.integers(1, 2),
    e=st.integers(1, 12),
    n=st.integers(1, 8),
    length=st.sampled_from([1, 2, 7, 63, 64, 65, 129, 200, 300]),
    options=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    seed=st.integers(0, 1000),
)
def test_fast_scan_matches_ref(backend: str, b: int, e: int, n: int, length: int, options, seed: int) -> None:
    use_d, use_z, use_bias = options
    x, delta, A, B, C, D, z, bias = make_inputs(b, e, n, length, seed)
    args = [x, delta, A, B, C]
    leaves = [t.requires_grad_(True) for t in (*args, D, z, bias)]
    kw = dict(D=D if use_d else None, z=z if use_z else None, delta_bias=bias if use_bias else None)
    y_ref = selective_scan_ref(*args, **kw, delta_softplus=True)
    y = selective_scan(*args, **kw, delta_softplus=True, backend=backend)
    assert rel_err(y, y_ref) < 1e-5
    grad_out = torch.randn_like(y)
    g_ref = torch.autograd.grad(y_ref, leaves, grad_out, allow_unused=True)
    g = torch.autograd.grad(y, leaves, grad_out, allow_unused=True)
    for name, a, r in zip("x delta A B C D z bias".split(), g, g_ref):
        if r is None:
            assert a is None or a.abs().sum() == 0, name
        else:
            assert rel_err(a, r) < 1e-5, name


@pytest.mark.parametrize("backend", FAST)
def test_fast_scan_without_softplus_and_huge_decay(backend: str) -> None:
    x, delta, A, B, C, D, z, _ = make_inputs(2, 5, 4, 77, 1, big_decay=True)
    dt = torch.nn.functional.softplus(delta)  # positive step sizes given directly
    y_ref = selective_scan_ref(x, dt, A, B, C, D, z, delta_softplus=False)
    y = selective_scan(x, dt, A, B, C, D, z, delta_softplus=False, backend=backend)
    assert torch.isfinite(y).all()
    assert rel_err(y, y_ref) < 1e-5


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize(("b", "e", "n", "length"), [(0, 3, 2, 5), (2, 0, 2, 5), (2, 3, 0, 5), (2, 3, 2, 0)])
def test_empty_input_answered_before_the_backend(backend: str, b: int, e: int, n: int, length: int) -> None:
    x, delta, A, B, C, D, z, bias = make_inputs(b, e, n, length, 4)
    h0 = torch.randn(b, e, n)
    y_ref, h_ref = selective_scan_ref(x, delta, A, B, C, D, z, bias, h0=h0, return_last_state=True)
    y, h = selective_scan(x, delta, A, B, C, D, z, bias, h0=h0, return_last_state=True, backend=backend)
    assert y.shape == (b, e, length) and torch.equal(y, y_ref) and torch.equal(h, h_ref)
    assert torch.equal(selective_scan(x, delta, A, B, C, D, z, bias, backend=backend), y_ref)


@pytest.mark.parametrize("chunk", [1, 3, 16, 1000])
def test_chunk_sizes(chunk: int) -> None:
    x, delta, A, B, C, D, z, bias = make_inputs(1, 4, 3, 50, 2)
    y_ref = selective_scan_ref(x, delta, A, B, C, D, z, bias)
    assert rel_err(selective_scan_chunked(x, delta, A, B, C, D, z, bias, chunk_size=chunk), y_ref) < 1e-5


def test_half_precision_inputs_computed_in_float32() -> None:
    x, delta, A, B, C, D, z, bias = make_inputs(1, 4, 3, 40, 3)
    args = [t.bfloat16() for t in (x, delta)] + [A, B.bfloat16(), C.bfloat16()]
    y_ref = selective_scan_ref(*args, D, z.bfloat16(), bias)
    for backend in FAST:
        y = selective_scan(*args, D, z.bfloat16(), bias, backend=backend)
        assert y.dtype == torch.bfloat16
        assert rel_err(y.float(), y_ref.float()) < 1e-2  # bf16 output rounding only


def test_model_backends_agree() -> None:
    from tests.conftest import random_ids, tiny_model

    model = tiny_model(4, n_layer=2)
    ids = random_ids(2, 70, 4)
    outs = {}
    for backend in CPU_BACKENDS:
        with caduceus_plugin.scan_backend(backend):
            out = model(ids)
            (grad,) = torch.autograd.grad(
                out.logits.square().mean(), [model.backbone.layers[0].mixer.submodule.mamba_fwd.A_log]
            )
        outs[backend] = (out.logits.detach(), grad)
    for backend, (logits, grad) in outs.items():
        assert rel_err(logits, outs["ref"][0]) < 1e-5, backend
        assert rel_err(grad, outs["ref"][1]) < 1e-5, backend


# ------------------------------------------------------------------------------------------------ the switch


def test_switch_env_setter_and_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADUCEUS_SCAN_BACKEND", "ref")
    assert resolve_backend("cpu") == "ref"
    caduceus_plugin.set_scan_backend("chunked")
    assert resolve_backend("cpu") == "chunked"
    with caduceus_plugin.scan_backend("ref"):
        assert resolve_backend("cpu") == "ref"
    assert resolve_backend("cpu") == "chunked"
    caduceus_plugin.set_scan_backend(None)
    monkeypatch.delenv("CADUCEUS_SCAN_BACKEND")
    assert resolve_backend("cpu") == ("numba" if scan.numba_available() else "chunked")


def test_switch_rejects_unknown_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnknownBackendError, match="choose one of"):
        caduceus_plugin.set_scan_backend("fast")
    monkeypatch.setenv("CADUCEUS_SCAN_BACKEND", "triton2")
    with pytest.raises(UnknownBackendError, match="CADUCEUS_SCAN_BACKEND"):
        resolve_backend("cpu")


def test_forcing_unavailable_backend_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    caduceus_plugin.set_scan_backend("mamba_ssm")
    with pytest.raises(BackendUnavailableError, match="needs CUDA tensors"):
        resolve_backend("cpu")
    monkeypatch.setattr(scan, "mamba_ssm_available", lambda: False)
    with pytest.raises(BackendUnavailableError, match="pip install"):
        resolve_backend("cuda")
    caduceus_plugin.set_scan_backend("numba")
    monkeypatch.setattr(scan, "numba_available", lambda: False)
    with pytest.raises(BackendUnavailableError, match="pip install numba"):
        resolve_backend("cpu")


# ------------------------------------------------------------------------------------------------ memory

_MEMORY_PROBE = r"""
import json, resource, sys, torch
from caduceus_plugin.ops.scan import selective_scan
backend, length = sys.argv[1], int(sys.argv[2])
e, n = 64, 16
x = torch.randn(1, e, length); delta = torch.randn(1, e, length) - 1
A = -torch.rand(e, n) - 0.5; B = torch.randn(1, n, length); C = torch.randn(1, n, length)
selective_scan(x[..., :256], delta[..., :256], A, B[..., :256], C[..., :256], backend=backend)  # warm up / compile
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.no_grad():
    y = selective_scan(x, delta, A, B, C, backend=backend)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"delta_mb": (peak - base) / 1024}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", FAST)
def test_scan_memory_grows_linearly(backend: str) -> None:
    """At L=131072 a full (b, e, l, n) buffer would be 512 MiB; the inputs themselves are ~45 MiB."""

    def peak(length: int) -> float:
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, backend, str(length)], capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)["delta_mb"]

    small, large = peak(1 << 15), peak(1 << 17)
    assert large < 160, f"peak grew by {large:.0f} MiB at L=131072"
    assert large < 4 * max(small, 8) + 40, (small, large)  # linear (x4 length), not worse


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_backends_match_cpu_ref() -> None:
    from tests.conftest import random_ids, tiny_model

    model = tiny_model(5)
    ids = random_ids(2, 300, 5)
    with torch.no_grad(), caduceus_plugin.scan_backend("ref"):
        expected = model(ids).logits
    model = model.cuda()
    for backend in ["chunked", *(["mamba_ssm"] if scan.mamba_ssm_available() else [])]:
        with torch.no_grad(), caduceus_plugin.scan_backend(backend):
            assert rel_err(model(ids.cuda()).logits.cpu(), expected) < 1e-4, backend


def test_bf16_autocast_keeps_scan_and_norms_in_float32() -> None:
    """bf16 autocast runs the projections in bf16; the scan and norms stay float32. Tolerance stated: 5e-2."""
    from tests.conftest import random_ids, tiny_model

    model = tiny_model(6, d_model=32)
    ids = random_ids(2, 64, 6)
    seen = []
    original = scan._IMPLS["chunked"]

    def spy(x, delta, A, *args, **kwargs):
        result = original(x, delta, A, *args, **kwargs)
        y = result[0] if isinstance(result, tuple) else result
        seen.append((x.dtype, A.dtype, y.dtype))
        return result

    with torch.no_grad(), caduceus_plugin.scan_backend("chunked"):
        expected = model.caduceus(ids, stream=False)
        scan._IMPLS["chunked"] = spy
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                for stream in (False, True):
                    hidden = model.caduceus(ids, stream=stream)
                    assert hidden.dtype == torch.float32  # final norm output
                    assert rel_err(hidden.float(), expected) < 5e-2
        finally:
            scan._IMPLS["chunked"] = original
    assert seen and all(a == torch.float32 for _, a, _ in seen)
    assert any(x == torch.bfloat16 for x, _, _ in seen)  # the projections really ran in bf16
