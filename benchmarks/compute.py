"""Throughput and peak memory of the registered backbones against length and batch, with baselines in the same run.

    .venv/bin/python benchmarks/compute.py                      # default grid (about half an hour on 2 cores)
    .venv/bin/python benchmarks/compute.py --quick              # 1k/4k/16k only, a few minutes
    .venv/bin/python benchmarks/compute.py --lengths 131072 --models caduceus_ps --backends auto ref
    .venv/bin/python benchmarks/compute.py --models caduceus_ps hyenadna --backends auto auto+bf16 ref

Every cell runs in a fresh subprocess so its peak resident memory (``ru_maxrss``) is its own. Caduceus models are
the 7.7M-parameter configuration of the released 131k checkpoints (d_model 256, 16 layers); ``hyenadna`` is
HyenaDNA medium (6.6M); any other registered backbone (``enformer``, ``cnn``, third-party ones) runs in its default
configuration on one-hot input. Random weights, float32. ``infer`` cells time one forward of the backbone under
``torch.inference_mode`` after a short warm-up (numba compiles, allocator settles); ``train`` cells (Caduceus)
time forward + backward of the MLM loss (batch as given). Each figure is printed next to the baselines measured in
the same run on the same machine: the ``ref`` scan backend (run only up to ``--ref-max-len``; beyond that it takes
minutes per sequence) and HyenaDNA when it is among ``--models`` (and, for reference, the figures the speed issue
quotes for the authors' code, marked as quoted: HyenaDNA medium, and Caduceus-PS on mamba-ssm's reference scan).
A backend written ``NAME+bf16`` (e.g. ``auto+bf16``) runs the Caduceus projections in bf16 (inference cells only;
scan, conv, norms and residuals stay float32).

Writes ``benchmarks/results/compute.csv`` and ``benchmarks/results/compute.png`` (log-log throughput and memory
against length) and prints the table. These machines are shared: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
#: HyenaDNA medium 6.6M, authors' standalone code, on a 2-core machine like ours (speed issue's table): tokens/s.
HYENADNA_QUOTED = {4096: 7148, 32768: 4966, 131072: 3331}
#: Authors' Caduceus-PS 7.7M on mamba-ssm's reference scan, same machine class (speed issue's table): tokens/s
#: (131k: the issue's estimate of ~20 min per sequence).
AUTHORS_REF_QUOTED = {1024: 110, 4096: 100, 131072: round(131072 / 1200)}
CELL_TIMEOUT_S = 1800


def _time(net, forward, loss, full, warm, mode: str, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds per call of ``forward(full)`` (infer, under inference_mode) or ``loss(full).backward()`` (train),
    after one warm-up call on ``warm`` (numba compiles, allocator settles)."""
    import torch

    times = []
    if mode == "infer":
        net.eval()
        with torch.inference_mode():
            forward(warm)
            for _ in range(repeats):
                t0 = time.perf_counter()
                forward(full)
                times.append(time.perf_counter() - t0)
    else:
        net.train()
        loss(warm).backward()
        for _ in range(repeats):
            net.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss(full).backward()
            times.append(time.perf_counter() - t0)
    return times


