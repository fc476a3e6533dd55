"""Bad input to ``caduceus predict`` / ``score-variants``, one case at a time: one clear ``error:`` line, exit
status 2, and no output file (not even a partial or temporary one). Inputs that are odd but valid are accepted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch

from caduceus_plugin.cli import main
from caduceus_plugin.registry.pretrained import shipped_weights
from tests.genomic_data import random_genome, write_fasta, write_lines

TINY = str(shipped_weights("tiny_ps"))
FAST = ["--weights", TINY, "--seq-len", "64"]


@pytest.fixture
def fasta(tmp_path: Path) -> Path:
    return write_fasta(tmp_path / "g.fa", random_genome())  # contigs "20" (3000 bp) and "21" (500 bp)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def predict_argv(fasta: Path, bed: Path, out: Path, *extra: str) -> list[str]:
    return ["predict", "--fasta", str(fasta), "--bed", str(bed), "--out", str(out), *FAST, *extra]


def assert_fails(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str], out: Path) -> str:
    code, stdout, err = run(argv, capsys)
    assert code == 2, (stdout, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err, err
    assert not out.exists()
    if out.parent.exists():  # no temporary file left
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    return err


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("20\t100", "bed line 2: expected at least 3 tab-separated columns (chrom, start, end), found 2"),
        ("20\t1x\t200", "bed line 2: start '1x' is not an integer"),
        ("20\t100\t2.5e2", "bed line 2: end '2.5e2' is not an integer"),
        ("20\t-5\t100", "bed line 2: start -5 is negative"),
        ("20\t300\t200", "bed line 2: start 300 is greater than end 200"),
        ("20\t1\t5\tx\t0\t*", "bed line 2: strand (column 6) must be +, - or ., found '*'"),
        ("chrUn_gl000220\t1\t5", "chromosome 'chrUn_gl000220' of r.bed is not in the FASTA g.fa"),
        ("20\t3000\t3100", "r.bed line 2: 20:3000-3100 starts past the end of 20 (3,000 bp in the FASTA g.fa)"),
    ],
    ids=["two-columns", "non-integer", "float", "negative", "start-after-end", "bad-strand", "unknown-chrom",
         "past-the-end"],
)
def test_bad_bed_lines(line: str, needle: str, fasta: Path, tmp_path: Path, capsys) -> None:
    bed = write_lines(tmp_path / "r.bed", ["20\t10\t20", line])
    assert_fails(predict_argv(fasta, bed, tmp_path / "o.parquet"), needle, capsys, tmp_path / "o.parquet")


@pytest.mark.parametrize("lines", [[], ["track name=x", "# only comments", ""]], ids=["empty", "header-only"])
def test_empty_bed(lines: list[str], fasta: Path, tmp_path: Path, capsys) -> None:
    bed = write_lines(tmp_path / "r.bed", lines)
    assert_fails(predict_argv(fasta, bed, tmp_path / "o.parquet"), "has no intervals", capsys, tmp_path / "o.parquet")


def test_chr_prefix_mismatch_names_the_fasta_sequences(fasta: Path, tmp_path: Path, capsys) -> None:
    bed = write_lines(tmp_path / "r.bed", ["chr20\t10\t20"])
    err = assert_fails(predict_argv(fasta, bed, tmp_path / "o.tsv"), "naming mismatch", capsys, tmp_path / "o.tsv")
    assert "r.bed has 'chr20' but the FASTA g.fa calls it '20' (FASTA sequences: 20, 21)" in err
    assert "remove the 'chr' prefix" in err


def test_header_lines_are_skipped_and_gzipped_bed_is_accepted(fasta: Path, tmp_path: Path, capsys) -> None:
    lines = ["browser position 20:1-100", "track name=t", "#chrom\tstart\tend", "20\t100\t200\ta", "21\t10\t30\tb"]
    bed = write_lines(tmp_path / "r.bed.gz", lines, gz=True)
    out = tmp_path / "o.parquet"
    code, stdout, err = run(predict_argv(fasta, bed, out), capsys)
    # nothing on stderr but, when the job outlasts --log-every (first numba compile on a fresh clone), progress lines
    assert code == 0 and "wrote 2 rows" in stdout
    assert [line for line in err.splitlines() if not line.startswith("predict: ")] == [], err
    df = pl.read_parquet(out)
    assert df["name"].to_list() == ["a", "b"] and df.columns[:4] == ["chrom", "start", "end", "name"]


def test_off_chromosome_windows_are_padded_and_flagged_or_refused_with_strict(
    fasta: Path, tmp_path: Path, capsys
) -> None:
    bed = write_lines(tmp_path / "r.bed", ["20\t1000\t1010", "20\t2990\t3000", "21\t0\t4"])
    out = tmp_path / "o.tsv"
    code, stdout, _ = run(predict_argv(fasta, bed, out), capsys)
    assert code == 0 and "2 window(s) ran off a chromosome end" in stdout
    df = pl.read_csv(out, separator="\t", schema_overrides={"chrom": pl.Utf8})
    assert df["off_chrom_end"].to_list() == [False, True, True] and df["padded_bp"].to_list() == [0, 27, 30]
    out.unlink()
    err = assert_fails(predict_argv(fasta, bed, out, "--strict"), "r.bed line 2: the 64-bp window", capsys, out)
    assert "runs off chromosome 20 (3000 bp)" in err


def test_soft_masked_and_iupac_fasta_without_index(tmp_path: Path, capsys) -> None:
    fa = write_fasta(tmp_path / "m.fa", {"1": "acgtRYKMacgtNNNNacgtWSBDHVacgt" * 10})
    assert not Path(str(fa) + ".fai").exists()
    bed = write_lines(tmp_path / "r.bed", ["1\t100\t200"])
    code, _, _ = run(predict_argv(fa, bed, tmp_path / "o.parquet"), capsys)
    assert code == 0 and Path(str(fa) + ".fai").exists()  # index built
    assert pl.read_parquet(tmp_path / "o.parquet").select("emb_0").item() is not None


def test_bzip2_inputs_say_how_to_decompress(fasta: Path, tmp_path: Path, capsys) -> None:
    import bz2

    bed = tmp_path / "r.bed.bz2"
    bed.write_bytes(bz2.compress(b"20\t10\t20\n"))
    out = tmp_path / "o.parquet"
    assert_fails(predict_argv(fasta, bed, out), "r.bed.bz2 is bzip2-compressed, which is not read here: decompress "
                 "it with `bunzip2 -k r.bed.bz2`", capsys, out)


def test_plain_gzip_fasta_says_how_to_recompress(tmp_path: Path, capsys) -> None:
    fa = write_fasta(tmp_path / "g.fa.gz", random_genome(), compress="gzip")
    bed = write_lines(tmp_path / "r.bed", ["20\t10\t20"])
    assert_fails(predict_argv(fa, bed, tmp_path / "o.parquet"), "| bgzip >", capsys, tmp_path / "o.parquet")


def test_empty_fasta_and_duplicate_sequence_names(tmp_path: Path, capsys) -> None:
    bed = write_lines(tmp_path / "r.bed", ["20\t10\t20"])
    out = tmp_path / "o.parquet"
    empty = tmp_path / "empty.fa"
    empty.write_bytes(b"")
    err = assert_fails(predict_argv(empty, bed, out), "is empty (0 bytes)", capsys, out)
    assert str(empty) in err
    seqs = random_genome()
    dup = write_fasta(tmp_path / "dup.fa", seqs)
    with open(dup, "a") as fh:  # a second record named like the first
        fh.write(">20\nACGTACGT\n")
    assert_fails(predict_argv(dup, bed, out), '"20" names two sequences; rename or drop one', capsys, out)


def test_missing_fasta(tmp_path: Path, capsys) -> None:
    bed = write_lines(tmp_path / "r.bed", ["20\t10\t20"])
    argv = predict_argv(tmp_path / "none.fa", bed, tmp_path / "o.parquet")
    assert_fails(argv, "none.fa does not exist", capsys, tmp_path / "o.parquet")


def test_missing_and_corrupt_weights(fasta: Path, tmp_path: Path, capsys) -> None:
    bed = write_lines(tmp_path / "r.bed", ["20\t10\t20"])
    out = tmp_path / "o.parquet"
    argv = ["predict", "--fasta", str(fasta), "--bed", str(bed), "--out", str(out)]
    assert_fails([*argv, "--weights", str(tmp_path / "nope")], "nope do not exist", capsys, out)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text((Path(TINY) / "config.json").read_text())
    (corrupt / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    assert_fails([*argv, "--weights", str(corrupt)], "is not a readable safetensors file", capsys, out)
    (corrupt / "config.json").write_text("{not json")
    assert_fails([*argv, "--weights", str(corrupt)], "not valid JSON", capsys, out)
    bad_ckpt = tmp_path / "model.ckpt"
    bad_ckpt.write_bytes(b"truncated")
    assert_fails([*argv, "--weights", str(bad_ckpt)], "is not a readable PyTorch checkpoint", capsys, out)
    assert_fails([*argv, "--weights", str(bed)], "r.bed is a file with no config.json beside it", capsys, out)


def test_feature_window_longer_than_the_model_input_is_refused(fasta: Path, tmp_path: Path, capsys) -> None:
    vcf = _vcf(tmp_path / "v.vcf", ["20	1000	.	A	C"])
    out = tmp_path / "s.parquet"
    argv = ["score-variants", "--fasta", str(fasta), "--vcf", str(vcf), "--out", str(out), *FAST, "--window", "65"]
    assert_fails(argv, "--window 65 is longer than the model's input of 64 bp", capsys, out)


def test_output_paths(fasta: Path, tmp_path: Path, capsys) -> None:
    bed = write_lines(tmp_path / "r.bed", ["20\t10\t20"])
    missing = tmp_path / "no" / "such" / "dir" / "o.parquet"
    err = assert_fails(predict_argv(fasta, bed, missing), "does not exist: create it first", capsys, missing)
    assert str(missing.parent) in err
    assert not missing.parent.exists()
    odd = tmp_path / "o.xyz"
    assert_fails(predict_argv(fasta, bed, odd), "cannot tell the output format from 'o.xyz'", capsys, odd)
    bw = tmp_path / "o.bw"
    assert_fails(predict_argv(fasta, bed, bw), "--format bigwig needs a model with per-bin track outputs", capsys, bw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(fasta: Path, tmp_path: Path, capsys) -> None:
    bed = write_lines(tmp_path / "r.bed", ["20\t10\t20"])
    argv = predict_argv(fasta, bed, tmp_path / "o.parquet", "--device", "cuda")
    assert_fails(argv, "CUDA is not available", capsys, tmp_path / "o.parquet")


_HEADER = "##fileformat=VCFv4.2\n##contig=<ID=20>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def _vcf(path: Path, records: list[str]) -> Path:
    header = ["##fileformat=VCFv4.2", "##contig=<ID=20>", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    return write_lines(path, header + [r + "\t.\t.\t." for r in records])


def test_vcf_ref_mismatch_is_reported_per_variant(fasta: Path, tmp_path: Path, capsys) -> None:
    seq = random_genome()["20"]
    wrong = "ACGT"[("ACGT".index(seq[1499]) + 1) % 4]
    ok_alt = "ACGT"[("ACGT".index(seq[999]) + 2) % 4]
    vcf = _vcf(tmp_path / "v.vcf", [f"20\t1000\tgood\t{seq[999]}\t{ok_alt}", f"20\t1500\tbad\t{wrong}\tA"])
    out = tmp_path / "s.parquet"
    code, stdout, _ = run(
        ["score-variants", "--fasta", str(fasta), "--vcf", str(vcf), "--out", str(out), *FAST], capsys
    )
    assert code == 0 and "1 scored, 1 REF mismatches (not scored)" in stdout
    df = pl.read_parquet(out)
    assert df["status"].to_list() == ["ok", "ref_mismatch"]
    assert df["reason"][1] == f"REF {wrong} does not match the FASTA ({seq[1499]}) at 20:1500"
    assert df["llr"][1] is None and df["llr"][0] is not None


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        ("not a vcf\n", "v.vcf is not a valid VCF: its first line is not ##fileformat=VCFv4.x (found 'not a vcf')"),
        ("##fileformat=VCFv4.2\n", "v.vcf is not a valid VCF: it has ## header lines but no #CHROM line"),
        ("CHROM\tPOS\tID\tREF\tALT\n20\t100\t.\tA\tC\n", "its first line is not ##fileformat=VCFv4.x"),
        ("##fileformat=VCFv4.2\n#CHROM POS ID REF ALT QUAL FILTER INFO\n20 100 . A C . . .\n",
         "its #CHROM header line is not tab-separated"),
        (_HEADER + "20\t100\t.\tA\tC\t.\t.\t.\n20\t200\t.\tA\n",
         "v.vcf: line 5 (record 2): 4 tab-separated column(s), a record needs 8 (CHROM POS ID REF ALT"),
        (_HEADER + "20\tabc\t.\tA\tC\t.\t.\t.\n", "v.vcf: line 4 (record 1): POS 'abc' is not a whole number"),
    ],
    ids=["missing", "garbage", "no-header-line", "table-not-vcf", "spaces", "short-record", "non-integer-pos"],
)
def test_unreadable_vcf(content: str | None, needle: str, fasta: Path, tmp_path: Path, capsys) -> None:
    vcf = tmp_path / "v.vcf"
    if content is not None:
        vcf.write_text(content)
    out = tmp_path / "s.tsv"
    argv = ["score-variants", "--fasta", str(fasta), "--vcf", str(vcf), "--out", str(out), *FAST]
    assert_fails(argv, needle, capsys, out)


@pytest.mark.parametrize("which", ["fasta", "bed", "vcf"])
def test_an_input_that_is_a_directory_is_named_as_such(which: str, fasta: Path, tmp_path: Path, capsys) -> None:
    """A folder given for a file input (e.g. a folder of per-chromosome VCFs) is called that, even when --out lies
    inside it (it used to be refused for that instead)."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    bed = write_lines(tmp_path / "r.bed", ["20\t10\t20"])
    vcf = _vcf(tmp_path / "v.vcf", ["20\t1000\t.\tA\tC"])
    out = folder / "o.parquet"
    paths = {"fasta": fasta, "bed": bed, "vcf": vcf, which: folder}
    if which == "vcf":
        argv = ["score-variants", "--fasta", str(paths["fasta"]), "--vcf", str(folder), "--out", str(out), *FAST]
    else:
        argv = predict_argv(paths["fasta"], paths["bed"], out, *FAST)
    what = {"fasta": "FASTA", "bed": "BED", "vcf": "VCF"}[which]
    assert_fails(argv, f"{what} path {folder} is a directory, not a file: give the {what} file itself", capsys, out)


