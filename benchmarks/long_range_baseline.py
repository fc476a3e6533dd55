"""A count baseline for the long-range task: does 16 kbp of context carry label signal that 1 kbp does not?

    .venv/bin/python benchmarks/long_range_baseline.py    # a few minutes; writes results/long_range_baseline.csv

On ``tss_context_chr20`` (:func:`caduceus_plugin.data.tasks.tss_context_chr20`), the same windows seen through
their central 1 kbp and through all 16 kbp: k-mer frequencies (k = 1..4) of each window, standardised on the
training split, and a ridge-regularised least-squares linear classifier (lambda 10) fitted on the training split;
the test AUROC with its 95 % bootstrap interval (:func:`caduceus_plugin.data.stats.bootstrap_auroc`). No neural
network and no tuning on the test split. This says how much of the label a model could get from composition alone
at each context length; the deep models are measured by ``caduceus bench``.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "long_range_baseline.csv"


def kmer_profile(seqs: list[str], k: int) -> np.ndarray:
    """(n, 4**k) k-mer frequencies of each sequence (k-mers with N are skipped)."""
    index = {"".join(p): i for i, p in enumerate(itertools.product("ACGT", repeat=k))}
    out = np.zeros((len(seqs), len(index)))
    for r, s in enumerate(seqs):
        for i in range(len(s) - k + 1):
            j = index.get(s[i : i + k])
            if j is not None:
                out[r, j] += 1
    return out / np.maximum(out.sum(1, keepdims=True), 1)


def ridge_scores(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, lam: float = 10.0) -> np.ndarray:
    mean, sd = x_train.mean(0), x_train.std(0) + 1e-9
    a = (x_train - mean) / sd
    w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ (2.0 * y_train - 1))
    return ((x_test - mean) / sd) @ w


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 4])
    args = p.parse_args(argv)
    from caduceus_plugin.data import tss_context_chr20
    from caduceus_plugin.data.stats import bootstrap_auroc
    from caduceus_plugin.fileio import atomic_write_text

    rows = []
    for length in (1000, 16384):
        task = tss_context_chr20(seq_len=length)
        for k in args.k:
            xtr, xte = kmer_profile(task.train["seq"].tolist(), k), kmer_profile(task.test["seq"].tolist(), k)
            iv = bootstrap_auroc(task.test["label"].to_numpy(), ridge_scores(xtr, task.train["label"].to_numpy(), xte))
            rows.append({"context": length, "k": k, "auroc": round(iv.estimate, 4), "ci_low": round(iv.low, 4),
                         "ci_high": round(iv.high, 4), "n_train": len(task.train), "n_test": len(task.test)})
            print(f"context {length:>6,} bp, {k}-mers: AUROC {iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}] "
                  f"({len(task.test)} test windows)", flush=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(args.out, buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
