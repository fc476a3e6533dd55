"""``caduceus predict``: real GRCh37 end to end, strand handling, output formats, gReLU checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from caduceus_plugin.cli import main
from caduceus_plugin.errors import InputError
from caduceus_plugin.genome import Genome, read_bed
from caduceus_plugin.jobs.predict import predict
from caduceus_plugin.jobs.predictor import load_predictor
from caduceus_plugin.registry.pretrained import shipped_weights
from caduceus_plugin.sequence import onehot, reverse_complement
from tests.genomic_data import grelu_checkpoint, real_data, write_fasta, write_lines

SEQ_LEN = 256  # short windows keep the tests fast


@pytest.fixture(scope="module")
def tiny_predictor():
    return load_predictor(weights=shipped_weights("tiny_ps"), device="cpu", seq_len=SEQ_LEN)


def test_predict_cli_on_real_grch37_intervals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = real_data(tmp_path)
    out = tmp_path / "preds.parquet"
    argv = ["predict", "--fasta", str(files["fasta"]), "--bed", str(files["bed"]), "--out", str(out)]
    assert main([*argv, "--weights", str(shipped_weights("tiny_ps")), "--seq-len", str(SEQ_LEN)]) == 0
    assert f"wrote 19 rows (32-dim embeddings) to {out}" in capsys.readouterr().out
    df = pl.read_parquet(out)
    bed = [line.split("\t") for line in files["bed"].read_text().splitlines()]
    assert df.height == len(bed) == 19  # one row per BED line, in order, with the BED's own columns
    cols = ["chrom", "start", "end", "name", "score", "strand", "col7"]
    assert df.columns[:7] == cols
    assert [[str(v) for v in row] for row in df.select(cols).iter_rows()] == bed
    centre = (df["start"] + df["end"]) // 2
    assert ((df["window_end"] - df["window_start"]) == SEQ_LEN).all()
    assert ((df["window_start"] + SEQ_LEN // 2 - centre).abs() <= 1).all()
    assert not df["off_chrom_end"].any()
    emb = df.select([f"emb_{i}" for i in range(32)]).to_numpy()
    assert emb.shape == (19, 32) and np.isfinite(emb).all()
    assert np.unique(emb.round(6), axis=0).shape[0] == 19  # different sequences, different embeddings


def test_formats_agree(tmp_path: Path, tiny_predictor) -> None:
    import h5py

    files = real_data(tmp_path)
    res = predict(files["fasta"], files["bed"], tmp_path / "p.parquet", predictor=tiny_predictor)
    predict(files["fasta"], files["bed"], tmp_path / "p.tsv", predictor=tiny_predictor)
    predict(files["fasta"], files["bed"], tmp_path / "p.out", fmt="h5", predictor=tiny_predictor)
    parquet = pl.read_parquet(tmp_path / "p.parquet")
    tsv = pl.read_csv(tmp_path / "p.tsv", separator="\t", schema_overrides={"chrom": pl.Utf8, "score": pl.Utf8})
    assert tsv.columns == parquet.columns and tsv["name"].to_list() == parquet["name"].to_list()
    np.testing.assert_allclose(tsv["emb_5"].to_numpy(), parquet["emb_5"].to_numpy(), rtol=1e-6)
    with h5py.File(tmp_path / "p.out") as f:
        assert f.attrs["output_kind"] == "embedding" and f.attrs["seq_len"] == SEQ_LEN
        np.testing.assert_array_equal(f["preds"][:], res.values)
        assert [s.decode() for s in f["intervals/name"][:]] == parquet["name"].to_list()
        np.testing.assert_array_equal(f["intervals/start"][:], parquet["start"].to_numpy())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary files left


def test_ps_embedding_of_a_minus_strand_interval_equals_the_plus_strand_one(tmp_path: Path, tiny_predictor) -> None:
    files = real_data(tmp_path)
    lines = [f"20\t1166059\t1166060\tTMEM74B\t0\t{s}" for s in "+-."] + [
        f"20\t1099078\t1099561\tcpg\t0\t{s}" for s in "-+"
    ]
    res = predict(files["fasta"], write_lines(tmp_path / "s.bed", lines), predictor=tiny_predictor)
    emb = res.values
    np.testing.assert_allclose(emb[1], emb[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb[2], emb[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb[3], emb[4], rtol=1e-5, atol=1e-6)
    assert np.abs(emb[0] - emb[3]).max() > 1e-3  # and different sites differ


def test_soft_masked_fasta_gives_the_same_embeddings(tmp_path: Path, tiny_predictor) -> None:
    seqs = {"1": "".join(np.random.default_rng(0).choice(list("ACGT"), 1200))}
    upper = write_fasta(tmp_path / "u.fa", seqs)
    lower = write_fasta(tmp_path / "l.fa", {"1": seqs["1"][:400] + seqs["1"][400:900].lower() + seqs["1"][900:]})
    bed = write_lines(tmp_path / "r.bed", ["1\t300\t700", "1\t800\t900"])
    a = predict(upper, bed, predictor=tiny_predictor).values
    b = predict(lower, bed, predictor=tiny_predictor).values
    np.testing.assert_array_equal(a, b)


def test_model_selection_and_seq_len_from_the_checkpoint(tmp_path: Path) -> None:
    default = load_predictor(device="cpu")
    assert default.output_kind == "embedding" and "weights/" in default.source
    assert load_predictor("caduceus_ps", device="cpu").source == default.source
    with pytest.raises(InputError, match=r"model 'caduceus_ph' has no built-in weights: pass --weights"):
        load_predictor("caduceus_ph")
    with pytest.raises(InputError, match=r"unknown model 'no_such_model': choose one of .*caduceus_ps"):
        load_predictor("no_such_model")
    with pytest.raises(InputError, match=r"--model caduceus_ph does not match the weights .* Caduceus-PS"):
        load_predictor("caduceus_ph", weights=shipped_weights("tiny_ps"))
    ckpt = Path(shutil.copytree(shipped_weights("tiny_ps"), tmp_path / "ck"))
    cfg = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**cfg, "seq_len": 96}))
    assert load_predictor(weights=ckpt).seq_len == 96
    assert load_predictor(weights=ckpt, seq_len=64).seq_len == 64
    builtin_cfg = json.loads((Path(default.source.split()[-1]) / "config.json").read_text())
    assert default.seq_len == int(builtin_cfg.get("seq_len", 1024))


def test_grelu_task_checkpoint_gives_one_column_per_task_strand_aware(tmp_path: Path) -> None:
    seqs = {"20": "".join(np.random.default_rng(2).choice(list("ACGT"), 2000))}
    fa = write_fasta(tmp_path / "g.fa", seqs)
    ckpt = grelu_checkpoint(tmp_path / "tasks.ckpt")
    bed = write_lines(tmp_path / "r.bed", ["20\t500\t700\ta\t0\t+", "20\t500\t700\tb\t0\t-", "20\t1000\t1001\tc"])
    out = tmp_path / "p.tsv"
    res = predict(fa, bed, out, weights=ckpt, device="cpu")
    p = res.predictor
    assert (p.output_kind, p.names, p.seq_len) == ("tasks", ["dnase", "ctcf"], 128)  # seq_len from data_params
    df = pl.read_csv(out, separator="\t", schema_overrides={"chrom": pl.Utf8})
    assert df.columns[-2:] == ["pred_dnase", "pred_ctcf"] and df.height == 3
    window = Genome(fa).fetch("20", 536, 664)[0]
    np.testing.assert_allclose(res.values[0], p(onehot([window]))[0], rtol=1e-5)
    np.testing.assert_allclose(res.values[1], p(onehot([reverse_complement(window)]))[0], rtol=1e-5)
    assert np.abs(res.values[0] - res.values[1]).max() > 1e-6  # a plain CNN is not strand-invariant


def test_grelu_track_checkpoint_writes_bins_and_bigwigs_in_genome_coordinates(tmp_path: Path) -> None:
    import pyBigWig

    seqs = {"20": "".join(np.random.default_rng(3).choice(list("ACGT"), 2000)), "21": "ACGT" * 100}
    fa = write_fasta(tmp_path / "g.fa", seqs)
    ckpt = grelu_checkpoint(tmp_path / "tracks.ckpt", tracks=True)
    bed = write_lines(
        tmp_path / "r.bed", ["20\t100\t228\ta\t0\t+", "20\t1000\t1128\tb\t0\t-", "20\t1950\t2000\tc\t0\t+"]
    )
    res = predict(fa, bed, tmp_path / "p.parquet", weights=ckpt, device="cpu")
    p = res.predictor
    assert (p.output_kind, p.bin_size, p.crop_len, p.out_len) == ("tracks", 8, 1, 14)
    df = pl.read_parquet(tmp_path / "p.parquet")
    assert df["pred_dnase"].to_numpy().shape == (3, 14)
    assert df["off_chrom_end"].to_list() == [False, False, True] and df["padded_bp"].to_list() == [0, 0, 39]
    # minus strand: the model saw the reverse complement; stored bins are in genome orientation
    rc_pred = p(onehot([reverse_complement(Genome(fa).fetch("20", 1000, 1128)[0])]))[0]
    np.testing.assert_allclose(res.values[1], rc_pred[:, ::-1], rtol=1e-5)

    with pytest.raises(InputError, match="--strict"):
        predict(fa, bed, tmp_path / "strict.parquet", weights=ckpt, device="cpu", strict=True)
    assert not (tmp_path / "strict.parquet").exists()

    res = predict(fa, bed, tmp_path / "p.bw", weights=ckpt, device="cpu")
    assert [x.name for x in res.paths] == ["p.dnase.bw", "p.ctcf.bw"]
    bw = pyBigWig.open(str(tmp_path / "p.ctcf.bw"))
    assert bw.chroms() == {"20": 2000, "21": 400}
    # row a: window [100, 228), crop 1 bin -> bins start at 108; row b (minus) likewise at 1008
    for row, start in ((0, 108), (1, 1008)):
        got = [bw.stats("20", start + 8 * j, start + 8 * j + 8)[0] for j in range(14)]
        np.testing.assert_allclose(got, res.values[row, 1], rtol=1e-5)
    assert bw.intervals("20")[-1][1] == 2000  # the padded window's bins are clipped to the chromosome
    bw.close()

    read_bed(bed)  # unchanged input
    with pytest.raises(InputError, match="--format bigwig needs a model with per-bin track outputs"):
        predict(fa, bed, tmp_path / "e.bw", weights=shipped_weights("tiny_ps"), device="cpu")


def test_grelu_caduceus_ps_track_model_gives_the_same_tracks_on_both_strands(tmp_path: Path) -> None:
    """A PS track head is RC-equivariant; stored in genome orientation, - and + strand tracks coincide."""
    files = real_data(tmp_path)
    params = {"model_type": "caduceus_ps", "n_tasks": 2, "d_model": 16, "n_layer": 1, "head": "track"}
    ckpt = grelu_checkpoint(tmp_path / "ps.ckpt", tracks=True, params={**params, "bin_size": 8, "crop_len": 1})
    bed = write_lines(tmp_path / "r.bed", ["20\t1166059\t1166060\tx\t0\t+", "20\t1166059\t1166060\tx\t0\t-"])
    res = predict(files["fasta"], bed, weights=ckpt, device="cpu")
    assert res.predictor.output_kind == "tracks" and res.values.shape == (2, 2, 14)
    np.testing.assert_allclose(res.values[1], res.values[0], rtol=1e-5, atol=1e-6)
    assert np.abs(res.values[0, :, 1:] - res.values[0, :, :-1]).max() > 1e-4  # not a flat track


def test_predict_cli_bf16_projections_close_to_float32(tmp_path: Path) -> None:
    """``--bf16``: same table, embeddings within bf16 rounding of the float32 ones (and not identical to them)."""
    files = real_data(tmp_path)
    argv = ["predict", "--fasta", str(files["fasta"]), "--bed", str(files["bed"])]
    argv += ["--weights", str(shipped_weights("tiny_ps")), "--seq-len", str(SEQ_LEN)]
    assert main([*argv, "--out", str(tmp_path / "fp32.parquet")]) == 0
    assert main([*argv, "--out", str(tmp_path / "bf16.parquet"), "--bf16"]) == 0
    a, b = pl.read_parquet(tmp_path / "fp32.parquet"), pl.read_parquet(tmp_path / "bf16.parquet")
    assert a.columns == b.columns and a.height == b.height
    emb = [c for c in a.columns if c.startswith("emb_")]
    x, y = a.select(emb).to_numpy(), b.select(emb).to_numpy()
    err = np.abs(y - x).max() / np.abs(x).max()
    assert 0 < err < 3e-2, err


@pytest.mark.parametrize("has_bf16, warned", [(False, True), (True, False), (None, False)])
def test_bf16_on_a_cpu_without_bf16_instructions_warns(has_bf16, warned, tmp_path: Path, monkeypatch, capsys) -> None:
    """``--bf16`` where oneDNN would emulate bf16 (no AVX512-BF16 / AMX) says so in one line; the job still runs."""
    from caduceus_plugin.ops import gemm

    monkeypatch.setattr(gemm, "cpu_info", lambda: gemm.CpuInfo(name="test", bf16_matmul=has_bf16))
    files = real_data(tmp_path)
    out = tmp_path / "bf16.parquet"
    argv = ["predict", "--fasta", str(files["fasta"]), "--bed", str(files["bed"]), "--device", "cpu", "--bf16"]
    argv += ["--weights", str(shipped_weights("tiny_ps")), "--seq-len", str(SEQ_LEN), "--out", str(out)]
    assert main(argv) == 0 and out.exists()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("warning: --bf16")]
    assert len(lines) == (1 if warned else 0), err
    if warned:
        assert "AVX512-BF16 or AMX" in lines[0] and "leave out --bf16" in lines[0]
