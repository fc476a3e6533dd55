"""The length-chunked inference path computes the same function as the full (autograd) forward."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import caduceus_plugin
from caduceus_plugin.models.caduceus.streaming import backbone_stream
from tests.conftest import CADUCEUS_FIXTURES, CPU_BACKENDS, random_ids, rel_err, tiny_model

CONFIGS = [
    dict(),
    dict(rcps=False),
    dict(fused_add_norm=False),
    dict(bidirectional=False),
    dict(rcps=False, bidirectional_weight_tie=False),
    dict(bidirectional_strategy="ew_multiply"),
    dict(residual_in_fp32=True),
    dict(rms_norm=False, n_layer=3),
]


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
@pytest.mark.parametrize("chunk_len", [1, 7, 64])
@pytest.mark.parametrize("stash", [0, 1 << 30])
def test_stream_equals_full_forward(overrides: dict, chunk_len: int, stash: int) -> None:
    model = tiny_model(1, **overrides)
    ids = random_ids(2, 53, 1, with_specials=True)
    with torch.no_grad():
        full = model.caduceus(ids, stream=False)
        streamed = backbone_stream(model.backbone, model.backbone.embeddings(ids), chunk_len, stash)
    assert rel_err(streamed, full) < 1e-6


def test_automatic_chunk_length_keeps_a_piece_within_its_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    from caduceus_plugin.models.caduceus import streaming

    mib = 2**20
    assert streaming.PIECE_BYTES == 16 * mib
    # the 7.7M model at 131 kbp, batch 1 (2 strands, d_inner 512): the setting's 2048 (4 MiB pieces)
    assert streaming.auto_chunk_len(2, 512) == 2048
    # the 2M built-in model on 8 windows (16 strand rows): 256 positions, 16 MiB of xz
    assert streaming.auto_chunk_len(16, 512) == 256 and 16 * 256 * 2 * 512 * 4 == streaming.PIECE_BYTES
    assert streaming.auto_chunk_len(4096, 512) == 32  # never below 32 positions
    assert streaming.auto_chunk_len(2, 512, cap=100) == 100
    monkeypatch.setenv("CADUCEUS_CHUNK_LEN", "512")  # the setting is the most
    assert streaming.auto_chunk_len(2, 512) == 512
    # the backbone uses it when no chunk length is given; the pieces change nothing
    monkeypatch.setattr(streaming, "PIECE_BYTES", 2 * 40 * 2 * 32 * 4)  # d_inner 32: 40 positions for 2 strand rows
    model = tiny_model(1)
    seen: list[int] = []
    real = streaming.bimamba_stream
    monkeypatch.setattr(streaming, "bimamba_stream", lambda *a: seen.append(a[4]) or real(*a))
    ids = random_ids(1, 53, 1, with_specials=True)
    with torch.no_grad():
        full = model.caduceus(ids, stream=False)
        streamed = backbone_stream(model.backbone, model.backbone.embeddings(ids))
    assert model.config.d_inner == 32 and set(seen) == {40}  # two pieces of the 53 positions
    assert rel_err(streamed, full) < 1e-6


@pytest.mark.parametrize("rcps", [True, False])
def test_numba_path_does_the_norms_and_strand_flips_in_its_kernels(rcps: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    mn = pytest.importorskip("caduceus_plugin.ops.numba.stream")
    calls = {"norm_gather": 0, "scatter": 0}
    for name in calls:
        original = getattr(mn, name)

        def spy(*args, _original=original, _name=name, **kwargs):  # type: ignore[no-untyped-def]
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(mn, name, spy)
    model = tiny_model(1, rcps=rcps, n_layer=3)
    ids = random_ids(2, 40, 1, with_specials=True)
    with torch.no_grad(), caduceus_plugin.scan_backend("numba"):
        full = model.caduceus(ids, stream=False)
        streamed = backbone_stream(model.backbone, model.backbone.embeddings(ids), 16, 0)
    assert calls["norm_gather"] >= 3 * 3 and calls["scatter"] >= 3 * 3  # 3 layers x 3 pieces, at least
    assert rel_err(streamed, full) < 1e-6


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", ["ps_d32_l2_fused", "ph_d24_l2_fused"])
def test_fixture_parity_both_paths(name: str, stream: bool, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADUCEUS_CHUNK_LEN", "24")  # the fixtures are 64 long: several chunks
    folder = CADUCEUS_FIXTURES / name
    expected = load_file(str(folder / "expected.safetensors"))
    model = caduceus_plugin.from_pretrained(folder)
    with torch.no_grad(), caduceus_plugin.scan_backend(backend):
        hidden = model.caduceus(expected["input_ids"], stream=stream)
    assert rel_err(hidden, expected["hidden_states"]) < 1e-5


def test_no_grad_defaults_to_stream_and_grad_to_full(monkeypatch: pytest.MonkeyPatch) -> None:
    import caduceus_plugin.models.caduceus.streaming as streaming

    calls = []
    original = streaming.backbone_stream
    monkeypatch.setattr(streaming, "backbone_stream", lambda *a, **k: calls.append(1) or original(*a, **k))
    model = tiny_model(0)
    ids = random_ids(1, 10)
    with torch.no_grad():
        model(ids)
    assert calls == [1]
    model(ids).logits.sum().backward()
    assert calls == [1]


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    model = tiny_model(2, n_layer=3)
    ids = random_ids(2, 40, 2)
    labels = torch.where(torch.rand(ids.shape, generator=torch.Generator().manual_seed(0)) < 0.3, ids, -100)
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.backbone.gradient_checkpointing = flag
        model(ids, labels=labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        assert rel_err(grads[1][name], g) < 1e-5, name


def _linear_dtypes(monkeypatch: pytest.MonkeyPatch) -> list[torch.dtype]:
    """Record the input dtype of every projection the streaming path runs (float32 ones through ``F.linear`` too)."""
    import caduceus_plugin.models.caduceus.streaming as streaming

    monkeypatch.setenv("CADUCEUS_CPU_GEMM", "torch")
    seen: list[torch.dtype] = []
    original = streaming.F.linear

    def spy(x, w, b=None):  # type: ignore[no-untyped-def]
        seen.append(x.dtype)
        assert w.dtype == x.dtype
        return original(x, w, b)

    monkeypatch.setattr(streaming.F, "linear", spy)
    return seen


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", ["ps_d32_l2_fused", "ph_d24_l2_fused"])
def test_bf16_matmuls_match_fixture_within_stated_tolerance(
    name: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bf16 projections (scan, conv, norms and residuals in float32): within 2e-2 of the authors' outputs, and not
    bitwise float32 (the projections really ran in bf16)."""
    monkeypatch.setenv("CADUCEUS_CHUNK_LEN", "24")
    folder = CADUCEUS_FIXTURES / name
    expected = load_file(str(folder / "expected.safetensors"))
    model = caduceus_plugin.from_pretrained(folder)
    seen = _linear_dtypes(monkeypatch)
    with torch.no_grad(), caduceus_plugin.scan_backend(backend):
        fp32 = model.caduceus(expected["input_ids"])
        assert set(seen) == {torch.float32}
        seen.clear()
        model.backbone.matmul_dtype = "bf16"
        hidden = model.caduceus(expected["input_ids"])
    assert seen and set(seen) == {torch.bfloat16}
    assert hidden.dtype == torch.float32
    assert rel_err(fp32, expected["hidden_states"]) < 1e-5
    err = rel_err(hidden, expected["hidden_states"])
    assert 1e-5 < err < 2e-2, err


