"""Tokens/s and peak memory of the whole Caduceus forward with each scan backend, side by side in one run.

    .venv/bin/python benchmarks/scan_speed.py [--model caduceus_ps] [--lengths 1024 4096 16384]
                                              [--backends ref chunked numba] [--batch 1] [--repeats 2]

Every (backend, length) cell runs in a fresh subprocess so that its peak resident memory (ru_maxrss) is its own.
The model is the 7.7M-parameter configuration of the released 131k checkpoints (d_model 256, 16 layers), random
weights, float32, inference mode. The first call warms up (numba compiles, allocator settles) and is not timed.
Ratios are printed against the first backend in the list (the ``ref`` baseline by default): these machines are
shared, so compare ratios measured in the same run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

TIMEOUT_S = 900


def worker(model: str, backend: str, length: int, batch: int, repeats: int) -> dict:
    import torch

    from caduceus_plugin import CaduceusForMaskedLM, scan_backend
    from caduceus_plugin.specs import checkpoint_config

    torch.manual_seed(0)
    net = CaduceusForMaskedLM(checkpoint_config(model, "131k_d256_l16")).eval()
    ids = torch.randint(7, 11, (batch, length))
    with scan_backend(backend), torch.inference_mode():
        net.caduceus(ids[:, : min(length, 256)])  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            net.caduceus(ids)
            times.append(time.perf_counter() - t0)
    best = min(times)
    return {
        "backend": backend,
        "length": length,
        "batch": batch,
        "seconds": best,
        "tokens_per_s": batch * length / best,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def run_cell(args: argparse.Namespace, backend: str, length: int) -> dict:
    cmd = [sys.executable, __file__, "--_worker", backend, str(length), "--model", args.model]
    cmd += ["--batch", str(args.batch), "--repeats", str(args.repeats)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"backend": backend, "length": length, "error": f"timeout > {TIMEOUT_S}s"}
    if proc.returncode != 0:
        return {"backend": backend, "length": length, "error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="caduceus_ps", choices=["caduceus_ps", "caduceus_ph"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--backends", nargs="+", default=["ref", "chunked", "numba"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--_worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        backend, length = args._worker
        print(json.dumps(worker(args.model, backend, int(length), args.batch, args.repeats)))
        return

    import torch

    print(f"# {args.model} 131k_d256_l16 config (7.7M params), batch {args.batch}, float32, inference")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    header = f"{'length':>8} {'backend':>9} {'tokens/s':>10} {'seconds':>9} {'peak GB':>8} {'x ' + args.backends[0]:>9}"
    print(header)
    print("-" * len(header))
    for length in args.lengths:
        base = None
        for backend in args.backends:
            r = run_cell(args, backend, length)
            if "error" in r:
                print(f"{length:>8} {backend:>9}  error: {r['error']}")
                continue
            base = base or r["tokens_per_s"]
            print(f"{length:>8} {backend:>9} {r['tokens_per_s']:>10.0f} {r['seconds']:>9.2f} "
                  f"{r['peak_rss_gb']:>8.2f} {r['tokens_per_s'] / base:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
