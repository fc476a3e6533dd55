"""The measurement protocol of benchmarks/compute.py and benchmarks/gpu_check.py (no model run), and the inference
profiler on the shipped tiny model.

``benchmarks/`` is not a package: the scripts are imported by path. Nothing here times anything.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


compute = _load("compute")
gpu_check = _load("gpu_check")


def _row(model: str, median: float, spread: float, repeats: int = 3, **extra) -> dict:
    return {"model": model, "backend": "x", "mode": "infer", "length": 4096, "batch": 1, "repeats": repeats,
            "tokens_per_s_median": median, "tokens_per_s_min": median * (1 - spread / 2),
            "tokens_per_s_max": median * (1 + spread / 2), "spread": spread, "seconds": 1.0, "peak_rss_gb": 0.5,
            **extra}


# --------------------------------------------------------------------------------------------------------------------
# schedule and statistics


def test_interleaved_schedule_runs_round_by_round() -> None:
    order = compute.interleaved_schedule(["A", "B", "C"], 3)
    assert order == [(1, "A"), (1, "B"), (1, "C"), (2, "A"), (2, "B"), (2, "C"), (3, "A"), (3, "B"), (3, "C")]
    pair = [cell for _, cell in compute.interleaved_schedule(["A", "B"], 4)]
    assert pair == ["A", "B"] * 4  # never two runs of one cell in a row


def test_summarize_median_min_max_spread() -> None:
    s = compute.summarize([120.0, 80.0, 100.0])
    assert s == {"median": 100.0, "min": 80.0, "max": 120.0, "spread": pytest.approx(0.4)}
    assert compute.summarize([1.0, 2.0, 3.0, 4.0])["median"] == 2.5
    assert compute.summarize([5.0, 5.0, 5.0])["spread"] == 0.0
    assert compute.summarize([]) == {"median": None, "min": None, "max": None, "spread": None}


def test_aggregate_keeps_every_run_and_the_medians() -> None:
    runs = [{"backend": "numba", "tokens_per_s": t, "seconds": 4096 / t, "peak_rss_gb": g}
            for t, g in ((110.0, 0.52), (90.0, 0.50), (100.0, 0.51))]
    row = compute.aggregate(("caduceus_ps", "auto", 4096, 1, "infer"), runs, 3)
    assert row["backend"] == "numba" and row["repeats"] == 3
    assert row["tokens_per_s"] == row["tokens_per_s_median"] == 100.0  # tokens_per_s: the median (caduceus bench)
    assert (row["tokens_per_s_min"], row["tokens_per_s_max"]) == (90.0, 110.0)
    assert row["spread"] == pytest.approx(0.2)
    assert row["tokens_per_s_all"] == "110.0;90.0;100.0"  # round order
    assert row["peak_rss_gb"] == 0.51 and row["peak_rss_gb_all"] == "0.520;0.500;0.510"
    assert row["seconds"] == pytest.approx(4096 / 100, abs=1e-3)
    assert not row.get("error") and not row.get("note")


def test_aggregate_failed_runs() -> None:
    cell = ("caduceus_ps", "auto", 4096, 1, "infer")
    ok = {"backend": "numba", "tokens_per_s": 100.0, "seconds": 1.0, "peak_rss_gb": 0.5}
    partial = compute.aggregate(cell, [ok, {"error": "MemoryError"}], 3)
    assert partial["repeats"] == 1 and "1 of 2 runs failed: MemoryError" in partial["note"]
    assert "1 later rounds skipped" in partial["note"]
    assert compute.is_noisy(partial)  # one run: no ratio
    failed = compute.aggregate(cell, [{"error": "timeout > 1800s"}], 3)
    assert failed["error"] == "timeout > 1800s" and failed["repeats"] == 0


# --------------------------------------------------------------------------------------------------------------------
# the noisy rule


def test_ratio_printed_at_spread_02_noisy_at_03() -> None:
    ps, hy = _row("caduceus_ps", 150.0, 0.2), _row("hyenadna", 100.0, 0.2)
    assert compute.ratio_text(ps, hy, "HyenaDNA") == "1.50x HyenaDNA"
    assert compute.ratio_text(ps, _row("hyenadna", 100.0, 0.3), "HyenaDNA") == "noisy: rerun"
    assert compute.ratio_text(_row("caduceus_ps", 150.0, 0.3), hy, "HyenaDNA") == "noisy: rerun"
    assert compute.ratio_text(_row("caduceus_ps", 150.0, 0.25), _row("hyenadna", 100.0, 0.25), "H") == "1.50x H"
    assert compute.ratio_text(_row("caduceus_ps", 150.0, 0.1, repeats=2), hy, "H") == "noisy: rerun"
    # a quoted figure is a number: only the measured side's spread counts
    assert compute.ratio_text(ps, 300, "quoted", digits=1) == "0.5x quoted"
    assert compute.ratio_text(_row("caduceus_ps", 150.0, 0.3), 300, "quoted") == "noisy: rerun"


@pytest.mark.parametrize(("spread", "shown", "hidden"),
                         [(0.2, "1.50x HyenaDNA", "noisy"), (0.3, "noisy: rerun", "x HyenaDNA")])
def test_table_and_csv_follow_the_noisy_rule(spread: float, shown: str, hidden: str, capsys, tmp_path) -> None:
    cells = [("hyenadna", "auto", 4096, 1, "infer"), ("caduceus_ps", "auto", 4096, 1, "infer")]
    rows = [_row("hyenadna", 100.0, 0.2), _row("caduceus_ps", 150.0, spread)]
    compute.compare(rows, cells)
    assert rows[1]["vs_hyenadna"] == ("1.500" if spread == 0.2 else "noisy: rerun")
    assert rows[0]["vs_hyenadna"] == "" and rows[1]["vs_ref"] == ""  # no baseline: nothing
    compute.print_row(rows[1])
    line = capsys.readouterr().out
    assert shown in line and hidden not in line.split("0.50", 1)[1]  # after the memory column


def test_ref_ratio_per_model() -> None:
    cells = [("caduceus_ps", "auto", 4096, 1, "infer"), ("caduceus_ps", "ref", 4096, 1, "infer"),
             ("caduceus_ph", "auto", 4096, 1, "infer")]
    rows = [_row("caduceus_ps", 600.0, 0.1), _row("caduceus_ps", 100.0, 0.1), _row("caduceus_ph", 900.0, 0.1)]
    compute.compare(rows, cells)
    assert rows[0]["vs_ref"] == "6.000" and rows[1]["vs_ref"] == "" and rows[2]["vs_ref"] == ""


def test_plan_puts_hyenadna_first_and_has_no_repeats_in_cells() -> None:
    args = argparse.Namespace(models=["caduceus_ps", "hyenadna"], backends=["auto", "ref"], lengths=[1024, 8192],
                              batches=[1], batch_len=4096, train_len=0, ref_max_len=4096)
    cells = compute.plan(args)
    assert cells[0][0] == "hyenadna" and all(len(c) == 5 for c in cells)
    assert ("caduceus_ps", "ref", 8192, 1, "infer") not in cells  # beyond --ref-max-len
    assert ("caduceus_ps", "ref", 1024, 1, "infer") in cells


def test_plan_trains_caduceus_and_hyenadna_at_every_batch() -> None:
    args = argparse.Namespace(models=["caduceus_ps", "hyenadna", "cnn"], backends=["auto", "auto+bf16"],
                              lengths=[1024], batches=[32], batch_len=1024, train_len=1024, ref_max_len=4096)
    cells = compute.plan(args)
    train = [c for c in cells if c[4] == "train"]
    assert train == [("hyenadna", "auto", 1024, 32, "train"), ("caduceus_ps", "auto", 1024, 32, "train")]
    assert ("caduceus_ps", "auto", 1024, 32, "infer") in cells and ("hyenadna", "auto", 1024, 32, "infer") in cells
    args.batches, args.train_len = [1, 4], 0
    assert not [c for c in compute.plan(args) if c[4] == "train"]
    # +avx256 (LLVM's default vector width) trains too; +bf16 (projections) is inference only, alone or combined
    args.backends, args.batches, args.train_len = ["auto", "auto+avx256", "auto+bf16+avx256"], [8], 1024
    train = [c[1] for c in compute.plan(args) if c[4] == "train" and c[0] == "caduceus_ps"]
    assert train == ["auto", "auto+avx256"]


# --------------------------------------------------------------------------------------------------------------------
# model sizes


@pytest.mark.parametrize(("model", "low", "high"), [("caduceus_ps", 0.40e6, 0.55e6), ("caduceus_ph", 0.40e6, 0.55e6),
                                                    ("hyenadna", 0.40e6, 0.50e6)])
def test_small_size_builds_the_fine_tune_models(model: str, low: float, high: float) -> None:
    w = compute.build(model, 64, 2, size="small")
    assert low <= w.params <= high
    assert w.params == sum(p.numel() for p in w.net.parameters())
    assert tuple(w.full.shape) == (2, 64)
    if model.startswith("caduceus_"):
        assert (w.net.config.d_model, w.net.config.n_layer) == (118, 4)
        assert w.net.config.rcps is (model == "caduceus_ps")
        assert w.params == w.net.num_parameters() == 470702  # the released 1k_d118_l4 checkpoints
    else:
        assert w.net.config.d_model == 128 and w.net.config.l_max == 1026  # HyenaDNA tiny_1k


def test_unknown_size_is_refused(capsys) -> None:
    with pytest.raises(SystemExit) as err:
        compute.build_parser().parse_args(["--size", "huge"])
    assert err.value.code == 2
    assert "--size: invalid choice: 'huge'" in capsys.readouterr().err
    assert compute.build_parser().parse_args([]).size == "default"
    with pytest.raises(ValueError, match="unknown size"):
        compute.build("hyenadna", 64, 2, size="huge")


def test_table_shows_size_and_params_and_no_quoted_figures_for_small(capsys) -> None:
    default = _row("caduceus_ps", 150.0, 0.1, size="default", params=7725312)
    small = _row("caduceus_ps", 150.0, 0.1, size="small", params=470702)
    compute.print_row(default)
    compute.print_row(small)
    first, second = capsys.readouterr().out.splitlines()
    assert "default  7.73M" in first and "quoted" in first
    assert "small  0.47M" in second and "quoted" not in second


# --------------------------------------------------------------------------------------------------------------------
# command lines


predict_throughput = _load("predict_throughput")


@pytest.mark.parametrize("module", [compute, gpu_check, predict_throughput], ids=["compute", "gpu_check", "predict"])
def test_repeats_below_three_is_an_argparse_error(module, capsys) -> None:
    with pytest.raises(SystemExit) as err:
        module.build_parser().parse_args(["--repeats", "2"])
    assert err.value.code == 2
    assert "--repeats: at least 3 repeats (got 2)" in capsys.readouterr().err
    assert module.build_parser().parse_args([]).repeats == 3
    assert module.build_parser().parse_args(["--repeats", "5"]).repeats == 5


def _run_gpu_check(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # no CUDA, on any machine
    return subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), *args, "--out",
                           str(tmp_path / "gpu_check.csv")], capture_output=True, text=True, env=env, timeout=120)


def test_gpu_check_dry_run_prints_the_plan(tmp_path) -> None:
    proc = _run_gpu_check("--dry-run", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "# plan" in out and "parity, scan" in out and "parity, model" in out
    for mode, length in (("train", 8192), ("infer", 131072), ("train", 131072)):
        assert f"{mode} {length:>8} bp: " + " ".join(["caduceus_ps hyenadna"] * 3) in out
    assert out.index("train     8192") < out.index("infer   131072") < out.index("train   131072")
    assert "Traceback" not in proc.stderr and not (tmp_path / "gpu_check.csv").exists()
    skipped = _run_gpu_check("--dry-run", "--skip-speed", "--skip-parity", tmp_path=tmp_path)
    assert skipped.returncode == 0 and "speed: skipped" in skipped.stdout and "parity: skipped" in skipped.stdout


def test_gpu_check_refuses_without_cuda(tmp_path) -> None:
    proc = _run_gpu_check(tmp_path=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "CUDA is not available" in lines[0] and "--dry-run" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "gpu_check.csv").exists()


def test_gpu_check_speed_groups_cheapest_first() -> None:
    groups = gpu_check.speed_groups([131072], [8192, 131072])
    assert [g[0][1:] for g in groups] == [("train", 8192), ("infer", 131072), ("train", 131072)]
    assert all([m for m, _, _ in g] == ["caduceus_ps", "hyenadna"] for g in groups)


# --------------------------------------------------------------------------------------------------------------------
# benchmarks/pretrain_ablation.py: equal budgets, paired intervals, the report's verdicts (no training here)

ablation = _load("pretrain_ablation")


def test_ablation_runs_get_equal_tokens_and_near_equal_parameters(tmp_path: Path) -> None:
    from caduceus_plugin.jobs.pretrain.run import build_model

    for length in (1024, 8192):
        cfgs = {m: ablation.run_config(s, length, 0, 1e6, tmp_path, 1, "x.fa") for m, s in ablation.MODELS.items()}
        assert len({c.steps * c.batch_size * c.seq_len for c in cfgs.values()}) == 1  # the same training tokens
        assert len({c.val_windows * c.seq_len for c in cfgs.values()}) == 1  # the same held-out bases
        counts = {m: build_model(c).num_parameters() for m, c in cfgs.items()}
        for c in ablation.COMPARISONS:
            a, b = counts[c.first], counts[c.second]
            assert abs(a - b) / max(a, b) <= 0.025, (c.name, a, b)
    assert cfgs["caduceus_ps"].rcps and not cfgs["caduceus_ph_rc"].rcps and cfgs["caduceus_ph_rc"].augment
    assert cfgs["hyenadna_ntp"].objective == cfgs["mamba_ntp"].objective == "ntp"


def _fake_run(out: Path, length: int, model: str, seed: int, windows: list[float]) -> None:
    import json

    run = out / "runs" / f"L{length}" / model / f"seed{seed}"
    run.mkdir(parents=True)
    final = {"step": 4, "tokens_seen": 32768, "val_nuc_loss": sum(windows) / len(windows)}
    (run / "training.json").write_text(json.dumps({
        "complete": True, "model": {"parameters": 1000}, "final": final, "final_window_nuc_loss": windows,
        "initial": {"val_nuc_loss": 1.39}, "history": [final], "wall_time_s": 3.0}))


def test_ablation_verdicts_follow_the_interval(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    hard = rng.normal(1.3, 0.05, 64)  # per-window difficulty, shared: pairing removes it
    for seed in (0, 1):
        noise = lambda: rng.normal(0, 0.002, 64)  # noqa: E731
        _fake_run(tmp_path, 1024, "caduceus_ps", seed, list(hard - 0.03 + noise()))  # clearly lower: holds
        _fake_run(tmp_path, 1024, "caduceus_ph_rc", seed, list(hard + noise()))
        _fake_run(tmp_path, 1024, "bimamba_untied", seed, list(hard - 0.02 + noise()))  # lower than tied: reversed
        _fake_run(tmp_path, 1024, "mamba_ntp", seed, list(hard + 0.01 * rng.normal(size=64)))  # indistinguishable
        _fake_run(tmp_path, 1024, "hyenadna_ntp", seed, list(hard + 0.01 * rng.normal(size=64)))
    recs = ablation.collect(tmp_path)
    rows = {r["comparison"]: r for r in ablation.compare(recs)}
    assert rows["PS vs Ph + RC aug"]["verdict"] == "holds here"
    assert rows["tied vs untied BiMamba"]["verdict"] == "reversed here"
    assert rows["Mamba vs HyenaDNA (next-token)"]["verdict"] == "not detectable at this scale"
    assert "bi- vs uni-directional" not in rows  # no uni-directional runs: no row, no guess
    assert rows["PS vs Ph + RC aug"]["n_seeds"] == 2 and rows["PS vs Ph + RC aug"]["n_windows"] == 64
    report = ablation.write_outputs(tmp_path, recs, list(rows.values()), "python benchmarks/pretrain_ablation.py")
    assert "**holds here**" in report and "**reversed here**" in report
    header = (tmp_path / "ablation.csv").read_text().splitlines()[0]
    assert header == "comparison,length,seed,model,params,tokens,heldout_ce"
    assert (tmp_path / "ablation_compare.csv").exists() and (tmp_path / "curves.png").stat().st_size > 0


# ---------------------------------------------------------------------------------------------------------------
# benchmarks/train_builtin.py: the next built-in model's recipe and the run's status (no training here)

train_builtin = _load("train_builtin")


def test_builtin_recipe_is_the_issue_s_model(tmp_path: Path) -> None:
    """About 2M parameters, >= 80M tokens (20x the shipped 4.1M) at 1 kbp, float32 weights under 10 MB, held out
    where the shipped model's validation is, and every sitting resumes."""
    from caduceus_plugin.jobs.pretrain.run import build_model

    cfg = train_builtin.config(tmp_path / "run", "chr20.fa", 30.0, 2)
    model = build_model(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert n == 1_934_592 and n * 4 < 10_000_000
    assert cfg.steps * cfg.batch_size * cfg.seq_len >= 80_000_000 and cfg.seq_len >= 1024
    assert cfg.rcps and cfg.resume and cfg.max_minutes == 30.0 and not cfg.augment
    assert cfg.val_region == "chr20:1-4000000" and cfg.identity()["d_model"] == 256


def test_builtin_status_reads_the_run(tmp_path: Path) -> None:
    import json

    assert "not started" in train_builtin.status(tmp_path)
    hist = [{"step": s, "tokens_seen": s * 16384, "elapsed_s": s * 16.384, "val_loss": 1.30 - s / 10_000,
             "val_accuracy": 0.4 + s / 100_000} for s in (50, 100, 150, 200)]
    (tmp_path / "training.json").write_text(json.dumps({
        "history": hist, "sittings": [{"from_step": 0}, {"from_step": 150}], "complete": False,
        "settings": {"seq_len": 1024, "val_windows": 64, "seed": 0}}))
    text = train_builtin.status(tmp_path)
    assert "step 200/5,000, 3,276,800 of 81,920,000 tokens (4.0%), 2 sitting(s)" in text
    assert "val loss 1.2800" in text and "rate 1,000 tokens/s" in text and "about 21.8 h left" in text
    shipped = json.loads((Path(__file__).parents[1] / "caduceus_plugin" / "weights" / "grch37_chr20_ps" /
                          "training.json").read_text())["history"][-1]["val_loss"]
    assert f"margin now {shipped - 1.28:+.4f} nats" in text and "the same windows" in text


def test_builtin_run_is_carried_in_the_repository() -> None:
    """The run's state must survive a new machine: its carried copy is inside the clone, resume.pt, training.json
    and config.json are tracked there, and model.safetensors (already inside resume.pt) is ignored."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    carry = train_builtin.CARRY
    assert carry.is_relative_to(root) and carry.relative_to(root).parts[0] == "benchmarks"
    assert not train_builtin.DEFAULT_OUT.is_relative_to(root)  # the live run: a commit -a never picks it up
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    rel = [str((carry / name).relative_to(root)) for name in (*train_builtin.CARRIED, "model.safetensors")]
    res = subprocess.run(["git", "check-ignore", *rel], cwd=root, capture_output=True, text=True)
    assert res.stdout.split() == [rel[-1]]


def _fake_builtin_run(path: Path, step: int) -> Path:
    import json

    path.mkdir(parents=True, exist_ok=True)
    (path / "resume.pt").write_bytes(f"state {step}".encode())
    (path / "config.json").write_text("{}")
    hist = [{"step": s, "tokens_seen": s * 16384, "elapsed_s": s * 7.0, "val_loss": 1.2, "val_accuracy": 0.45}
            for s in range(0, step + 1, 50)]
    settings = {"seq_len": 1024, "val_windows": 64, "seed": 0}
    (path / "training.json").write_text(json.dumps({"history": hist, "sittings": [], "settings": settings}))
    return path


def test_builtin_sittings_seed_from_and_carry_to_the_repository_copy(tmp_path: Path) -> None:
    """A new machine (no live run) starts from the carried copy; an older live run is replaced by it, a newer one
    kept; --carry copies forward and never backwards."""
    live, carry = tmp_path / "live", _fake_builtin_run(tmp_path / "carry", 300)
    assert "no run here; the next sitting starts from the carried copy" in train_builtin.status(live, carry)
    assert "step 300" in train_builtin.seed_from_carry(live, carry)
    assert (live / "resume.pt").read_bytes() == b"state 300" and train_builtin.run_step(live) == 300
    assert train_builtin.seed_from_carry(live, carry) is None  # same step: nothing to do
    _fake_builtin_run(live, 450)
    assert train_builtin.seed_from_carry(live, carry) is None and train_builtin.run_step(live) == 450
    assert "carried step 450" in train_builtin.carry_run(live, carry)
    assert (carry / "resume.pt").read_bytes() == b"state 450" and train_builtin.run_step(carry) == 450
    assert not (carry / "model.safetensors").exists()
    _fake_builtin_run(live, 100)  # an older live run must not overwrite the carried one
    assert "newer than" in train_builtin.carry_run(live, carry) and train_builtin.run_step(carry) == 450
    assert "no run to carry" in train_builtin.carry_run(tmp_path / "empty", carry)


def test_builtin_finish_ships_weights_evaluation_and_card(tmp_path: Path) -> None:
    """--finish on a (tiny) complete run: the final weights in the released layout, an evaluation paired against the
    previous model on the same masked positions, a card whose numbers are evaluation.json's; an unfinished run is
    refused and nothing is written."""
    import json

    import torch

    from caduceus_plugin.errors import InputError
    from caduceus_plugin.jobs.pretrain.run import PretrainConfig, pretrain
    from caduceus_plugin.models.caduceus.checkpoint import from_pretrained
    from tests.genomic_data import random_genome, write_fasta

    fasta = str(write_fasta(tmp_path / "g.fa", random_genome(3, {"chr20": 6000})))
    tiny = dict(fasta=fasta, d_model=8, n_layer=1, seq_len=64, batch_size=4, val_region="chr20:1-1280",
                val_windows=4, val_every=2)
    run, prev = tmp_path / "run", tmp_path / "prev"
    pretrain(PretrainConfig(out=str(prev), steps=2, seed=1, **tiny))
    pretrain(PretrainConfig(out=str(run), steps=4, stop_at_step=2, **tiny))
    dest = tmp_path / "ship" / "tiny_2m"
    kw = dict(fasta=fasta, previous=prev, demo_region="chr20:641-1280", windows=6, demo_windows=3, threads=1)
    with pytest.raises(InputError, match="at step 2 of 4"):
        train_builtin.finish(run, dest, **kw)
    assert not dest.exists()
    pretrain(PretrainConfig(out=str(run), steps=4, resume=True, **tiny))
    assert train_builtin.finish(run, dest, **kw) == dest
    assert {p.name for p in dest.iterdir()} == {"config.json", "model.safetensors", "training.json",
                                                "evaluation.json", "MODEL_CARD.md"}
    shipped, trained = from_pretrained(dest).state_dict(), from_pretrained(run).state_dict()
    assert shipped.keys() == trained.keys() and all(torch.equal(shipped[k], trained[k]) for k in shipped)
    ev = json.loads((dest / "evaluation.json").read_text())
    card = (dest / "MODEL_CARD.md").read_text()
    for key, n in (("validation_region", 6), ("demo_slice_check", 3)):
        res = ev[key]
        assert res["n_windows"] == n and res["previous"] == "prev"
        cmp = res["against"]["previous"]
        assert cmp["nuc_loss_diff"]["diff"] == pytest.approx(res["model"]["nuc_loss"] - cmp["model"]["nuc_loss"])
        assert cmp["model"]["window_n"] == res["model"]["window_n"]  # paired: the same masked positions
        assert f"{res['margin_vs_unigram']:+.4f}" in card and f"{cmp['nuc_loss_diff']['diff']:+.4f}" in card
    assert ev["demo_slice_check"]["baseline_training_bases"] == 6000 - 1280  # held-out region kept out too
    info = json.loads((dest / "training.json").read_text())
    assert info["complete"] and "4 steps x batch 4 x 64 bp = 1,024 tokens" in card
    assert f"{info['final']['val_loss']:.4f}" in card and "tiny_2m" in card and "prev" in card


def test_profile_inference_splits_a_checkpoint_s_forward() -> None:
    """``profile_inference.py --weights DIR --batch B``: the parts of a real checkpoint's streaming forward (the
    shipped tiny model, 2 x 300 bp, two forwards) add up to no more than the whole, scan and projections among them."""
    profile_inference = _load("profile_inference")
    weights = Path(__file__).resolve().parents[1] / "caduceus_plugin" / "weights" / "tiny_ps"
    total, spent = profile_inference.profile("caduceus_ps", 300, "fp32", weights=str(weights), batch=2, repeat=2)
    assert {"scan", "projections", "conv + SiLU"} <= set(spent)
    assert all(v > 0 for v in spent.values()) and 0 < sum(spent.values()) <= total