def test_score_variants_refuses_a_checkpoint_without_masked_lm_head(fasta: Path, tmp_path: Path, capsys) -> None:
    from tests.genomic_data import grelu_checkpoint

    ckpt = grelu_checkpoint(tmp_path / "t.ckpt")
    vcf = _vcf(tmp_path / "v.vcf", ["20\t1000\t.\tA\tC"])
    out = tmp_path / "s.tsv"
    argv = ["score-variants", "--fasta", str(fasta), "--vcf", str(vcf), "--out", str(out), "--weights", str(ckpt)]
    assert_fails(argv, "score-variants needs a Caduceus masked-LM checkpoint", capsys, out)


def test_real_process_prints_one_line_and_no_traceback(fasta: Path, tmp_path: Path) -> None:
    bed = write_lines(tmp_path / "r.bed", ["chr21\t10\t20"])
    out = tmp_path / "o.parquet"
    argv = ["predict", "--fasta", str(fasta), "--bed", str(bed), "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "caduceus_plugin.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: chromosome naming mismatch") and proc.stderr.count("\n") == 1, proc.stderr
    assert not out.exists()


# --- issue 16: the inputs real users got wrong ------------------------------------------------------------------


def test_snv_with_n_alleles_is_reported_not_a_traceback(fasta: Path, tmp_path: Path, capsys) -> None:
    seq = random_genome()["20"]
    vcf = _vcf(tmp_path / "v.vcf", [f"20\t1000\tn_alt\t{seq[999]}\tN", f"20\t1200\tgood\t{seq[1199]}\t"
                                    f"{'ACGT'[('ACGT'.index(seq[1199]) + 1) % 4]}"])
    out = tmp_path / "s.parquet"
    code, _, err = run(["score-variants", "--fasta", str(fasta), "--vcf", str(vcf), "--out", str(out), *FAST],
                            capsys)
    assert code == 0, err
    df = pl.read_parquet(out)
    assert df["status"].to_list() == ["ok", "ok"]  # both are scored; the N allele gets no llr, and says why
    assert df["llr"][0] is None and df["emb_l2"][0] is not None and "N is not a base" in df["reason"][0]
    assert df["llr"][1] is not None


def test_a_position_off_the_chromosome_is_skipped_with_its_reason(fasta: Path, tmp_path: Path, capsys) -> None:
    """POS 0 (allowed by the VCF spec for telomeres) and a REF past the end: no base to score, so the row says so
    instead of scoring N padding."""
    vcf = _vcf(tmp_path / "v.vcf", ["20\t0\tzero\tN\tA", "20\t2999\tend\tACGT\tA"])
    out = tmp_path / "s.parquet"
    code, _, err = run(["score-variants", "--fasta", str(fasta), "--vcf", str(vcf), "--out", str(out), *FAST],
                       capsys)
    assert code == 0, err
    df = pl.read_parquet(out)
    assert df["status"].to_list() == ["skipped", "skipped"]
    assert df["reason"].to_list() == ["POS 0 is before the first base of 20 (VCF positions are 1-based)",
                                      "REF runs past the end of chromosome 20"]
    assert df["emb_l2"].null_count() == 2


def test_plain_gzip_vcf_is_read(fasta: Path, tmp_path: Path, capsys) -> None:
    import gzip

    seq = random_genome()["20"]
    plain = _vcf(tmp_path / "v.vcf", [f"20\t1000\t.\t{seq[999]}\t{'ACGT'[('ACGT'.index(seq[999]) + 1) % 4]}"])
    gz = tmp_path / "v.vcf.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))  # gzip, not bgzip: htslib cannot seek in it
    outs = []
    for src in (plain, gz):
        out = tmp_path / f"{src.name}.parquet"
        assert main(["score-variants", "--fasta", str(fasta), "--vcf", str(src), "--out", str(out), *FAST]) == 0
        outs.append(pl.read_parquet(out))
    assert outs[0].equals(outs[1])


@pytest.mark.parametrize("which", ["fasta", "bed", "fai"])
def test_output_naming_an_input_is_refused(which: str, fasta: Path, tmp_path: Path, capsys) -> None:
    bed = write_lines(tmp_path / "r.parquet", ["20\t10\t20"])  # a BED whose name looks like an output
    from caduceus_plugin.genome import Genome

    Genome(fasta).close()  # writes g.fa.fai
    target = {"fasta": fasta, "bed": bed, "fai": Path(str(fasta) + ".fai")}[which]
    before = target.read_bytes()
    code, _, err = run(["predict", "--fasta", str(fasta), "--bed", str(bed), "--out", str(target), "--format",
                        "parquet", *FAST], capsys)
    assert code == 2 and err.count("\n") == 1 and "is the input file" in err, err
    assert target.read_bytes() == before


def test_usage_errors_are_one_line(capsys) -> None:
    for argv in (["predict", "--fasta", "x"], ["no-such-command"], ["predict", "--batch-size", "0"], []):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: caduceus") and err.count("\n") == 1 and "usage:" not in err, err
    # numbers that must be positive and finite, with every required argument given (so only the type can fail)
    job = ["--fasta", "x.fa", "--out", "y.parquet"]
    for argv, want in ((["predict", *job, "--bed", "b.bed", "--log-every", "-1"], "--log-every: expected a non-neg"),
                       (["score-variants", *job, "--vcf", "v.vcf", "--log-every", "nan"], "--log-every: expected"),
                       (["pretrain", "--fasta", "x.fa", "--out", "run", "--max-minutes", "inf"],
                        "--max-minutes: expected a positive number"),
                       (["pretrain", "--fasta", "x.fa", "--out", "run", "--lr", "0"], "--lr: expected a positive")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and f"argument {want}" in err, err


def test_a_batch_that_cannot_fit_in_memory_is_refused(fasta: Path, tmp_path: Path, capsys) -> None:
    bed = write_lines(tmp_path / "r.bed", ["20\t10\t20"])
    out = tmp_path / "o.parquet"
    argv = ["predict", "--fasta", str(fasta), "--bed", str(bed), "--out", str(out), "--weights", TINY,
            "--seq-len", str(2**30)]
    assert_fails(argv, "needs about", capsys, out)


def test_stale_fasta_index_is_rebuilt(tmp_path: Path) -> None:
    import os

    from caduceus_plugin.genome import Genome

    fa = write_fasta(tmp_path / "g.fa", {"a": "ACGT" * 5, "b": "GG"})
    Genome(fa).close()
    write_fasta(fa, {"a": "T" * 40, "c": "CC"})  # another genome copied over it with an old mtime (cp -p)
    os.utime(fa, (0, 0))
    g = Genome(fa)
    assert g.lengths == {"a": 40, "c": 2} and g.fetch("a", 0, 3) == ("TTT", 0)


def _config_with(tmp_path: Path, path: tuple[str, ...], value) -> Path:
    import json
    import shutil

    d = tmp_path / "ck"
    shutil.copytree(TINY, d, dirs_exist_ok=True)
    cfg = json.loads((d / "config.json").read_text())
    node = cfg
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("d_model",), 0), (("n_layer",), "2"), (("norm_epsilon",), -1e-5), (("norm_epsilon",), float("inf")),
        (("ssm_cfg", "d_state"), 0), (("ssm_cfg", "dt_min"), 0), (("ssm_cfg", "dt_max"), "x"),
        (("ssm_cfg", "dt_scale"), -1.0), (("ssm_cfg", "dt_init_floor"), None), (("ssm_cfg", "expand"), 1.5),
        (("initializer_cfg", "initializer_range"), -1), (("initializer_cfg", "n_residuals_per_layer"), 0),
        (("seq_len",), -128), (("n_to_pad",), "yes"),
    ],
    ids=lambda v: ".".join(v) if isinstance(v, tuple) else repr(v),
)
def test_every_config_field_is_checked(path, value, fasta: Path, tmp_path: Path, capsys) -> None:
    weights = _config_with(tmp_path, path, value)
    bed = write_lines(tmp_path / "r.bed", ["20\t10\t20"])
    out = tmp_path / "o.parquet"
    argv = ["predict", "--fasta", str(fasta), "--bed", str(bed), "--out", str(out), "--weights", str(weights)]
    err = assert_fails(argv, f"config field {'.'.join(path)}=", capsys, out)
    assert "Traceback" not in err
