"""``bench_compare.csv``: paired intervals against the baseline and chance from saved test predictions, the t
fallback for runs without them, and the report's use of both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from caduceus_plugin.jobs.bench import compare
from caduceus_plugin.jobs.bench.run import FULL_BUDGET, write_results

N_TEST = 200


def _run(out: Path, task: str, model: str, seed: int, scores: np.ndarray | None, labels: np.ndarray,
         metric_value: float | None = None) -> dict:
    run = out / "runs" / task / model / f"seed{seed}"
    run.mkdir(parents=True)
    if scores is not None:
        with open(run / "test_predictions.npz", "wb") as f:
            np.savez(f, labels=labels, scores=scores)
        value = compare.headline("auroc" if scores.ndim == 1 else "accuracy", labels, scores)
    else:
        value = metric_value
    metrics = {"accuracy": value} if task == "splice" else {"auroc": value}
    (run / "metrics.json").write_text(json.dumps({"model": model, "seed": seed, "metrics": metrics,
                                                  "n_parameters": 10, "epochs": 1, "n_train": 5, "seq_len": 200,
                                                  "train_seconds": 1.0}))
    return {"task": task, "model": model, "seed": seed, **metrics, "n_parameters": 10, "epochs": 1, "n_train": 5,
            "seq_len": 200, "train_seconds": 1.0}


def _fake_bench(out: Path) -> list[dict]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, N_TEST)
    y3 = np.where(rng.random(N_TEST) < 0.6, 2, rng.integers(0, 2, N_TEST))  # majority class 2, about 60 %
    rows = []
    for seed in range(3):
        rows.append(_run(out, "oct4_mafk", "caduceus_ps", seed, y + rng.normal(0, 0.6, N_TEST), y))  # learned
        rows.append(_run(out, "oct4_mafk", "hyenadna", seed, rng.random(N_TEST), y))  # chance
        onehot = np.eye(3)[y3] * 0.6 + rng.random((N_TEST, 3)) * 0.5  # mostly right
        rows.append(_run(out, "splice", "caduceus_ps", seed, onehot, y3))
        majority = np.tile([0.1, 0.1, 0.8], (N_TEST, 1)) + rng.random((N_TEST, 3)) * 0.01  # always the majority
        rows.append(_run(out, "splice", "hyenadna", seed, majority, y3))
    return rows


def test_compare_rows_intervals_and_verdicts(tmp_path: Path) -> None:
    _fake_bench(tmp_path)
    tasks = {"oct4_mafk": "auroc", "splice": "accuracy"}
    rows = compare.compare(compare.load_all(tmp_path, tasks, ["caduceus_ps", "hyenadna"]), tasks)
    by = {(r["task"], r["model"], r["baseline"]): r for r in rows}
    assert set(by) == {("oct4_mafk", "caduceus_ps", "hyenadna"), ("oct4_mafk", "caduceus_ps", "chance"),
                       ("oct4_mafk", "hyenadna", "chance"), ("splice", "caduceus_ps", "hyenadna"),
                       ("splice", "caduceus_ps", "chance"), ("splice", "hyenadna", "chance")}
    assert by[("oct4_mafk", "caduceus_ps", "hyenadna")]["verdict"] == "better"
    assert by[("oct4_mafk", "caduceus_ps", "chance")]["verdict"] == "better"
    assert by[("oct4_mafk", "hyenadna", "chance")]["verdict"] == "no detectable difference"
    # always predicting the majority class is exactly chance for accuracy: difference 0, no verdict
    maj = by[("splice", "hyenadna", "chance")]
    assert maj["diff"] == pytest.approx(0.0) and maj["verdict"] == "no detectable difference"
    assert by[("splice", "caduceus_ps", "chance")]["verdict"] == "better"
    for r in rows:
        assert r["ci_low"] <= r["diff"] <= r["ci_high"] and r["n_seeds"] == 3
        assert r["method"].startswith("bootstrap over 3 seed(s) and 200 items")
    levels = compare.chance_levels(compare.load_all(tmp_path, tasks, ["hyenadna"]), tasks)
    assert levels["oct4_mafk"] == 0.5 and 0.5 < levels["splice"] < 0.7
    csv = compare.to_csv(rows).splitlines()
    assert csv[0] == "task,model,baseline,metric,diff,ci_low,ci_high,n_seeds,verdict,method" and len(csv) == 7


def test_runs_without_predictions_fall_back_to_t_over_seeds(tmp_path: Path) -> None:
    y = np.zeros(4, dtype=int)
    for seed, (a, b) in enumerate([(0.80, 0.70), (0.82, 0.71), (0.79, 0.69)]):
        _run(tmp_path, "oct4_mafk", "caduceus_ps", seed, None, y, a)
        _run(tmp_path, "oct4_mafk", "hyenadna", seed, None, y, b)
    rows = compare.compare(compare.load_all(tmp_path, {"oct4_mafk": "auroc"}, ["caduceus_ps", "hyenadna"]),
                           {"oct4_mafk": "auroc"})
    vs = next(r for r in rows if r["model"] == "caduceus_ps" and r["baseline"] == "hyenadna")
    assert vs["method"] == "t over 3 seeds (df 2)" and vs["diff"] == pytest.approx(0.1033, abs=1e-4)
    assert vs["verdict"] == "better"


def test_report_and_plot_use_the_comparison(tmp_path: Path) -> None:
    rows = _fake_bench(tmp_path)
    budget = {t: FULL_BUDGET[t] for t in ("oct4_mafk", "splice")}
    write_results(tmp_path, rows, budget, "caduceus bench", tmp_path / "REPORT.md", {})
    assert (tmp_path / "bench_compare.csv").read_text().count("\n") == 7
    report = (tmp_path / "REPORT.md").read_text()
    assert "| oct4_mafk | caduceus_ps | hyenadna | auroc |" in report and "**better**" in report
    assert "- **oct4_mafk**: above chance with an interval that excludes 0: caduceus_ps;" in report
    assert "matches or beats" not in report  # the old one-sd wording is gone
    assert (tmp_path / "bench_metrics.png").stat().st_size > 0


def test_context_gain_pairs_each_model_with_itself_on_the_same_windows(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 600)
    long_, short = "tss_context_chr20_16k", "tss_context_chr20_1k"
    rows = []
    for seed in range(3):  # the short context: 3 seeds, near chance; the long one: seed 0 only, learned for ps
        rows.append(_run(tmp_path, short, "caduceus_ps", seed, y * 0.2 + rng.random(600), y))
        rows.append(_run(tmp_path, short, "cnn", seed, rng.random(600), y))
    rows.append(_run(tmp_path, long_, "caduceus_ps", 0, y + rng.normal(0, 0.7, 600), y))
    rows.append(_run(tmp_path, long_, "cnn", 0, rng.random(600), y))
    rows.append(_run(tmp_path, long_, "hyenadna", 0, rng.random(600), y))  # no short run: no row
    tasks = {short: "auroc", long_: "auroc"}
    loaded = compare.load_all(tmp_path, tasks, ["caduceus_ps", "cnn", "hyenadna"])
    ctx = {r["model"]: r for r in compare.context_gain(loaded, tasks, {long_: short})}
    assert set(ctx) == {"caduceus_ps", "cnn"}
    ps = ctx["caduceus_ps"]
    assert ps["n_seeds"] == 1 and ps["verdict"] == "better" and ps["ci_low"] > 0
    assert ps["diff"] == pytest.approx(ps["long"] - ps["short"])
    assert ps["short"] == pytest.approx(json.loads((tmp_path / "runs" / short / "caduceus_ps" / "seed0" /
                                                    "metrics.json").read_text())["metrics"]["auroc"])
    assert ps["method"].startswith("bootstrap over 1 seed(s) and 600 items")
    assert ctx["cnn"]["verdict"] == "no detectable difference"
    # different test windows cannot be paired by window; one seed gives no t interval either
    bad = tmp_path / "other"
    _run(bad, short, "cnn", 0, rng.random(600), y)
    _run(bad, long_, "cnn", 0, rng.random(600), 1 - y)
    (row,) = compare.context_gain(compare.load_all(bad, tasks, ["cnn"]), tasks, {long_: short})
    assert row["verdict"] == "no interval"
    budget = {t: FULL_BUDGET[t] for t in (short, long_)}
    write_results(tmp_path, rows, budget, "caduceus bench", tmp_path / "REPORT.md", {})
    csv = (tmp_path / "bench_context.csv").read_text().splitlines()
    assert csv[0] == ",".join(compare.CONTEXT_COLUMNS) and len(csv) == 3
    report = (tmp_path / "REPORT.md").read_text()
    short_line = next(line for line in report.splitlines() if line.startswith(f"- **{short}**"))
    assert f"This is the control view of {long_}" in short_line and "chance is the expected result" in short_line
    long_line = next(line for line in report.splitlines() if line.startswith(f"- **{long_}**"))
    assert "control view" not in long_line
    assert "## Does context help?" in report and "Context helps (interval above 0): caduceus_ps." in report
