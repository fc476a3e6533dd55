"""``caduceus export-kipoi``: the exported directory runs under the real kipoi 0.8.6 / kipoiseq 0.7.1.

kipoi writes ``~/.kipoi/config.yaml`` when imported, so HOME points at a temporary directory here (in-process and
for the ``kipoi`` subprocesses). The subprocess tests run the real ``kipoi`` console script.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from caduceus_plugin.cli import main
from caduceus_plugin.errors import InputError
from caduceus_plugin.hosts.kipoi.export import _template, export_kipoi, resolve_weights
from caduceus_plugin.registry.pretrained import BUILTIN_WEIGHTS, shipped_weights
from tests.conftest import CADUCEUS_FIXTURES

SEQ_LEN = 512
TINY = shipped_weights("tiny_ps")
PH_WEIGHTS = CADUCEUS_FIXTURES / "ph_d24_l2_fused"
GENOME = Path("/usr/share/doc/vt/examples/ref/20.fa.gz")  # real GRCh37 chr20, where the example was cut from


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    """A private HOME for kipoi (its config dir) for this module's tests and subprocesses."""
    path = tmp_path_factory.mktemp("home")
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("HOME", None)
    else:
        os.environ["HOME"] = old


@pytest.fixture(scope="module")
def ps_dir(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_kipoi("caduceus_ps", tmp_path_factory.mktemp("export") / "ps", seq_len=SEQ_LEN, weights=TINY)


@pytest.fixture(scope="module")
def ps_model(ps_dir: Path):
    import kipoi

    return kipoi.get_model(str(ps_dir), source="dir")


def _example_args(model_dir: Path, **extra: object) -> dict[str, object]:
    ex = model_dir / "example_files"
    return {"intervals_file": str(ex / "example.bed"), "fasta_file": str(ex / "example.fa"), **extra}


def _read_fasta(path: Path) -> str:
    return "".join(line.strip() for line in path.read_text().splitlines()[1:])


def _windows(bed: Path, seq_len: int) -> list[tuple[int, int]]:
    """Centre-resized windows, as kipoiseq's resize_interval cuts them."""
    out = []
    for line in bed.read_text().splitlines():
        start, end = (int(v) for v in line.split("\t")[1:3])
        mid = (start + end) // 2
        out.append((mid - seq_len // 2, mid - seq_len // 2 + seq_len))
    return out


def _own_embedding(weights: Path, seqs: list[str]) -> np.ndarray:
    from caduceus_plugin.models.caduceus.checkpoint import from_pretrained
    from caduceus_plugin.models.caduceus.features import embed, mean_pool
    from caduceus_plugin.sequence import tokenize

    with torch.no_grad():
        return mean_pool(embed(from_pretrained(weights), tokenize(seqs))).numpy()


def _kipoi(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("kipoi")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "kipoi"]
    env = dict(os.environ, HOME=str(home))
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=300)


def test_export_layout(ps_dir: Path) -> None:
    spec = yaml.safe_load((ps_dir / "model.yaml").read_text())
    assert spec["defined_as"] == "model.CaduceusKipoiModel"
    assert spec["args"]["weights"] == "weights"  # relative: the directory can move
    dl = spec["default_dataloader"]
    assert dl["defined_as"] == "kipoiseq.dataloaders.SeqIntervalDl"
    args = dl["default_args"]
    assert args["auto_resize_len"] == SEQ_LEN and args["dtype"] == "np.float32" and args["alphabet_axis"] == 0
    assert spec["schema"]["inputs"]["shape"] == f"(4, {SEQ_LEN})"
    assert spec["schema"]["targets"]["shape"] == "(32,)" and len(spec["schema"]["targets"]["column_labels"]) == 32
    pip = spec["dependencies"]["pip"]
    assert {"caduceus-plugin", "six", "pybedtools"} <= set(pip)
    for name in ("config.json", "model.safetensors"):  # a byte-identical copy: self-contained
        assert (ps_dir / "weights" / name).read_bytes() == (TINY / name).read_bytes()
    ex = ps_dir / "example_files"
    assert sum(f.stat().st_size for f in ex.iterdir()) < 100_000
    assert (ex / "example.fa.fai").is_file()
    assert not [p for p in ps_dir.parent.iterdir() if p.name.startswith(".")]  # no temporary directory left
    import kipoi

    md = kipoi.specs.ModelDescription.load(str(ps_dir / "model.yaml"))  # kipoi's own parser accepts it
    assert md.schema.targets.shape == (32,)


@pytest.mark.skipif(not GENOME.exists(), reason="GRCh37 chr20 (vt examples) not installed")
def test_example_is_real_chr20(ps_dir: Path) -> None:
    import pyfaidx

    with pyfaidx.Fasta(str(GENOME)) as fa:
        assert str(fa["20"][1_000_000:1_006_000]).upper() == _read_fasta(ps_dir / "example_files" / "example.fa")


def test_pipeline_predict_matches_own_embedding(ps_dir: Path, ps_model) -> None:
    preds = ps_model.pipeline.predict(_example_args(ps_dir), batch_size=2)
    assert preds.shape == (5, 32) and preds.dtype == np.float32 and np.isfinite(preds).all()
    genome = _read_fasta(ps_dir / "example_files" / "example.fa")
    seqs = [genome[s:e] for s, e in _windows(ps_dir / "example_files" / "example.bed", SEQ_LEN)]
    assert all(len(s) == SEQ_LEN for s in seqs)
    np.testing.assert_allclose(preds, _own_embedding(TINY, seqs), rtol=1e-4, atol=1e-5)
    assert np.abs(preds - preds[:1]).max() > 1e-3  # different intervals give different rows
    np.testing.assert_allclose(ps_model.predict_on_seqs(seqs), preds, rtol=1e-4, atol=1e-5)


def test_predict_on_batch_layouts(ps_model) -> None:
    x = ps_model.default_dataloader(**_example_args(Path(ps_model.source_dir)))[0]["inputs"][None]
    assert x.shape == (1, 4, SEQ_LEN) and x.dtype == np.float32
    np.testing.assert_allclose(ps_model.predict_on_batch(x.transpose(0, 2, 1)), ps_model.predict_on_batch(x))
    with pytest.raises(InputError, match="one-hot DNA"):
        ps_model.predict_on_batch(np.zeros((2, 5, 7), dtype=np.float32))


def _stranded_bed(path: Path, src: Path) -> Path:
    rows = [line.split("\t")[:3] for line in src.read_text().splitlines()][:2]
    with open(path, "w") as fh:
        for chrom, start, end in rows:  # each interval on both strands
            fh.write(f"{chrom}\t{start}\t{end}\tx\t0\t+\n{chrom}\t{start}\t{end}\tx\t0\t-\n")
    return path


@pytest.mark.parametrize("kind", ["ps", "ph"])
def test_strands_give_equal_outputs(kind: str, ps_dir: Path, ps_model, tmp_path: Path) -> None:
    import kipoi

    if kind == "ps":
        model_dir, model = ps_dir, ps_model
    else:
        model_dir = export_kipoi("caduceus_ph", tmp_path / "ph", seq_len=SEQ_LEN, weights=PH_WEIGHTS)
        model = kipoi.get_model(str(model_dir), source="dir")
    bed = _stranded_bed(tmp_path / "stranded.bed", model_dir / "example_files" / "example.bed")
    kwargs = _example_args(model_dir, intervals_file=str(bed), use_strand=True)
    dl = model.default_dataloader(**kwargs)
    plus, minus = dl[0]["inputs"], dl[1]["inputs"]
    np.testing.assert_array_equal(minus, plus[::-1, ::-1])  # the dataloader really reverse-complements
    preds = model.pipeline.predict(kwargs)
    assert preds.shape[0] == 4 and np.isfinite(preds).all()
    np.testing.assert_allclose(preds[1::2], preds[0::2], rtol=1e-4, atol=1e-5)
    unstranded = model.pipeline.predict(_example_args(model_dir))
    np.testing.assert_allclose(preds[0::2], unstranded[:2], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_kipoi_test_cli(ps_dir: Path, home: Path, tmp_path: Path) -> None:
    expect = ps_dir / "test_files" / "expect.h5"
    proc = _kipoi("test", str(ps_dir), "--source", "dir", "-e", str(expect), home=home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = proc.stdout + proc.stderr
    assert "All predictions match" in log and "Successfully ran test_predict" in log
    import h5py

    wrong = tmp_path / "wrong.h5"
    shutil.copyfile(expect, wrong)
    with h5py.File(wrong, "r+") as fh:
        fh["preds"][0, 0] += 0.01
    proc = _kipoi("test", str(ps_dir), "--source", "dir", "-e", str(wrong), home=home)
    assert proc.returncode != 0 and "don't match the expected" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_kipoi_predict_cli_tsv(ps_dir: Path, ps_model, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.tsv"
    args = _example_args(ps_dir)
    proc = _kipoi(
        "predict", str(ps_dir), "--source", "dir", f"--dataloader_args={json.dumps(args)}", "-m",
        "-o", str(out), home=home,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(out) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == 5
    # TsvBatchWriter sorts columns as strings (preds/0, preds/1, preds/10, ...): read them back by index
    got = np.array([[float(r[f"preds/{i}"]) for i in range(32)] for r in rows], dtype=np.float32)
    np.testing.assert_allclose(got, ps_model.pipeline.predict(args), rtol=1e-5, atol=1e-6)
    wins = _windows(ps_dir / "example_files" / "example.bed", SEQ_LEN)
    assert [(int(r["metadata/ranges/start"]), int(r["metadata/ranges/end"])) for r in rows] == wins
    assert {r["metadata/ranges/chr"] for r in rows} == {"20"}


def test_cli_export_and_long_windows_are_padded(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "long"
    assert main(["export-kipoi", "caduceus_ps", str(out), "--weights", str(TINY), "--seq-len", "2400"]) == 0
    assert "kipoi predict" in capsys.readouterr().out
    genome = _read_fasta(out / "example_files" / "example.fa")
    wins = _windows(out / "example_files" / "example.bed", 2400)
    assert min(s for s, _ in wins) >= 0 and max(e for _, e in wins) <= len(genome)  # N-padded to fit
    shipped = _read_fasta(_template("example_files/example.fa"))
    assert len(genome) > len(shipped) and genome.strip("N") == shipped


def test_default_weights() -> None:
    label, path = resolve_weights("caduceus_ps")
    assert label == "caduceus_ps" and path.name in BUILTIN_WEIGHTS and (path / "config.json").is_file()
    assert resolve_weights(str(PH_WEIGHTS)) == ("ph_d24_l2_fused", PH_WEIGHTS)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["nosuchmodel"], "unknown model 'nosuchmodel'"),
        (["caduceus_ps", "--weights", "/nonexistent/weights"], "does not exist"),
        (["caduceus_ph"], "pass --weights DIR"),
        (["caduceus_ph", "--weights", str(TINY)], "holds a Caduceus-PS checkpoint"),
        (["caduceus_ps", "--seq-len", "0"], "--seq-len must be a positive integer"),
        ([str(TINY), "--weights", str(TINY)], "drop --weights"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    assert main(["export-kipoi", argv[0], str(out), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_non_empty_outdir_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export-kipoi", "caduceus_ps", str(out), "--weights", str(TINY)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and len(list(tmp_path.iterdir())) == 1
    export_kipoi("caduceus_ps", out, seq_len=64, weights=TINY, force=True)
    assert (out / "model.yaml").is_file() and not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failure_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import caduceus_plugin.hosts.kipoi.export as ke

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ke, "_write_expect", boom)
    with pytest.raises(OSError, match="disk full"):
        export_kipoi("caduceus_ps", tmp_path / "out", seq_len=64, weights=TINY)
    assert list(tmp_path.iterdir()) == []


LEGACY_EXPORT = Path(__file__).resolve().parents[1] / "resources" / "kipoi_export_v0.1_caduceus_ps"


def test_directory_exported_by_v0_1_still_runs(home: Path, tmp_path: Path) -> None:
    """A kipoi directory written by caduceus-plugin 0.1 (its model.py imports ``caduceus_plugin.kipoi_model``,
    the path before the layout by concern) still loads and reproduces its own expect.h5 through kipoi."""
    import h5py
    import kipoi

    model_dir = Path(shutil.copytree(LEGACY_EXPORT, tmp_path / "legacy"))
    assert "from caduceus_plugin.kipoi_model import CaduceusKipoiModel" in (model_dir / "model.py").read_text()
    with h5py.File(model_dir / "test_files" / "expect.h5", "r") as fh:
        inputs, preds = fh["inputs"][:], fh["preds"][:]
    model = kipoi.get_model(str(model_dir), source="dir")
    np.testing.assert_allclose(model.predict_on_batch(inputs), preds, rtol=1e-4, atol=1e-5)
    proc = _kipoi("test", str(model_dir), "--source", "dir", "-e", str(model_dir / "test_files" / "expect.h5"),
                  home=home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "All predictions match" in proc.stdout + proc.stderr


def test_export_without_kipoi_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kipoi" else real(name, *a))
    assert main(["export-kipoi", "caduceus_ps", str(tmp_path / "out"), "--weights", str(TINY)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'caduceus-plugin[kipoi]'" in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())