def test_bf16_matmuls_keep_rc_equivariance_exact() -> None:
    """The bf16 path applies the same arithmetic to both strands: PS stays exactly RC-equivariant."""
    from caduceus_plugin.models.rcps import rc_hidden, rc_ids

    model = tiny_model(3)
    model.backbone.matmul_dtype = torch.bfloat16
    ids = random_ids(1, 40, 3)
    with torch.no_grad():
        out = model.caduceus(ids)
        out_rc = model.caduceus(rc_ids(ids, model.config.full_complement_map()))
    assert rel_err(rc_hidden(out_rc), out) < 1e-6


def test_bf16_matmuls_by_autocast_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from caduceus_plugin.models.caduceus.streaming import matmul_dtype, resolve_matmul_dtype

    cpu = torch.device("cpu")
    assert resolve_matmul_dtype(None, cpu) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert resolve_matmul_dtype(None, cpu) == torch.bfloat16
        assert resolve_matmul_dtype("fp32", cpu) is None  # an explicit choice wins
    monkeypatch.setenv("CADUCEUS_MATMUL_DTYPE", "bf16")
    assert resolve_matmul_dtype(None, cpu) == torch.bfloat16
    monkeypatch.setenv("CADUCEUS_MATMUL_DTYPE", "fp8")
    with pytest.raises(ValueError, match=r"\$CADUCEUS_MATMUL_DTYPE must be one of"):
        resolve_matmul_dtype(None, cpu)
    monkeypatch.delenv("CADUCEUS_MATMUL_DTYPE")
    with matmul_dtype("bf16"):
        assert resolve_matmul_dtype(None, cpu) == torch.bfloat16
        with matmul_dtype("fp32"):
            assert resolve_matmul_dtype(None, cpu) is None
        assert resolve_matmul_dtype("fp32", cpu) is None
    assert resolve_matmul_dtype(None, cpu) is None

    model = tiny_model(4, rcps=False)
    ids = random_ids(1, 30, 4)
    seen = _linear_dtypes(monkeypatch)
    with torch.no_grad():
        expected = model.caduceus(ids)
        seen.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = model.caduceus(ids)
    assert seen and set(seen) == {torch.bfloat16}
    assert hidden.dtype == torch.float32
    assert 0 < rel_err(hidden, expected) < 2e-2


