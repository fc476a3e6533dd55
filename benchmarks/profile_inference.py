"""Where the time of one Caduceus inference forward goes: projections, scan, conv, norms and copies.

    .venv/bin/python benchmarks/profile_inference.py                       # PS 7.7M, 32 kbp, float32 and bf16
    .venv/bin/python benchmarks/profile_inference.py --model caduceus_ph --length 131072 --matmul fp32

Times the pieces of the length-chunked inference path (``caduceus_plugin.models.caduceus.streaming``) with wall-clock
timers around each call, in one process, after a warm-up forward: ``projections`` (in_proj, x_proj, dt_proj,
out_proj), ``scan`` and ``conv + SiLU`` (the numba kernels on CPU), ``norm + strand gather`` (the RMSNorm of each
strand and the reverse strand's flip into scan order; on the numba path also the residual add, done in the same
kernel), ``write back`` (results into the residual buffers), and the rest (Python, the residual adds of the torch
path, final norm). Random weights in the configuration of the released 131k checkpoints.
Prints one table per matmul dtype. These machines are shared: read the shares, not the seconds.
"""

from __future__ import annotations

import argparse
import collections
import time


def profile(model_name: str, length: int, matmul: str) -> tuple[float, dict[str, float]]:
    import torch

    from caduceus_plugin import CaduceusForMaskedLM
    from caduceus_plugin.models.caduceus import streaming
    from caduceus_plugin.ops.numba import stream as mamba_numba
    from caduceus_plugin.registry.specs import checkpoint_config

    torch.manual_seed(0)
    net = CaduceusForMaskedLM(checkpoint_config(model_name, "131k_d256_l16")).eval()
    net.backbone.matmul_dtype = matmul
    spent: dict[str, float] = collections.defaultdict(float)
    patched: list[tuple[object, str, object]] = []

    def timed(owner: object, attr: str, label: str) -> None:
        original = getattr(owner, attr)

        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - t0

        patched.append((owner, attr, original))
        setattr(owner, attr, wrapper)

    timed(mamba_numba, "scan", "scan")
    timed(mamba_numba, "conv_silu", "conv + SiLU")
    timed(streaming._Linear, "__call__", "projections")
    bimamba_stream = streaming.bimamba_stream

    def bimamba_timed(bm, get, put, *args):  # type: ignore[no-untyped-def]
        def get_t(s: int, e: int) -> torch.Tensor:
            t0 = time.perf_counter()
            out = get(s, e)
            spent["norm + strand gather"] += time.perf_counter() - t0
            return out

        def put_t(s: int, e: int, o: torch.Tensor, mode: str) -> None:
            t0 = time.perf_counter()
            put(s, e, o, mode)
            spent["write back"] += time.perf_counter() - t0

        return bimamba_stream(bm, get_t, put_t, *args)

    patched.append((streaming, "bimamba_stream", bimamba_stream))
    streaming.bimamba_stream = bimamba_timed
    ids = torch.randint(7, 11, (1, length))
    try:
        with torch.inference_mode():
            net.caduceus(ids[:, : min(length, 4096)])
            spent.clear()
            t0 = time.perf_counter()
            net.caduceus(ids)
            total = time.perf_counter() - t0
    finally:
        for owner, attr, original in reversed(patched):
            setattr(owner, attr, original)
    return total, dict(spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="caduceus_ps", choices=("caduceus_ps", "caduceus_ph"))
    parser.add_argument("--length", type=int, default=32768)
    parser.add_argument("--matmul", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16"))
    args = parser.parse_args()
    import torch

    from caduceus_plugin import resolve_backend

    print(f"# {args.model} 7.7M, {args.length:,} bp, batch 1, scan backend {resolve_backend('cpu')}, "
          f"{torch.get_num_threads()} threads")
    for matmul in args.matmul:
        total, spent = profile(args.model, args.length, matmul)
        spent["rest (Python, final norm)"] = total - sum(spent.values())
        print(f"\n{matmul} projections: {total:.2f} s, {args.length / total:,.0f} tokens/s")
        print(f"{'part':<42} {'seconds':>8} {'share':>6}")
        for label, sec in sorted(spent.items(), key=lambda kv: -kv[1]):
            print(f"{label:<42} {sec:>8.2f} {100 * sec / total:>5.1f}%")


if __name__ == "__main__":
    main()
