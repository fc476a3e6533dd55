"""Where the time of one Caduceus inference forward goes: projections, scan, conv, norms and copies.

    .venv/bin/python benchmarks/profile_inference.py                       # PS 7.7M, 32 kbp, float32 and bf16
    .venv/bin/python benchmarks/profile_inference.py --model caduceus_ph --length 131072 --matmul fp32
    .venv/bin/python benchmarks/profile_inference.py --weights caduceus_plugin/weights/grch37_chr20_ps_2m \
        --length 1000 --batch 8 --matmul fp32                  # the predict regime of the built-in model

Times the pieces of the length-chunked inference path (``caduceus_plugin.models.caduceus.streaming``) with wall-clock
timers around each call, in one process, after a warm-up forward: ``projections`` (in_proj, x_proj, dt_proj,
out_proj), ``scan`` and ``conv + SiLU`` (the numba kernels on CPU), ``norm + strand gather`` (the RMSNorm of each
strand and the reverse strand's flip into scan order; on the numba path also the residual add, done in the same
kernel), ``write back`` (results into the residual buffers), and the rest (Python, the residual adds of the torch
path, final norm). Random weights in the configuration of the released 131k checkpoints, or ``--weights DIR``'s
checkpoint; ``--batch B`` sequences of ``--length`` per forward, the forward repeated ``--repeat`` times.
Prints one table per matmul dtype. These machines are shared: read the shares, not the seconds.
"""

from __future__ import annotations

import argparse
import collections
import time


def profile(
    model_name: str, length: int, matmul: str, *, weights: str | None = None, batch: int = 1, repeat: int = 1
) -> tuple[float, dict[str, float]]:
    import torch

    from caduceus_plugin import CaduceusForMaskedLM
    from caduceus_plugin.models.caduceus import streaming
    from caduceus_plugin.ops.numba import stream as mamba_numba
    from caduceus_plugin.registry.specs import checkpoint_config

    torch.manual_seed(0)
    if weights:
        from caduceus_plugin.models.caduceus.checkpoint import from_pretrained

        net = from_pretrained(weights)
    else:
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
    ids = torch.randint(7, 11, (batch, length))
    try:
        with torch.inference_mode():
            net.caduceus(ids[:, : min(length, 4096)])
            spent.clear()
            t0 = time.perf_counter()
            for _ in range(repeat):
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
    parser.add_argument("--weights", help="a checkpoint directory instead of random 7.7M weights")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="forwards timed (tokens/s counts them all)")
    args = parser.parse_args()
    import torch

    from caduceus_plugin import resolve_backend

    what = args.weights or f"{args.model} 7.7M"
    print(f"# {what}, {args.length:,} bp, batch {args.batch} x {args.repeat} forwards, "
          f"scan backend {resolve_backend('cpu')}, {torch.get_num_threads()} threads")
    for matmul in args.matmul:
        total, spent = profile(
            args.model, args.length, matmul, weights=args.weights, batch=args.batch, repeat=args.repeat
        )
        spent["rest (Python, final norm)"] = total - sum(spent.values())
        print(f"\n{matmul} projections: {total:.2f} s, {args.length * args.batch * args.repeat / total:,.0f} tokens/s")
        print(f"{'part':<42} {'seconds':>8} {'share':>6}")
        for label, sec in sorted(spent.items(), key=lambda kv: -kv[1]):
            print(f"{label:<42} {sec:>8.2f} {100 * sec / total:>5.1f}%")


if __name__ == "__main__":
    main()
