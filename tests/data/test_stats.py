"""Intervals and verdicts (:mod:`caduceus_plugin.data.stats`): each is checked against a case whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps
from torchmetrics.functional.classification import binary_auroc

from caduceus_plugin.data.stats import (
    Interval,
    auroc,
    bootstrap,
    bootstrap_auroc,
    paired_bootstrap,
    pooled_paired_bootstrap,
    seed_t_interval,
    verdict,
)


def test_auroc_is_torchmetrics_value_with_ties_and_drops_nan():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + 0.7 * y, 1)  # rounded: many ties
    assert auroc(y, s) == pytest.approx(float(binary_auroc(torch.from_numpy(s), torch.from_numpy(y))), abs=1e-6)
    assert auroc([0, 1, 1], [0.1, np.nan, 0.9]) == 1.0
    assert np.isnan(auroc([1, 1], [0.2, 0.3]))


def test_verdict_only_where_the_interval_excludes_zero():
    assert verdict(Interval(0.1, 0.02, 0.2, "")) == "better"
    assert verdict(Interval(-0.1, -0.2, -0.01, "")) == "worse"
    assert verdict(Interval(0.1, -0.01, 0.2, "")) == "no detectable difference"
    assert verdict(Interval(-0.1, -0.2, -0.01, ""), higher_is_better=False) == "better"  # a loss went down


def test_paired_bootstrap_finds_a_real_shift_and_not_a_null_one():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(3, 200))  # per-item difficulty shared by both models: pairing removes it
    shifted = paired_bootstrap(base + 0.05 + 0.02 * rng.normal(size=base.shape), base)
    assert shifted.low > 0 and shifted.low < 0.05 < shifted.high and verdict(shifted) == "better"
    null = paired_bootstrap(base + 0.1 * rng.normal(size=base.shape), base)
    assert null.low < 0 < null.high and "3 seed(s) and 200 items" in null.method
    with pytest.raises(ValueError, match="same"):
        paired_bootstrap(base, base[:, :10])


def test_pooled_paired_bootstrap_weights_items_by_their_positions():
    rng = np.random.default_rng(2)
    counts = rng.integers(1, 150, size=300).astype(float)
    per_pos_b = 1.2 + 0.1 * rng.normal(size=300)  # per-window difficulty, shared by both models
    sum_b = per_pos_b * counts
    sum_a = (per_pos_b - 0.03 + 0.01 * rng.normal(size=300)) * counts  # model a: 0.03 nats lower per position
    iv = pooled_paired_bootstrap(sum_a, sum_b, counts)
    assert iv.estimate == pytest.approx((sum_a.sum() - sum_b.sum()) / counts.sum())  # pooled, not a mean of means
    assert iv.low < iv.estimate < iv.high < 0 and verdict(iv, higher_is_better=False) == "better"
    # a large gain confined to windows with few positions: the pooled difference stays small
    small = counts < 5
    tilted = np.where(small, sum_b - 1.0 * counts, sum_b)
    pooled = pooled_paired_bootstrap(tilted, sum_b, counts).estimate
    assert pooled == pytest.approx(-counts[small].sum() / counts.sum())
    assert abs(pooled) < abs(np.mean(np.where(small, -1.0, 0.0)))
    null = pooled_paired_bootstrap(sum_b + 0.05 * rng.normal(size=300) * counts, sum_b, counts)
    assert null.low < 0 < null.high
    with pytest.raises(ValueError, match="one length"):
        pooled_paired_bootstrap(sum_a, sum_b, counts[:10])


def test_bootstrap_resamples_seeds_too():
    # items identical, seeds disagree: the interval must be as wide as the seed spread, not zero
    per_seed = np.array([0.0, 1.0, 2.0])
    iv = bootstrap(lambda s, i: float(per_seed[s].mean()), n_seeds=3, n_items=50)
    assert iv.estimate == 1.0 and iv.low < 0.7 and iv.high > 1.3
    one = bootstrap(lambda s, i: float(per_seed[s].mean()), n_seeds=1, n_items=50)
    assert one.low == one.high == 0.0  # one seed: only items are resampled


def test_seed_t_interval_is_the_t_formula():
    d = np.array([0.02, 0.05, 0.03, 0.04, 0.01])
    iv = seed_t_interval(d)
    half = sps.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert (iv.low, iv.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert np.isnan(seed_t_interval(np.array([0.1])).low)
    assert np.isnan(seed_t_interval(np.array([0.1, 0.1, 0.1])).low)  # no spread: no zero-width "certainty"


def test_bootstrap_auroc_separable_and_random():
    y = np.array([0] * 50 + [1] * 50)
    perfect = bootstrap_auroc(y, y + 0.0)
    assert perfect.estimate == perfect.low == perfect.high == 1.0
    rand = bootstrap_auroc(y, np.random.default_rng(2).normal(size=100))
    assert rand.low < 0.5 < rand.high
