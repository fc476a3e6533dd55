"""Throughput of ``caduceus predict`` with the built-in model on real 1 kbp GRCh37 windows (issue 16's figure).

Cells, timed alternately in one process (A B C A B C ...), each over the same windows:

* ``0.1 loop, batch 8``: the 0.1 release's algorithm (a DataLoader of one-hot windows, batches of 8, the model
  called in a Python loop, outputs kept in memory): the baseline "today";
* ``runner, batch 8``: the same batches through the job runner (``run_job``: the shard writer, and since 3ffaebd
  a plain loop in this process for one process; ``Trainer.predict`` before);
* ``runner, batch 64``: 64 windows of 1 kbp per batch (tried as a default; measured slower, see the results).

Reading the FASTA and one-hot encoding take ~0.1 % of the time here (profiled), so a DataLoader worker has
nothing to overlap; ``--workers 1`` adds a cell that uses one anyway.

``--against REV`` times the whole command instead, as a user runs it: ``caduceus predict --fasta FA --bed BED
--out OUT.parquet`` (default options) of this tree against the same command of git revision ``REV`` (checked out
into a temporary worktree), each run a fresh process, the two alternating, after one untimed run of each (numba's
kernel cache warm, as from a user's second run on). The outputs are checked to be the same. The issue's "today" is
the revision it was filed against (791e801). ``--weights DIR`` gives both commands the same checkpoint, for a
comparison across a change of the built-in model (e.g. ``--weights caduceus_plugin/weights/grch37_chr20_ps``, the
built-in model until the 2M one).

    .venv/bin/python benchmarks/predict_throughput.py [--n 2000] [--repeats 3] [--workers] [--weights DIR]
    .venv/bin/python benchmarks/predict_throughput.py --against 791e801 [--n 2000] [--repeats 3] [--weights DIR]

Prints a table (median windows/s, min-max, ratio to the baseline measured in the same repeat) and writes
``benchmarks/results/predict_throughput[_cli_vs_REV][_WEIGHTS]_DATE.csv`` and ``.png`` (dated and named after
``--against`` and ``--weights``, so a rerun never overwrites a cited result). Timing only: no test asserts on it.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import compute
import numpy as np
import torch

from caduceus_plugin.demo_data import paths
from caduceus_plugin.genome import Genome
from caduceus_plugin.jobs.predict import WindowDataset, predict
from caduceus_plugin.jobs.predictor import load_predictor

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


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


def save(rows: list[dict], cells: list[str], stem: str, title: str, weights: Path | None = None) -> None:
    """``results/STEM[_WEIGHTS]_DATE.csv`` (every run) and ``.png`` (windows/s of each run, by cell): dated and named
    after the weights, so that a rerun never overwrites a result the README cites."""
    import datetime

    import matplotlib

    stem = "_".join([stem, *([weights.name] if weights is not None else []), datetime.date.today().isoformat()])

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"{stem}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fig, ax = plt.subplots(figsize=(7, 3))
    for i, name in enumerate(cells):
        w = [r["windows_per_s"] for r in rows if r["cell"] == name]
        ax.scatter([i] * len(w), w)
    ax.set_xticks(range(len(cells)), cells, rotation=10, fontsize=8)
    ax.set_ylabel("windows / s")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}.png", dpi=120)


def cli_predict(tree: Path, fasta: Path, bed: Path, out: Path, weights: Path | None = None) -> float:
    """Wall seconds of ``caduceus predict`` (default options; ``--weights`` if given) with the package of ``tree``,
    in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-m", "caduceus_plugin.cli", "predict", "--fasta", str(fasta), "--bed", str(bed)]
    cmd += ["--weights", str(weights)] if weights is not None else []
    t = time.perf_counter()
    subprocess.run([*cmd, "--out", str(out)], env=env, check=True, cwd=tree, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def embeddings(path: Path) -> np.ndarray:
    import polars as pl

    table = pl.read_parquet(path)
    return table.select([c for c in table.columns if c.startswith("emb_")]).to_numpy()


def against(rev: str, n: int, repeats: int, weights: Path | None = None) -> None:
    """The whole command of this tree against that of git revision ``rev``, alternating (see the docstring)."""
    fasta = paths()["fasta"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        old = tmp_path / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), rev], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        try:
            bed = windows_bed(tmp_path / "w.bed", n)
            cells = {f"caduceus predict at {rev}": old, "caduceus predict here": ROOT}
            ref = None
            for name, tree in cells.items():  # untimed: numba compiles (or loads) its kernels
                cli_predict(tree, fasta, bed, tmp_path / "warm.parquet", weights)
                values = embeddings(tmp_path / "warm.parquet")
                ref = values if ref is None else ref
                assert np.allclose(values, ref, rtol=1e-4, atol=1e-5), name  # the same output
            rows = []
            for rep in range(repeats):
                for name, tree in cells.items():
                    load = os.getloadavg()[0]
                    dt = cli_predict(tree, fasta, bed, tmp_path / f"{rep}.parquet", weights)
                    rows.append({"cell": name, "repeat": rep, "seconds": dt, "windows_per_s": n / dt,
                                 "load_avg_1min": load})  # fmt: skip
                    print(f"repeat {rep} {name:32s} {dt:7.1f} s  {n / dt:7.1f} windows/s  (load {load:.2f})")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)
    base = {r["repeat"]: r["seconds"] for r in rows if r["cell"].endswith(rev)}
    for r in rows:
        r[f"speedup_vs_{rev}_same_repeat"] = base[r["repeat"]] / r["seconds"]
    model = f"--weights {weights}" if weights is not None else "built-in model"
    print(f"\n{n} x 1 kbp windows, {model}, whole command, load average after {os.getloadavg()[0]:.2f}")
    print(f"{'cell':34s} {'median s':>9s} {'min-max':>13s} {'spread':>7s} {'speedup (median)':>17s}")
    for name in cells:
        sec = compute.summarize([r["seconds"] for r in rows if r["cell"] == name])
        up = statistics.median(r[f"speedup_vs_{rev}_same_repeat"] for r in rows if r["cell"] == name)
        verdict = f"{up:17.2f}" if sec["spread"] <= compute.MAX_SPREAD else f"{compute.NOISY:>17s}"
        print(f"{name:34s} {sec['median']:9.1f} {sec['min']:6.1f}-{sec['max']:<6.1f} {sec['spread']:7.0%} {verdict}")
    save(rows, list(cells), f"predict_throughput_cli_vs_{rev}", f"the whole caduceus predict, {n} x 1 kbp, {model}",
         weights)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="windows (default 2000)")
    ap.add_argument("--repeats", type=compute.repeats_arg, default=compute.MIN_REPEATS)
    ap.add_argument("--workers", action="store_true", help="add a cell with one DataLoader worker")
    ap.add_argument("--against", metavar="REV", help="time the whole command against git revision REV's")
    ap.add_argument("--weights", type=Path, metavar="DIR", help="checkpoint for every cell (default: built-in)")
    return ap


def main() -> None:
    args = build_parser().parse_args()
    if args.against:
        weights = args.weights.resolve() if args.weights is not None else None  # the same file from either tree
        against(args.against, args.n, args.repeats, weights)
        return
    fasta = paths()["fasta"]
    predictor = load_predictor(weights=args.weights, device="cpu")
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
    model = f"--weights {args.weights}" if args.weights is not None else "built-in model"
    print(f"\n{args.n} x 1 kbp windows, {model}, {torch.get_num_threads()} threads")
    print(f"{'cell':32s} {'median w/s':>10s} {'min-max':>15s} {'x 0.1 (median)':>15s}")
    for name in cells:
        rs = [r for r in rows if r["cell"] == name]
        w = [r["windows_per_s"] for r in rs]
        ratio = statistics.median(r["ratio_to_0.1_same_repeat"] for r in rs)
        print(f"{name:32s} {statistics.median(w):10.1f} {min(w):7.1f}-{max(w):<7.1f} {ratio:15.2f}")
    save(rows, list(cells), "predict_throughput", f"caduceus predict, {args.n} x 1 kbp, {model}",
         None if args.weights is None else Path(args.weights))

if __name__ == "__main__":
    main()
