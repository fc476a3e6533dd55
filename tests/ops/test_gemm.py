"""The CPU linear layer (oneDNN products where chosen) against ``F.linear``: values and every gradient."""

from __future__ import annotations

import pytest
import torch

from caduceus_plugin.ops import gemm
from caduceus_plugin.ops.gemm import linear, linear_ref


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("shape, bias", [((3, 50, 24), True), ((70, 16), False), ((2, 1, 5, 8), True)])
@pytest.mark.parametrize("gemm_choice", ["onednn", "torch"])
def test_linear_equals_f_linear_with_gradients(shape, bias, gemm_choice, monkeypatch: pytest.MonkeyPatch) -> None:
    if gemm_choice == "onednn" and not gemm.onednn_linear_available():
        pytest.skip("this torch build has no oneDNN linear")
    monkeypatch.setenv("CADUCEUS_CPU_GEMM", gemm_choice)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, requires_grad=True)
    w = torch.randn(12, shape[-1], generator=g, requires_grad=True)
    b = torch.randn(12, generator=g, requires_grad=True) if bias else None
    wrt = [t for t in (x, w, b) if t is not None]
    y_ref = linear_ref(x, w, b)
    gy = torch.randn_like(y_ref)
    grads_ref = torch.autograd.grad(y_ref, wrt, gy)
    y = linear(x, w, b)
    assert y.shape == y_ref.shape and rel(y, y_ref) < 1e-6
    for a, r in zip(torch.autograd.grad(y, wrt, gy), grads_ref, strict=True):
        assert a.shape == r.shape and rel(a, r) < 1e-6


def test_linear_on_a_strided_input_and_without_grad() -> None:
    g = torch.Generator().manual_seed(1)
    h = torch.randn(2, 30, 32, generator=g)
    w = torch.randn(8, 16, generator=g)
    half = h[..., 16:]  # a strand of an RCPS hidden tensor: row stride 32
    assert rel(linear(half, w), linear_ref(half, w)) < 1e-6
    with torch.no_grad():
        assert rel(linear(half, w), linear_ref(half, w)) < 1e-6


def test_cpu_float32_products_pins_highest_and_restores_the_hosts_setting() -> None:
    torch.set_float32_matmul_precision("medium")  # what gReLU's train / predict leave behind
    with gemm.cpu_float32_products("cpu"):
        assert torch.get_float32_matmul_precision() == "highest"
    assert torch.get_float32_matmul_precision() == "medium"
    with pytest.raises(ValueError), gemm.cpu_float32_products(torch.device("cpu")):
        raise ValueError("restored on the way out too")
    assert torch.get_float32_matmul_precision() == "medium"
    for device in ("cuda", "meta", None):  # the host's TF32 choice on GPUs is its own
        with gemm.cpu_float32_products(device):
            assert torch.get_float32_matmul_precision() == "medium"


def test_keeps_float32_reads_the_device_of_the_first_tensor_argument() -> None:
    seen = []

    @gemm.keeps_float32
    def f(ctx, x, scale=1.0):
        seen.append(torch.get_float32_matmul_precision())
        return x * scale

    torch.set_float32_matmul_precision("high")
    assert torch.equal(f(None, torch.ones(2), scale=2.0), torch.full((2,), 2.0))
    assert f(None, torch.ones(1, device="meta")).device.type == "meta"
    assert f(None, 3) == 3.0  # no tensor: no device to go by, the setting is left alone
    assert seen == ["highest", "high", "high"] and torch.get_float32_matmul_precision() == "high"


def test_nested_keeps_float32_hooks_only_the_outermost_outputs_and_still_pins_the_backward(monkeypatch) -> None:
    hooked, seen = [], []
    pin = gemm._pin_backward_of
    monkeypatch.setattr(gemm, "_pin_backward_of", lambda out: (hooked.append(out), pin(out)))

    @gemm.keeps_float32
    def inner(x):
        return x * 2.0

    @gemm.keeps_float32
    def outer(x):
        return inner(x) + 1.0

    @gemm.keeps_float32
    def fails(x):
        raise ValueError("boom")

    x = torch.ones(3, requires_grad=True)
    torch.set_float32_matmul_precision("medium")
    y = outer(x)
    assert len(hooked) == 1 and hooked[0] is y
    # the inner call's backward runs under the outer output's pin
    y.register_hook(lambda g: seen.append(torch.get_float32_matmul_precision()))
    y.sum().backward()
    assert seen == ["highest"] and torch.get_float32_matmul_precision() == "medium"
    assert torch.equal(x.grad, torch.full((3,), 2.0))
    # an exception leaves the nesting count where it was: the next top-level call hooks its outputs again
    with pytest.raises(ValueError):
        fails(x)
    inner(x)
    assert len(hooked) == 2


@pytest.mark.parametrize(
    "flags, want",
    [
        ("fpu sse2 avx2 fma avx512f avx512_bf16", True),  # Zen 4, Cooper Lake
        ("fpu sse2 avx2 fma avx512f amx_bf16 amx_tile", True),  # Sapphire Rapids
        ("fpu sse2 avx2 fma avx512f avx512bw", False),  # Skylake-SP: AVX-512 without bf16
        ("fpu sse2 avx2 fma", False),  # Zen 3
    ],
)
def test_cpu_info_reads_bf16_matrix_instructions(flags: str, want: bool, tmp_path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t: fpu\n")
    info = gemm.cpu_info(str(path))
    assert info == gemm.CpuInfo(name="Some CPU", bf16_matmul=want)


def test_cpu_info_unknown_without_cpuinfo(tmp_path) -> None:
    assert gemm.cpu_info(str(tmp_path / "absent")).bf16_matmul is None
    (tmp_path / "noflags").write_text("processor\t: 0\nmodel name\t: X\n")
    assert gemm.cpu_info(str(tmp_path / "noflags")) == gemm.CpuInfo(name="X", bf16_matmul=None)