def test_cpu_gemm_choice_and_same_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """float32 CPU projections go through oneDNN by default where it runs, through ``F.linear`` with
    ``CADUCEUS_CPU_GEMM=torch``; both give the full forward's result (float32 rounding apart); bad values are an
    InputError naming the variable."""
    import caduceus_plugin.models.caduceus.streaming as streaming
    from caduceus_plugin.errors import InputError
    from caduceus_plugin.ops import gemm

    monkeypatch.delenv("CADUCEUS_CPU_GEMM", raising=False)
    onednn = streaming.onednn_linear_available()
    assert streaming.cpu_gemm() == ("onednn" if onednn else "torch")
    calls: list[int] = []
    original = streaming.onednn_linear
    monkeypatch.setattr(streaming, "onednn_linear", lambda *a: calls.append(1) or original(*a))
    model = tiny_model(6)
    ids = random_ids(2, 50, 6)
    with torch.no_grad():
        full = model.caduceus(ids, stream=False)
        default = model.caduceus(ids)
        assert len(calls) > 0 if onednn else not calls
        calls.clear()
        monkeypatch.setenv("CADUCEUS_CPU_GEMM", "torch")
        assert streaming.cpu_gemm() == "torch"
        via_torch = model.caduceus(ids)
        assert not calls
    assert rel_err(default, via_torch) < 1e-5 and rel_err(default, full) < 1e-5
    monkeypatch.setenv("CADUCEUS_CPU_GEMM", "mkl")
    with pytest.raises(InputError, match=r"\$CADUCEUS_CPU_GEMM must be one of auto, onednn, torch, got 'mkl'"):
        streaming.cpu_gemm()
    monkeypatch.setattr(gemm, "onednn_linear_available", lambda: False)
    monkeypatch.setenv("CADUCEUS_CPU_GEMM", "onednn")
    with pytest.raises(InputError, match="has no oneDNN linear"):
        streaming.cpu_gemm()
    monkeypatch.setenv("CADUCEUS_CPU_GEMM", "auto")
    assert streaming.cpu_gemm() == "torch"


def test_malloc_reuse_cuts_page_faults_and_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU inference keeps freed memory for the next chunk (glibc): the same outputs with far fewer page faults once
    the heap has grown; ``CADUCEUS_MALLOC_TUNE=0`` turns it off; the block nests."""
    import resource

    import caduceus_plugin.models.caduceus.streaming as streaming

    if streaming._glibc() is None:
        pytest.skip("glibc only")
    model = tiny_model(7, d_model=64, n_layer=2)
    ids = random_ids(1, 8192, 7)

    def forward() -> tuple[torch.Tensor, int]:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        with torch.no_grad():
            out = backbone_stream(model.backbone, model.backbone.embeddings(ids), chunk_len=1024)
        return out, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    forward()  # numba compiled, torch warmed up
    monkeypatch.setenv("CADUCEUS_MALLOC_TUNE", "0")
    with streaming.malloc_reuse() as applied:
        assert applied is False
    plain, faults_plain = forward()
    monkeypatch.delenv("CADUCEUS_MALLOC_TUNE")
    with streaming.malloc_reuse() as outer:
        with streaming.malloc_reuse() as inner:
            assert outer and inner and streaming._malloc_depth == 2
        forward()  # the heap grows once
        reused, faults_reused = forward()  # ... and is reused
    assert streaming._malloc_depth == 0
    assert torch.equal(reused, plain)
    assert faults_reused * 4 < faults_plain, (faults_reused, faults_plain)
