"""``bench_compare.csv``: every model's headline metric against a baseline model and against chance, with intervals.

For each task and model, two rows:

* against the baseline model (HyenaDNA by default): the difference of the seed-averaged headline metric,
  model minus baseline, on the same test examples;
* against chance (baseline ``chance``): the metric minus its chance level, AUROC 0.5 and, for accuracy, the
  majority class's share of the test examples (what always predicting the most frequent class scores).

Intervals are 95 %. Where every run saved its test predictions (``test_predictions.npz``, written by the training
app), the interval is a bootstrap over test examples and seeds together (:func:`caduceus_plugin.data.stats.bootstrap`:
each replicate redraws the seeds and the examples with replacement and recomputes the metric), so both the finite
test set and the run-to-run variation are in it. Older runs without predictions fall back to a Student-t interval
over the per-seed differences (paired by seed), which needs at least 2 seeds and is wide with 3. A verdict is given
only where the interval excludes 0: ``better`` / ``worse``, else ``no detectable difference``.

``bench_context.csv`` (:func:`context_gain`) asks whether context helps: each model against itself on the same
windows seen through a shorter context (the long-range task's 16 kbp against its 1 kbp view), paired by seed and
test window, with the same interval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from caduceus_plugin.data.stats import Interval, auroc, bootstrap, seed_t_interval, verdict
from caduceus_plugin.hosts.grelu.train import PREDICTIONS_FILE

COLUMNS = ("task", "model", "baseline", "metric", "diff", "ci_low", "ci_high", "n_seeds", "verdict", "method")
CONTEXT_COLUMNS = ("task", "short_task", "model", "metric", "short", "long", "diff", "ci_low", "ci_high", "n_seeds",
                   "verdict", "method")


def headline(metric: str, labels: np.ndarray, scores: np.ndarray) -> float:
    """``auroc`` (binary) or ``accuracy`` (binary at 0.5, multiclass by argmax) of test ``scores``."""
    if metric == "auroc":
        if scores.ndim != 1:
            raise ValueError("bench_compare computes AUROC for binary tasks only")
        return auroc(labels, scores)
    if metric == "accuracy":
        pred = (scores >= 0.5).astype(int) if scores.ndim == 1 else scores.argmax(-1)
        return float(np.mean(pred == labels))
    raise ValueError(f"no interval for metric {metric!r}")


def chance_level(metric: str, labels: np.ndarray) -> float:
    """AUROC 0.5; accuracy of always predicting the most frequent class of ``labels``."""
    if metric == "auroc":
        return 0.5
    return float(np.bincount(labels).max() / len(labels))


@dataclass
class Runs:
    """The finished runs of one model on one task: headline metric per seed, predictions where saved."""

    metric_by_seed: dict[int, float]
    predictions: dict[int, tuple[np.ndarray, np.ndarray]]


def load_runs(out: Path, task: str, model: str, metric: str) -> Runs:
    metric_by_seed, preds = {}, {}
    for path in sorted((out / "runs" / task / model).glob("seed*/metrics.json")):
        m = json.loads(path.read_text())
        seed = int(m["seed"])
        if metric in m["metrics"]:
            metric_by_seed[seed] = float(m["metrics"][metric])
        p = path.parent / PREDICTIONS_FILE
        if p.exists():
            with np.load(p) as z:
                preds[seed] = (z["labels"].astype(int), z["scores"].astype(np.float64))
    return Runs(metric_by_seed, preds)


def load_all(out: Path, tasks: dict[str, str], models: list[str]) -> dict[str, dict[str, Runs]]:
    """Every task's (name -> headline metric) finished runs in ``out``, per model; models without runs left out.
    Read once and shared by :func:`compare` and :func:`chance_levels`."""
    loaded = {}
    for task, metric in tasks.items():
        runs = {m: load_runs(out, task, m, metric) for m in models}
        loaded[task] = {m: r for m, r in runs.items() if r.metric_by_seed}
    return loaded


def task_chance_level(metric: str, runs: dict[str, Runs]) -> float | None:
    """AUROC 0.5; for accuracy the majority share of the test labels any run saved (None if none did)."""
    if metric == "auroc":
        return 0.5
    saved = next((r.predictions for r in runs.values() if r.predictions), None)
    return None if saved is None else chance_level(metric, next(iter(saved.values()))[0])


def _interval(metric: str, a: Runs, b: Runs | None, seeds: list[int], seed: int, level: float | None) -> Interval:
    """Interval of mean-over-seeds metric(a) minus that of ``b`` (``None``: minus the chance level, which the
    bootstrap recomputes on each replicate's examples and the t fallback takes as ``level``)."""
    have = all(s in a.predictions for s in seeds) and (b is None or all(s in b.predictions for s in seeds))
    if have:
        labels = a.predictions[seeds[0]][0]
        same = all(np.array_equal(r.predictions[s][0], labels) for r in (a, b) if r is not None for s in seeds)
        if same:
            sa = np.stack([a.predictions[s][1] for s in seeds])
            sb = None if b is None else np.stack([b.predictions[s][1] for s in seeds])

            def stat(si: np.ndarray, ii: np.ndarray) -> float:
                y = labels[ii]
                va = np.mean([headline(metric, y, sa[k][ii]) for k in si])
                vb = chance_level(metric, y) if sb is None else np.mean([headline(metric, y, sb[k][ii]) for k in si])
                return float(va - vb)

            return bootstrap(stat, len(seeds), len(labels), seed=seed)
    if b is None:
        if level is None:  # the majority level needs the test labels
            return Interval(float("nan"), float("nan"), float("nan"), "no test labels saved: rerun the task")
        return seed_t_interval(np.array([a.metric_by_seed[s] - level for s in seeds]))
    return seed_t_interval(np.array([a.metric_by_seed[s] - b.metric_by_seed[s] for s in seeds]))


def row_verdict(iv: Interval) -> str:
    """The verdict of a row: :func:`~caduceus_plugin.data.stats.verdict`, or ``no interval`` where none exists."""
    return verdict(iv) if np.isfinite(iv.low) else "no interval"


def format_interval(low: float, high: float) -> str:
    """``[+0.012, +0.034]`` for the report's tables, ``–`` where there is no interval."""
    return f"[{low:+.3f}, {high:+.3f}]" if np.isfinite(low) else "–"


def compare(
    loaded: dict[str, dict[str, Runs]], tasks: dict[str, str], baseline: str = "hyenadna"
) -> list[dict[str, Any]]:
    """Rows of ``bench_compare.csv`` for ``tasks`` (name -> headline metric) from :func:`load_all`'s runs."""
    rows = []
    for t, (task, metric) in enumerate(tasks.items()):
        runs = loaded[task]
        level = task_chance_level(metric, runs)
        for j, (model, r) in enumerate(runs.items()):
            against: list[tuple[str, Runs | None]] = [("chance", None)]
            if baseline in runs and model != baseline:
                against.insert(0, (baseline, runs[baseline]))
            for name, other in against:
                seeds = sorted(s for s in r.metric_by_seed if other is None or s in other.metric_by_seed)
                iv = _interval(metric, r, other, seeds, 1000 * t + j, level)
                rows.append({"task": task, "model": model, "baseline": name, "metric": metric, "diff": iv.estimate,
                             "ci_low": iv.low, "ci_high": iv.high, "n_seeds": len(seeds), "verdict": row_verdict(iv),
                             "method": iv.method})  # fmt: skip
    return rows


def context_gain(
    loaded: dict[str, dict[str, Runs]], tasks: dict[str, str], pairs: dict[str, str]
) -> list[dict[str, Any]]:
    """Rows of ``bench_context.csv``: for each ``long task -> short task`` of ``pairs`` (the same windows through
    two contexts) and each model run on both, the headline metric with the long context minus that with the short,
    over the seeds both have (paired by seed and, where predictions were saved on identical test labels, by test
    window). ``short`` and ``long`` are the metric averaged over those seeds."""
    rows = []
    for t, (long_task, short_task) in enumerate(pairs.items()):
        if long_task not in loaded or short_task not in loaded:
            continue
        metric = tasks[long_task]
        for j, (model, a) in enumerate(loaded[long_task].items()):
            b = loaded[short_task].get(model)
            seeds = [] if b is None else sorted(set(a.metric_by_seed) & set(b.metric_by_seed))
            if not seeds:
                continue
            iv = _interval(metric, a, b, seeds, 50_000 + 1000 * t + j, None)
            rows.append({"task": long_task, "short_task": short_task, "model": model, "metric": metric,
                         "short": float(np.mean([b.metric_by_seed[s] for s in seeds])),
                         "long": float(np.mean([a.metric_by_seed[s] for s in seeds])), "diff": iv.estimate,
                         "ci_low": iv.low, "ci_high": iv.high, "n_seeds": len(seeds),
                         "verdict": row_verdict(iv), "method": iv.method})
    return rows


def chance_levels(loaded: dict[str, dict[str, Runs]], tasks: dict[str, str]) -> dict[str, float]:
    """The chance level of each task's headline metric where it is known (:func:`task_chance_level`)."""
    levels = {task: task_chance_level(metric, loaded[task]) for task, metric in tasks.items()}
    return {task: v for task, v in levels.items() if v is not None}


def to_csv(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()
