"""`caduceus train`: Hydra composition (groups, third-party models, search path), real fine-tunes, multirun, DDP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.registry.test_plugins import TOY, _fake_distribution

pytest.importorskip("hydra")

TINY = ["model.params.d_model=16", "model.params.n_layer=2", "trainer.max_epochs=1"]


@pytest.fixture(scope="module")
def real_tasks() -> None:
    """The real data the fine-tunes use (fetched by .ci/setup into the cache); skip with the reason if absent."""
    from caduceus_plugin import data as datasets

    try:
        datasets.load_task("oct4_mafk", quick=16)
        datasets.load_task("splice", quick=16)
    except datasets.DataSourceError as err:
        pytest.skip(f"real data not available: {err}")


def _train(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "caduceus_plugin.hosts.grelu.train", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _compose(overrides: list[str]):  # type: ignore[no-untyped-def]
    from hydra import compose, initialize_config_module

    from caduceus_plugin.hosts.grelu.train import _store_registered_models

    _store_registered_models()
    with initialize_config_module(config_module="caduceus_plugin.hosts.grelu.conf", version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def test_default_config_composes_every_group() -> None:
    cfg = _compose([])
    assert cfg.model.name == "caduceus_ps" and cfg.data.name == "oct4_mafk" and cfg.trainer.accelerator == "cpu"
    ph = _compose(["model=caduceus_ph", "data=splice", "task=multiclass", "trainer=ddp_cpu"])
    assert ph.model.rc_augment is True and ph.task.loss == "ce" and ph.trainer.strategy == "ddp"
    for name in ("hyenadna", "enformer", "cnn"):  # registered backbones without YAML are valid choices too
        assert _compose([f"model={name}"]).model.name == name


def test_unknown_model_is_one_line_listing_the_available_ones(tmp_path: Path) -> None:
    out = _train(["model=caduceus_pz", "--cfg", "job"], tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
    assert "Could not find 'model/caduceus_pz': choose one of caduceus_ph, caduceus_ps, cnn" in out.stderr
    assert not list(tmp_path.iterdir())  # nothing written, not even Hydra's run directory


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["nonsense"], "cannot parse the override 'nonsense': missing EQUAL"),
        (["data=nope"], "Could not find 'data/nope': choose one of oct4_mafk, promoter_chr20, splice"),
        (["trainer.foo=1"], "Could not override 'trainer.foo'; to append to your config use +trainer.foo=1"),
        (["seed=0,1"], "seed=0,1 is a sweep (several values): add -m"),
        (["-m", "model=caduceus_ps,caduceus_pz"], "Could not find 'model/caduceus_pz'"),  # every value is composed
        (["--cfg", "job", "task=nope"], "Could not find 'task/nope'"),
    ],
    ids=["no-equals", "unknown-data", "unknown-key", "sweep-without-m", "bad-sweep-value", "after-a-flag"],
)
def test_bad_overrides_are_named_before_hydra_starts(argv: list[str], needle: str) -> None:
    from caduceus_plugin.hosts.grelu.train import override_error

    problem = override_error(argv)
    assert problem is not None and needle in problem and "\n" not in problem, problem


def test_good_command_lines_pass_the_override_check() -> None:
    from caduceus_plugin.hosts.grelu.train import override_error

    assert override_error([]) is None
    assert override_error(["-m", "model=caduceus_ps,caduceus_ph", "seed=range(2)", "+trainer.foo=1"]) is None
    assert override_error(["--cfg", "job", "--info", "model=cnn", "trainer.max_epochs=2"]) is None
    assert override_error(["--config-name", "other", "x=1"]) is None  # another config: left to Hydra


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs='abc': expected a positive integer"),
        ("data.batch_size=0", "data.batch_size=0: expected a positive integer"),
        ("task.lr=-1", "task.lr=-1: expected a positive number"),
        ("task.optimizer=adamw", "task.optimizer='adamw': expected adam or sgd"),
        ("seed=1.5", "seed=1.5: expected an integer"),
        ("init_checkpoint=/no/such.ckpt", "expected null or an existing gReLU .ckpt file"),
    ],
)
def test_bad_config_values_are_refused_before_any_work(override: str, needle: str) -> None:
    from caduceus_plugin.errors import InputError
    from caduceus_plugin.hosts.grelu.train import check_config

    check_config(_compose([]))  # the defaults pass
    with pytest.raises(InputError, match=re.escape(needle)):
        check_config(_compose([override]))


def test_trainer_arguments_lightning_refuses_are_input_errors() -> None:
    from caduceus_plugin.errors import InputError
    from caduceus_plugin.hosts.grelu.train import _trainer

    with pytest.raises(InputError, match="unexpected keyword argument 'foo'"):
        _trainer(foo=1)
    with pytest.raises(InputError, match="Precision 'foo' is invalid"):
        _trainer(precision="foo", logger=False, enable_checkpointing=False)


def test_third_party_backbone_is_a_valid_model_choice(tmp_path: Path) -> None:
    _fake_distribution(tmp_path, "fakehydra", "fake_hydra_toy", TOY)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = _train(["model=toy_cnn", "--cfg", "job"], tmp_path, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "name: toy_cnn" in out.stdout


def test_another_hydra_app_composes_our_model_group(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from caduceus_plugin.hosts.grelu.train import CONFIG_SEARCH_PATH

    (tmp_path / "app.yaml").write_text(
        f"defaults:\n  - model: caduceus_ph\n  - _self_\nhydra:\n  searchpath:\n    - {CONFIG_SEARCH_PATH}\nlr: 0.1\n"
    )
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        cfg = compose(config_name="app", overrides=["model.params.n_layer=2"])
    assert cfg.model.name == "caduceus_ph" and cfg.model.params.n_layer == 2 and cfg.lr == 0.1


def test_task_that_does_not_fit_the_data_is_one_clear_line(tmp_path: Path, real_tasks: None) -> None:
    out = _train(["data=oct4_mafk", "data.quick=16", "task=multiclass", *TINY, f"out_dir={tmp_path}"], tmp_path)
    assert out.returncode == 2
    assert "error: task=multiclass does not fit data=oct4_mafk, which is binary; use task=binary" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "model.ckpt").exists()


@pytest.mark.slow
def test_fine_tune_on_real_peaks_writes_a_grelu_checkpoint(tmp_path: Path, real_tasks: None) -> None:
    """Oct4 vs Mafk ChIP-seq peaks (janggu; real hg19 sequence), quick subsample, one epoch."""
    run = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "caduceus_plugin.cli", "train", "model=caduceus_ps",
                          "data=oct4_mafk", "data.quick=200", *TINY, f"out_dir={run}"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test metrics (caduceus_ps on oct4_mafk" in out.stdout
    summary = json.loads((run / "metrics.json").read_text())
    assert set(summary["metrics"]) == {"accuracy", "auroc", "mcc"}
    assert 0.0 <= summary["metrics"]["auroc"] <= 1.0 and summary["world_size"] == 1
    assert "Epoch 0" in out.stderr + out.stdout  # Lightning's progress bar
    script = f"""
