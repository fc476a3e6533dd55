"""`caduceus bench`: the suite's bookkeeping (partial results, clear stops) and a real quick run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from caduceus_plugin import bench
from caduceus_plugin.errors import CaduceusError


def _fake_sweep(failing: set[str]):  # type: ignore[no-untyped-def]
    def run_sweep(task, model, seeds, out, extra, timeout, weights=None):  # type: ignore[no-untyped-def]
        if task.name in failing:
            return 2, f"error: cannot fetch r-cran-mlbench 2.1-3-1 from Debian (no network; {task.name})"
        for seed in seeds:
            run = out / "runs" / task.name / model / f"seed{seed}"
            run.mkdir(parents=True)
            metrics = {"accuracy": 0.6 + 0.1 * seed, "auroc": 0.7 + 0.05 * seed, "mcc": 0.2}
            (run / "metrics.json").write_text(json.dumps({
                "model": model, "seed": seed, "metrics": metrics, "n_parameters": 1000, "epochs": 1, "n_train": 10,
                "seq_len": 200, "train_seconds": 1.5}))
        return 0, ""

    return run_sweep


def test_summary_is_mean_and_sd_over_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "run_sweep", _fake_sweep(set()))
    rows = bench.run_bench(["caduceus_ps", "cnn"], ["oct4_mafk"], [0, 1, 2], tmp_path, tmp_path / "R.md", quick=True)
    assert len(rows) == 6
    summary = bench.summarise(rows)
    ps = summary.filter(summary["model"] == "caduceus_ps").row(0, named=True)
    assert ps["n_seeds"] == 3 and ps["accuracy_mean"] == pytest.approx(0.7) and ps["accuracy_sd"] == pytest.approx(0.1)
    report = (tmp_path / "R.md").read_text()
    assert "| oct4_mafk | caduceus_ps | 1,000 | 3 | 0.700 ± 0.100 |" in report
    assert (tmp_path / "bench_summary.parquet").exists() and (tmp_path / "bench_metrics.png").exists()


def test_missing_data_source_stops_clearly_and_keeps_partial_results(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "run_sweep", _fake_sweep({"splice"}))
    with pytest.raises(CaduceusError, match=r"cannot fetch r-cran-mlbench.*partial results kept"):
        bench.run_bench(["caduceus_ps"], ["oct4_mafk", "splice"], [0, 1, 2], tmp_path, tmp_path / "R.md", quick=True)
    runs = (tmp_path / "bench_runs.csv").read_text().splitlines()
    assert len(runs) == 4 and all(r.startswith("oct4_mafk,caduceus_ps") for r in runs[1:])
    assert "oct4_mafk" in (tmp_path / "R.md").read_text()


def test_unknown_model_or_task_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In-process (one real process is enough to show the CLI prints no traceback: tests/cli/test_bad_input.py)."""
    from caduceus_plugin.cli import main

    for argv, needle in ((["--models", "caduceus_pz"], "unknown backbone 'caduceus_pz'"),
                         (["--models", "cnn", "--weights", "caduceus_ps=/x"], "not among --models"),
                         (["--models", "cnn", "--weights", "cnn=/nonexistent"], "no such file"),
                         (["--tasks", "nope"], "unknown task 'nope'")):
        code = main(["bench", "--quick", "--out", str(tmp_path), *argv])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and needle in err, err
        assert err.count("\n") == 1


