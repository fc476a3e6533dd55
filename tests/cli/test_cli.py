from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from caduceus_plugin.cli import main


def test_demo_sequence_on_shipped_weights(capsys: pytest.CaptureFixture[str]) -> None:
    from caduceus_plugin.cli.demo import DEMO_SEQUENCE
    from caduceus_plugin.registry.pretrained import shipped_weights

    assert main(["demo", "--sequence", DEMO_SEQUENCE, "--weights", str(shipped_weights("tiny_ps"))]) == 0
    out = capsys.readouterr().out
    assert "Caduceus-PS" in out and "28,000 parameters" in out
    gap = float(out.split("embedding(revcomp(seq))| = ")[1].split()[0])
    assert gap < 1e-5  # the PS model is RC-invariant after strand averaging


def test_main_job_on_the_shipped_real_demo_input(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's main job: built-in pretrained model, real chr20 slice, real TSS and 1000 Genomes SNVs."""
    import numpy as np
    import polars as pl

    from caduceus_plugin.demo_data import paths
    from caduceus_plugin.registry.pretrained import builtin_weights

    builtin = builtin_weights()
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert builtin.name.startswith("grch37_chr20_ps") and builtin.name in out
    table = pl.read_parquet(tmp_path / "demo" / "tss_embeddings.parquet")
    bed = [ln.split("\t") for ln in paths()["tss"].read_text().splitlines() if ln.strip()]
    assert table.height == len(bed)  # one row per BED line, in order, with the BED's own columns
    assert table["start"].to_list() == [int(f[1]) for f in bed] and table["strand"].to_list() == [f[5] for f in bed]
    emb = table.select(pl.col("^emb_.*$")).to_numpy()
    d_model = json.loads((builtin / "config.json").read_text())["d_model"]
    assert emb.shape[1] == d_model and np.isfinite(emb).all()
    assert "-" in table["strand"].to_list()
    gap = float(out.split("max |embedding(-) - embedding(+)| = ")[1].split()[0])
    assert gap < 1e-5  # PS: a minus-strand interval embeds like the same interval on the plus strand
    scores = pl.read_parquet(tmp_path / "demo" / "variant_scores.parquet")
    assert scores.height == 60 and scores.filter(pl.col("status") == "ok").height == 60
    assert np.isfinite(scores["llr"].to_numpy()).all()


def test_demo_with_fixture_weights_and_sequence(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import CADUCEUS_FIXTURES

    assert main(["demo", "--weights", str(CADUCEUS_FIXTURES / "ph_d24_l2_fused"), "--sequence", "ACGTACGTTTGACN"]) == 0
    assert "Caduceus-Ph" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["demo", "--sequence", "ACGU"], "--sequence must be"),
        (["demo", "--out", "/nonexistent/dir/out"], "directory"),
        (["demo", "--weights", "/nonexistent/dir"], "do not exist"),
        (["demo", "--weights", "/nonexistent/dir", "--sequence", "ACGT"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_without_traceback(argv: list[str], needle: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "caduceus_plugin.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and needle in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_info_reports_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "scan backend requested=auto; cpu: " in out
    assert "numba vectors: " in out or "cpu: numba" not in out
    assert "bf16 matrix instructions: " in out
    assert main(["list"]) == 0
    assert "kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16" in capsys.readouterr().out


def test_bad_backend_env_is_one_line() -> None:
    import os

    env = dict(os.environ, CADUCEUS_SCAN_BACKEND="gpu")
    proc = subprocess.run(
        [sys.executable, "-m", "caduceus_plugin.cli", "info"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "error: $CADUCEUS_SCAN_BACKEND must be one of auto, ref, chunked, numba, mamba_ssm, got 'gpu'; fix or unset it"
    ]


def test_bad_matmul_dtype_env_is_one_line(tmp_path) -> None:
    import os

    env = dict(os.environ, CADUCEUS_MATMUL_DTYPE="fp8")
    out = tmp_path / "demo"
    argv = [sys.executable, "-m", "caduceus_plugin.cli", "demo", "--out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: $CADUCEUS_MATMUL_DTYPE must be one of fp32, float32, bf16, bfloat16, got 'fp8'; fix or unset it"
    ]
    assert not out.exists() or not any(out.iterdir())  # nothing written


@pytest.mark.parametrize("command", ["info", "demo"])
def test_bad_cpu_gemm_env_is_one_line(command: str, tmp_path) -> None:
    import os

    env = dict(os.environ, CADUCEUS_CPU_GEMM="mkl")
    out = tmp_path / "demo"
    argv = [sys.executable, "-m", "caduceus_plugin.cli", command] + (["--out", str(out)] if command == "demo" else [])
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: $CADUCEUS_CPU_GEMM must be one of auto, onednn, torch, got 'mkl'; fix or unset it"
    ]
    assert not out.exists() or not any(out.iterdir())


def test_output_into_a_closed_pipe_is_quiet() -> None:
    proc = subprocess.run(
        f"{sys.executable} -m caduceus_plugin.cli.main list | head -1", shell=True, capture_output=True, text=True
    )
    assert proc.stdout.startswith("backbone ")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


@pytest.mark.parametrize(
    ("name", "value", "want"),
    [
        ("CADUCEUS_CHUNK_LEN", "0", "a positive integer"),
        ("CADUCEUS_CHUNK_LEN", "lots", "a positive integer"),
        ("CADUCEUS_STASH_GB", "-1", "a number >= 0"),
        ("CADUCEUS_FETCH_TIMEOUT", "0", "a number > 0"),
        ("CADUCEUS_OFFLINE", "perhaps", "a boolean (1/0, true/false, yes/no, on/off)"),
        ("CADUCEUS_MALLOC_TUNE", "2", "a boolean (1/0, true/false, yes/no, on/off)"),
    ],
)
def test_every_setting_is_validated_in_one_line(name, value, want, monkeypatch, capsys) -> None:
    monkeypatch.setenv(name, value)
    assert main(["info"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: ${name} must be {want}, got {value!r}; fix or unset it"]


def test_settings_read_at_call_time(monkeypatch) -> None:
    from caduceus_plugin import settings

    monkeypatch.setenv("CADUCEUS_CHUNK_LEN", "96")
    monkeypatch.setenv("CADUCEUS_OFFLINE", "Yes")
    assert settings.CHUNK_LEN.get() == 96 and settings.OFFLINE.get() is True
    monkeypatch.setenv("CADUCEUS_CHUNK_LEN", "")  # empty means the default
    assert settings.CHUNK_LEN.get() == 2048
    assert {s.name for s in settings.ALL} == {
        "CADUCEUS_SCAN_BACKEND", "CADUCEUS_MATMUL_DTYPE", "CADUCEUS_CPU_GEMM", "CADUCEUS_CHUNK_LEN",
        "CADUCEUS_STASH_GB", "CADUCEUS_MALLOC_TUNE", "CADUCEUS_NUMBA_AVX512", "CADUCEUS_DISABLE_PLUGIN_AUTOLOAD",
        "CADUCEUS_DATA_DIR",
        "CADUCEUS_DATA_SEARCH",
        "CADUCEUS_OFFLINE", "CADUCEUS_FETCH_TIMEOUT",
    }  # fmt: skip


def test_no_module_reads_the_environment_itself() -> None:
    """Every CADUCEUS_* variable is read through caduceus_plugin.settings."""
    import re

    pkg = Path(__file__).resolve().parents[2] / "caduceus_plugin"
    offenders = [
        str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
        if p.name != "settings.py" and re.search(r"os\.environ(\.get)?\(?\[?['\"]CADUCEUS_|getenv\(['\"]CADUCEUS_",
                                                 p.read_text())
    ]
    assert offenders == []
