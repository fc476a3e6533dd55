"""Throughput of ``caduceus predict`` with the built-in model on real 1 kbp GRCh37 windows (issue 16's figure).

Cells, timed alternately in one process (A B C A B C ...), each over the same windows:

* ``0.1 loop, batch 8``: the 0.1 release's algorithm (a DataLoader of one-hot windows, batches of 8, the model
  called in a Python loop, outputs kept in memory): the baseline "today";
* ``runner, batch 8``: the same batches through ``Trainer.predict`` + the shard writer (Lightning's overhead);
* ``runner, batch 64``: 64 windows of 1 kbp per batch (tried as a default; measured slower, see the results).

Reading the FASTA and one-hot encoding take ~0.1 % of the time here (profiled), so a DataLoader worker has
nothing to overlap; ``--workers 1`` adds a cell that uses one anyway.

    .venv/bin/python benchmarks/predict_throughput.py [--n 2000] [--repeats 3] [--workers]

Prints a table (median windows/s, min-max, ratio to the baseline measured in the same repeat) and writes
``benchmarks/results/predict_throughput.csv`` and ``.png``. Timing only: no test asserts on it.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from caduceus_plugin.demo_data import paths
from caduceus_plugin.genome import Genome
from caduceus_plugin.jobs.predict import WindowDataset, predict
from caduceus_plugin.jobs.predictor import load_predictor

RESULTS = Path(__file__).resolve().parent / "results"


def windows_bed(path: Path, n: int) -> Path:
    """``n`` 1 kbp windows tiled every 500 bp over the demo FASTA's real GRCh37 half (20:1,000,001-2,000,000),
    strands alternating."""
    lines = [f"20\t{1_000_000 + 500 * i}\t{1_001_000 + 500 * i}\tw{i}\t0\t{'+-'[i % 2]}\n" for i in range(n)]
    path.write_text("".join(lines))
    return path


def loop_0_1(predictor, fasta: Path, bed: Path, batch_size: int) -> np.ndarray:
    """The 0.1 release's predict loop (baseline), on the same windows as :func:`predict`."""
    from caduceus_plugin.genome import read_bed, resize

    b = read_bed(bed)
    genome = Genome(fasta)
    win = [resize(c, s, e, predictor.seq_len) for c, s, e in zip(b.chrom, b.start, b.end)]
    ds = WindowDataset(genome, b.chrom, [w[0] for w in win], [w[1] for w in win], b.strand)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    return np.concatenate([predictor(batch["x"]) for batch in loader])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="windows (default 2000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", action="store_true", help="add a cell with one DataLoader worker")
    args = ap.parse_args()
    fasta = paths()["fasta"]
    predictor = load_predictor(device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        bed = windows_bed(Path(tmp) / "w.bed", args.n)
        cells = {
            "0.1 loop, batch 8": lambda: loop_0_1(predictor, fasta, bed, 8),
            "runner, batch 8": lambda: predict(fasta, bed, None, predictor=predictor, batch_size=8).values,
            "runner, batch 64": lambda: predict(fasta, bed, None, predictor=predictor, batch_size=64).values,
        }
        if args.workers:
            cells["runner, batch 8, 1 worker"] = lambda: predict(
                fasta, bed, None, predictor=predictor, batch_size=8, num_workers=1
            ).values
        ref = cells["0.1 loop, batch 8"]()  # warm-up (numba compilation) and the reference values
        rows = []
        for rep in range(args.repeats):
            for name, fn in cells.items():
                load = os.getloadavg()[0]
                t = time.perf_counter()
                values = fn()
                dt = time.perf_counter() - t
                assert np.allclose(values, ref, rtol=1e-4, atol=1e-5), name  # same numbers in every cell
                rows.append({"cell": name, "repeat": rep, "seconds": dt, "windows_per_s": args.n / dt,
                             "load_avg_1min": load})
                print(f"repeat {rep} {name:32s} {dt:7.1f} s  {args.n / dt:7.1f} windows/s  (load {load:.2f})")
    base = {r["repeat"]: r["windows_per_s"] for r in rows if r["cell"] == "0.1 loop, batch 8"}
    for r in rows:
        r["ratio_to_0.1_same_repeat"] = r["windows_per_s"] / base[r["repeat"]]
    print(f"\n{args.n} x 1 kbp windows, built-in model, {torch.get_num_threads()} threads")
    print(f"{'cell':32s} {'median w/s':>10s} {'min-max':>15s} {'x 0.1 (median)':>15s}")
    for name in cells:
        rs = [r for r in rows if r["cell"] == name]
        w = [r["windows_per_s"] for r in rs]
        ratio = statistics.median(r["ratio_to_0.1_same_repeat"] for r in rs)
        print(f"{name:32s} {statistics.median(w):10.1f} {min(w):7.1f}-{max(w):<7.1f} {ratio:15.2f}")
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "predict_throughput.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    for i, name in enumerate(cells):
        w = [r["windows_per_s"] for r in rows if r["cell"] == name]
        ax.scatter([i] * len(w), w)
    ax.set_xticks(range(len(cells)), list(cells), rotation=10, fontsize=8)
    ax.set_ylabel("windows / s")
    ax.set_title(f"caduceus predict, {args.n} x 1 kbp, built-in model")
    fig.tight_layout()
    fig.savefig(RESULTS / "predict_throughput.png", dpi=120)


if __name__ == "__main__":
    main()