import caduceus_plugin
from grelu.lightning import LightningModel
m = LightningModel.load_from_checkpoint({str(run / "model.ckpt")!r}, weights_only=False)
assert m.model_params["model_type"] == "caduceus_ps", m.model_params
assert m.data_params["train"]["seq_len"] == 200, m.data_params["train"]
print(m.predict_on_seqs(["ACGT" * 50]).shape)
"""
    check = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-2000:]
    assert "(1, 1, 1)" in check.stdout
    # the checkpoint is a `caduceus predict --weights` input: task predictions per BED row
    from caduceus_plugin.demo_data import paths

    demo = paths()
    pred = subprocess.run([sys.executable, "-m", "caduceus_plugin.cli", "predict", "--fasta", str(demo["fasta"]),
                           "--bed", str(demo["tss"]), "--weights", str(run / "model.ckpt"), "--out",
                           str(tmp_path / "p.tsv")], capture_output=True, text=True, timeout=300)
    assert pred.returncode == 0, pred.stderr[-2000:]
    lines = (tmp_path / "p.tsv").read_text().splitlines()
    assert lines[0].endswith("pred_Oct4") and len(lines) == 1 + 32


def test_bf16_mixed_precision_trains_through_caduceus_train(tmp_path: Path, real_tasks: None) -> None:
    """``trainer.precision=bf16-mixed`` on CPU: Lightning's bf16 autocast through the fused training path (the
    projections in bf16, scan and norms float32); the run finishes with finite metrics."""
    run = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "caduceus_plugin.cli", "train", "model=caduceus_ps",
                          "data=oct4_mafk", "data.quick=64", *TINY, "trainer.precision=bf16-mixed",
                          f"out_dir={run}"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "bf16" in (out.stdout + out.stderr)  # Lightning reports the precision it uses
    summary = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= summary["metrics"]["auroc"] <= 1.0
    # the per-example test predictions behind bench_compare.csv's intervals give back the reported metric
    import numpy as np

    from caduceus_plugin.data.stats import auroc

    with np.load(run / "test_predictions.npz") as z:
        assert z["scores"].shape == z["labels"].shape and len(z["labels"]) > 0
        assert auroc(z["labels"], z["scores"]) == pytest.approx(summary["metrics"]["auroc"], abs=1e-4)


@pytest.mark.slow
def test_multirun_trains_models_side_by_side(tmp_path: Path, real_tasks: None) -> None:
    out = _train(["-m", "model=caduceus_ps,caduceus_ph", "data=splice", "data.quick=48", *TINY,
                  f"hydra.sweep.dir={tmp_path / 'sweep'}", "out_dir=${hydra:runtime.output_dir}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summaries = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert [json.loads(p.read_text())["model"] for p in summaries] == ["caduceus_ps", "caduceus_ph"]
    assert all(set(json.loads(p.read_text())["metrics"]) == {"accuracy", "mcc"} for p in summaries)  # splice


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_by_configuration_alone(tmp_path: Path, real_tasks: None) -> None:
    out = _train(["trainer=ddp_cpu", "data=oct4_mafk", "data.quick=48", *TINY, f"out_dir={tmp_path / 'ddp'}"],
                 tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert summary["world_size"] == 2
    assert "MEMBER: 2/2" in out.stderr + out.stdout  # Lightning's rank announcement from the second process
