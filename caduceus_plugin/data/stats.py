"""Intervals that say when a difference is real: paired bootstrap over items and seeds, t over seeds, verdicts.

Used by ``caduceus bench`` (``bench_compare.csv``), the pre-training ablations (``benchmarks/pretrain_ablation.py``)
and the zero-shot variant-effect AUROCs. Every interval is a two-sided 95 % percentile interval unless stated.

Pairing. Two models evaluated on the same test items (windows, sequences, variants) with the same seeds give a
matrix of differences ``(n_seeds, n_items)``; :func:`paired_bootstrap` resamples seeds and items with replacement
(seeds: the run-to-run variation of training; items: the finite test set) and recomputes the statistic on each
replicate, so both sources of uncertainty are in the interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Interval",
    "auroc",
    "bootstrap",
    "bootstrap_auroc",
    "paired_bootstrap",
    "pooled_paired_bootstrap",
    "seed_t_interval",
    "verdict",
]

#: Bootstrap replicates (the percentile interval's third decimal is stable from about 2,000).
N_BOOT = 2000


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval and how it was computed (``method``)."""

    estimate: float
    low: float
    high: float
    method: str

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside the closed interval."""
        return not (self.low <= value <= self.high)


def verdict(interval: Interval, higher_is_better: bool = True, null: float = 0.0) -> str:
    """``better`` / ``worse`` where the interval of a difference excludes ``null``, else ``no detectable
    difference``; with ``higher_is_better=False`` (losses) a negative difference is better."""
    if not interval.excludes(null):
        return "no detectable difference"
    above = interval.low > null
    return "better" if above == higher_is_better else "worse"


def bootstrap(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    n_seeds: int,
    n_items: int,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile interval of ``statistic(seed_idx, item_idx)`` with seeds and items resampled with replacement.

    ``statistic`` gets two index arrays (``(n_seeds,)`` into the seeds, ``(n_items,)`` into the items) and returns a
    number; the estimate is its value on the identity indices. With one seed only the items are resampled.
    """
    rng = np.random.default_rng(seed)
    all_s, all_i = np.arange(n_seeds), np.arange(n_items)
    reps = np.empty(n_boot)
    for r in range(n_boot):
        s = rng.integers(0, n_seeds, n_seeds) if n_seeds > 1 else all_s
        reps[r] = statistic(s, rng.integers(0, n_items, n_items))
    tail = (1 - level) / 2
    lo, hi = np.nanquantile(reps, [tail, 1 - tail])
    what = f"bootstrap over {n_seeds} seed(s) and {n_items} items ({n_boot} replicates)"
    return Interval(float(statistic(all_s, all_i)), float(lo), float(hi), what)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray | None = None, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95
) -> Interval:
    """Interval of the mean of ``a - b`` (or of ``a``): per-item values ``(n_seeds, n_items)`` of two models on the
    same items and seeds, resampled together (:func:`bootstrap`). NaN items (nothing scored) are ignored."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    d = a
    if b is not None:
        b = np.atleast_2d(np.asarray(b, dtype=np.float64))
        if b.shape != a.shape:
            raise ValueError(f"paired values need the same (seeds, items) shape, got {a.shape} and {b.shape}")
        d = a - b
    return bootstrap(lambda s, i: float(np.nanmean(d[np.ix_(s, i)])), *d.shape, n_boot=n_boot, seed=seed, level=level)


def pooled_paired_bootstrap(
    sum_a: np.ndarray, sum_b: np.ndarray, counts: np.ndarray, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95
) -> Interval:
    """Interval of ``(sum(sum_a) - sum(sum_b)) / sum(counts)`` with the items (``(n_items,)`` each) resampled.

    For a metric pooled over the positions of items (windows) of unequal size, such as a cross-entropy averaged over
    the masked positions of evaluation windows: ``sum_a[i]`` / ``sum_b[i]`` are two models' totals over item ``i``'s
    ``counts[i]`` positions, so the estimate is exactly the difference of the pooled metrics (a mean of per-item
    means would weight a window with 3 masked positions like one with 150).
    """
    a, b, n = (np.asarray(v, dtype=np.float64).ravel() for v in (sum_a, sum_b, counts))
    if not a.shape == b.shape == n.shape:
        raise ValueError(f"pooled paired values need one length, got {a.shape}, {b.shape} and {n.shape}")
    d = a - b

    def pooled(_: np.ndarray, i: np.ndarray) -> float:
        total = n[i].sum()
        return float(d[i].sum() / total) if total > 0 else float("nan")

    return bootstrap(pooled, 1, len(d), n_boot=n_boot, seed=seed, level=level)


def seed_t_interval(diffs: np.ndarray, level: float = 0.95) -> Interval:
    """Student-t interval of the mean of per-seed differences (paired by seed); NaN bounds with one seed."""
    from scipy import stats

    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    if n < 2:
        return Interval(mean, float("nan"), float("nan"), f"t over {n} seed(s): too few for an interval")
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):  # identical runs: a zero-width t interval would claim false certainty
        return Interval(mean, float("nan"), float("nan"), f"t over {n} seeds: no spread, no interval")
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n))
    return Interval(mean, mean - half, mean + half, f"t over {n} seeds (df {n - 1})")


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels``: the Mann-Whitney U with ties counted one half
    (the value torchmetrics' ``binary_auroc`` gives, tested; this one is fast enough for thousands of bootstrap
    replicates). NaN scores are dropped; NaN when one class is missing."""
    from scipy.stats import rankdata

    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    keep = np.isfinite(s)
    y, s = y[keep], s[keep]
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_auroc(labels: np.ndarray, scores: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> Interval:
    """AUROC with a percentile bootstrap interval over items, resampled within each class (fixed class sizes)."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for i in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        reps[i] = auroc(y[idx], s[idx])
    lo, hi = np.nanquantile(reps, [0.025, 0.975])
    return Interval(auroc(y, s), float(lo), float(hi), f"bootstrap over {len(pos)}+{len(neg)} items within class")