@pytest.mark.slow
def test_quick_bench_runs_end_to_end_on_real_data(tmp_path: Path) -> None:
    from caduceus_plugin import data as datasets

    try:
        datasets.load_task("oct4_mafk", quick=16)
    except datasets.DataSourceError as err:
        pytest.skip(f"real data not available: {err}")
    proc = subprocess.run([sys.executable, "-m", "caduceus_plugin.cli", "bench", "--quick", "--models", "caduceus_ps",
                           "cnn", "--tasks", "oct4_mafk", "--seeds", "0", "1", "--no-vep", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = (tmp_path / "bench_summary.csv").read_text().splitlines()
    assert summary[0].startswith("task,model,n_seeds") and len(summary) == 3
    report = (tmp_path / "REPORT.md").read_text()
    assert "| oct4_mafk | caduceus_ps |" in report and "| oct4_mafk | cnn |" in report
    assert "Compute: throughput and memory against length" in report


def test_paper_budget_is_the_authors_protocol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def run_sweep(task, model, seeds, out, extra, timeout, weights=None):  # type: ignore[no-untyped-def]
        seen[task.name] = (list(seeds), task.overrides())
        return _fake_sweep(set())(task, model, seeds, out, extra, timeout, weights)

    monkeypatch.setattr(bench, "run_sweep", run_sweep)
    bench.run_bench(["cnn"], ["oct4_mafk", "splice"], [0, 1, 2], tmp_path, tmp_path / "R.md", budget_name="paper",
                    seeds_given=False)
    assert seen["oct4_mafk"][0] == [0, 1, 2, 3, 4] and len(seen["splice"][0]) == 10
    ov = seen["oct4_mafk"][1]
    assert {"trainer=gpu", "task.lr=0.002", "trainer.max_epochs=10", "data.batch_size=256", "data.quick=false",
            "early_stopping_patience=0"} <= set(ov)
    with pytest.raises(Exception, match="unknown --budget"):
        bench.run_bench(["cnn"], None, [0], tmp_path, tmp_path / "R.md", budget_name="huge")


def test_budgets_cover_the_benchmark_tasks() -> None:
    """The default budget is the suite ``caduceus_plugin.data.BENCHMARK_TASKS`` names, in its order; the paper
    budget covers the same tasks; every budget's key is its task's name and names a loadable task with its data."""
    from caduceus_plugin.data import BENCHMARK_TASKS
    from caduceus_plugin.data.tasks import _BUILDERS
    from caduceus_plugin.jobs.bench.run import BUDGETS, CONTEXT_PAIRS, FULL_BUDGET, PAPER_BUDGET

    assert tuple(FULL_BUDGET) == BENCHMARK_TASKS
    assert set(PAPER_BUDGET) == set(FULL_BUDGET)
    for budget in BUDGETS.values():
        for key, task in budget.items():
            assert task.name == key and key in _BUILDERS and task.data in _BUILDERS
    for long_, short in CONTEXT_PAIRS.items():
        assert long_ in FULL_BUDGET and short in FULL_BUDGET
        assert FULL_BUDGET[long_].data == FULL_BUDGET[short].data


def test_a_suite_run_in_sittings_keeps_every_command_and_the_skipped_sections(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A second invocation into the same OUT (other tasks, ``--no-vep``) adds its command to the history and keeps
    the variant-effect section the first one computed; ``--report-only`` shows itself without joining the history."""
    monkeypatch.setattr(bench, "run_sweep", _fake_sweep(set()))
    first = {"Zero-shot variant effect": "VEP TABLE v1", "Compute": "compute v1"}
    bench.run_bench(["cnn"], ["oct4_mafk"], [0], tmp_path, tmp_path / "R.md", quick=True,
                    command="caduceus bench --tasks oct4_mafk", extras_fn=lambda: dict(first))
    bench.run_bench(["cnn"], ["splice"], [0], tmp_path, tmp_path / "R.md", quick=True,
                    command="caduceus bench --tasks splice --no-vep", extras_fn=lambda: {"Compute": "compute v2"})
    history = (tmp_path / "command.txt").read_text().splitlines()
    assert [h.split(None, 1)[1] for h in history] == ["caduceus bench --tasks oct4_mafk",
                                                      "caduceus bench --tasks splice --no-vep"]
    report = (tmp_path / "R.md").read_text()
    assert "`caduceus bench --tasks oct4_mafk`" in report and "`caduceus bench --tasks splice --no-vep`" in report
    assert "VEP TABLE v1" in report and "compute v2" in report and "compute v1" not in report
    assert json.loads((tmp_path / "extras.json").read_text()) == {"Zero-shot variant effect": "VEP TABLE v1",
                                                                  "Compute": "compute v2"}
    rows = bench.report_only(tmp_path, tmp_path / "R.md", True, "caduceus bench --report-only",
                             lambda: {"Compute": "compute v3"})
    assert {r["task"] for r in rows} == {"oct4_mafk", "splice"}
    report = (tmp_path / "R.md").read_text()
    assert "`caduceus bench --report-only` — tables and report rebuilt" in report and "VEP TABLE v1" in report
    assert (tmp_path / "command.txt").read_text().splitlines() == history