def _cell(model: str, backend: str, length: int, batch: int, mode: str, repeats: int) -> dict:
    import torch

    torch.manual_seed(0)
    if model.startswith("caduceus_"):
        from caduceus_plugin import CaduceusForMaskedLM, resolve_backend, scan_backend
        from caduceus_plugin.registry.specs import checkpoint_config

        net = CaduceusForMaskedLM(checkpoint_config(model, "131k_d256_l16"))
        ids = torch.randint(7, 11, (batch, length))
        labels = torch.where(torch.rand(ids.shape) < 0.15, ids, -100)
        backend, _, matmul = backend.partition("+")
        net.backbone.matmul_dtype = matmul or None
        with scan_backend(backend):
            used = resolve_backend("cpu") + (f"+{matmul}" if matmul else "")
            times = _time(net, net.caduceus, lambda x: net(x, labels=labels[:, : x.shape[1]]).loss, ids,
                          ids[:, : min(length, 512)], mode, repeats)
    elif model == "hyenadna":  # HyenaDNA medium (6.6M; d_model 256, 8 layers), filters for max(160k, length)
        from caduceus_plugin.models.hyenadna import HyenaDNA
        from caduceus_plugin.registry.specs import checkpoint_config

        net = HyenaDNA(checkpoint_config("hyenadna", "medium_160k", l_max=max(160002, length + 2)))
        ids = torch.randint(7, 11, (batch, length))
        used = "fft"
        times = _time(net, net, lambda x: net(x).float().pow(2).mean(), ids, ids[:, : min(length, 512)], mode,
                      repeats)
    else:  # any other registered backbone (e.g. enformer, cnn) in its default configuration, on one-hot input
        from caduceus_plugin.registry.components import get_registry

        net = get_registry().build(model)
        x = torch.nn.functional.one_hot(torch.randint(0, 4, (batch, length)), 4).float().transpose(1, 2)
        used = "torch"
        times = _time(net, net, lambda v: net(v).pow(2).mean(), x, x[..., : min(length, 2048)], mode, repeats)
    best = min(times)
    return {
        "model": model,
        "backend": used,
        "mode": mode,
        "length": length,
        "batch": batch,
        "seconds": round(best, 4),
        "tokens_per_s": round(batch * length / best, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    }


def run_cell(model: str, backend: str, length: int, batch: int, mode: str, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--_cell", json.dumps([model, backend, length, batch, mode, repeats])]
    row = {"model": model, "backend": backend, "mode": mode, "length": length, "batch": batch}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CELL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return row | {"error": f"timeout > {CELL_TIMEOUT_S}s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["killed"])[-1]
        return row | {"error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plan(args: argparse.Namespace) -> list[tuple]:
    cells = []
    for model in args.models:
        caduceus = model.startswith("caduceus_")
        # no scan backend, no bf16 option: one path
        backends = args.backends if caduceus else [b for b in args.backends if "+" not in b][:1]
        for length in args.lengths:
            for backend in backends:
                if backend == "ref" and length > args.ref_max_len:
                    continue
                cells.append((model, backend, length, 1, "infer", 1 if length >= 131072 else args.repeats))
        for batch in args.batches:
            if batch != 1:
                cells.append((model, args.backends[0], args.batch_len, batch, "infer", args.repeats))
        if args.train_len and caduceus:
            for backend in backends:
                if "+" in backend:  # bf16 projections: the inference path only
                    continue
                if backend != "ref" or args.train_len <= args.ref_max_len:
                    cells.append((model, backend, args.train_len, 1, "train", 1))
    return cells


def print_row(r: dict, baseline: dict | None, hyena_measured: dict | None = None) -> None:
    if "error" in r:
        head = f"{r['model']:>12} {r['mode']:>5} {r['length']:>8} {r['batch']:>3} {r['backend']:>8}"
        print(f"{head}  error: {r['error']}")
        return
    ratio = ""
    if baseline and baseline is not r:
        ratio = f"{r['tokens_per_s'] / baseline['tokens_per_s']:.1f}x {baseline['backend']}"
    hyena = HYENADNA_QUOTED.get(r["length"]) if r["mode"] == "infer" and r["batch"] == 1 else None
    hy = f"{r['tokens_per_s'] / hyena:.2f}x HyenaDNA (quoted {hyena})" if hyena else ""
    if hyena_measured and r["model"] != "hyenadna" and "error" not in hyena_measured:
        hy = f"{r['tokens_per_s'] / hyena_measured['tokens_per_s']:.2f}x HyenaDNA (measured, this run)  " + hy
    authors = AUTHORS_REF_QUOTED.get(r["length"])
    if authors and r["model"] == "caduceus_ps" and r["mode"] == "infer" and r["batch"] == 1:
        hy += f"  {r['tokens_per_s'] / authors:.0f}x authors' ref scan (quoted {authors})"
    print(
        f"{r['model']:>12} {r['mode']:>5} {r['length']:>8} {r['batch']:>3} {r['backend']:>8} "
        f"{r['tokens_per_s']:>10.0f} {r['seconds']:>9.2f} {r['peak_rss_gb']:>7.2f}  {ratio:<14} {hy}",
        flush=True,
    )


def write_outputs(rows: list[dict], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = ["model", "backend", "mode", "length", "batch", "seconds", "tokens_per_s", "peak_rss_gb", "error"]
    tmp = out_dir / ".compute.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in fields})
    os.replace(tmp, out_dir / "compute.csv")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ok = [r for r in rows if "error" not in r and r["mode"] == "infer" and r["batch"] == 1]
    for key in sorted({(r["model"], r["backend"]) for r in ok}):
        mine = [r for r in ok if (r["model"], r["backend"]) == key]
        pts = sorted((r["length"], r["tokens_per_s"], r["peak_rss_gb"]) for r in mine)
        xs = [p[0] for p in pts]
        ax1.plot(xs, [p[1] for p in pts], marker="o", label=f"{key[0]} [{key[1]}]")
        ax2.plot(xs, [p[2] for p in pts], marker="o", label=f"{key[0]} [{key[1]}]")
    hx = sorted(HYENADNA_QUOTED)
    ax1.plot(hx, [HYENADNA_QUOTED[x] for x in hx], "k--", marker="x", label="HyenaDNA medium (quoted)")
    for ax, title, unit in ((ax1, "throughput", "tokens/s"), (ax2, "peak resident memory", "GB")):
        ax.set(xscale="log", yscale="log", xlabel="sequence length (bp)", ylabel=unit, title=title)
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=7)
    title = "Caduceus 7.7M, HyenaDNA medium 6.6M, peers: batch 1, float32 (+bf16: bf16 projections), inference, "
    fig.suptitle(title + platform.machine(), fontsize=9)
    fig.tight_layout()
    tmp_png = out_dir / ".compute.png.tmp.png"
    fig.savefig(tmp_png, dpi=110)
    os.replace(tmp_png, out_dir / "compute.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["hyenadna", "caduceus_ps", "caduceus_ph", "enformer", "cnn"],
                        help="registered backbones")
    parser.add_argument("--backends", nargs="+", default=["auto", "auto+bf16", "ref"],
                        help="scan backends, first one the fast path; NAME+bf16: bf16 projections")
    parser.add_argument("--lengths", type=int, nargs="+", help="default 1k 4k 16k 131k 1M (--quick: 1k 4k 16k)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="batch sweep at --batch-len")
    parser.add_argument("--batch-len", type=int, default=4096)
    parser.add_argument("--train-len", type=int, default=8192, help="forward+backward cell length (0: none)")
    parser.add_argument("--ref-max-len", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="lengths 1k/4k/16k, no batch sweep, train at 2k")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--_cell", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._cell:
        print(json.dumps(_cell(*json.loads(args._cell))))
        return
    if args.quick:
        args.batches, args.train_len = [1], 2048
    if args.lengths is None:
        args.lengths = [1024, 4096, 16384] if args.quick else [1024, 4096, 16384, 131072, 1048576]

    import torch

    threads = torch.get_num_threads()
    print(
        f"# {platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__} ({threads} threads), "
        f"python {platform.python_version()}"
    )
    print(
        f"{'model':>12} {'mode':>5} {'length':>8} {'bs':>3} {'backend':>8} {'tokens/s':>10} {'seconds':>9} "
        f"{'peak GB':>7}  vs baseline"
    )
    rows, baselines = [], {}
    cells = plan(args)
    cells.sort(key=lambda c: c[0] != "hyenadna")  # HyenaDNA first: its figures are the others' yardstick
    for cell in cells:
        r = run_cell(*cell)
        rows.append(r)
        key = (r["model"], r["mode"], r["length"], r["batch"])
        if cell[1] == "ref" and "error" not in r:
            fast = [x for x in rows if (x["model"], x["mode"], x["length"], x["batch"]) == key and x is not r]
            baselines[key] = r
            print_row(r, None)
            for x in fast:
                if "error" not in x:
                    print(
                        f"{'':>12} {'':>5} {'':>8} {'':>3} {'':>8} -> {x['backend']} is "
                        f"{x['tokens_per_s'] / r['tokens_per_s']:.1f}x ref"
                    )
        else:
            hy = next((x for x in rows if x["model"] == "hyenadna" and (x["mode"], x["length"], x["batch"]) == key[1:]),
                      None)
            print_row(r, baselines.get(key), hy)
    write_outputs(rows, args.out)
    print(f"wrote {args.out / 'compute.csv'} and {args.out / 'compute.png'}")


if __name__ == "__main__":
    main()
