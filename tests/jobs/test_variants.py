"""``caduceus score-variants``: strand symmetry, score definitions, real 1000 Genomes variants, odd records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from caduceus_plugin.cli import main
from caduceus_plugin.errors import InputError
from caduceus_plugin.genome import Genome
from caduceus_plugin.jobs.predictor import load_predictor
from caduceus_plugin.jobs.variants import score_sequences, score_variants, seq_ids
from caduceus_plugin.registry.pretrained import shipped_weights
from caduceus_plugin.sequence import MASK_ID, complement, reverse_complement
from tests.conftest import tiny_model
from tests.genomic_data import SLICE, real_data, write_lines

SEQ_LEN = 256


@pytest.fixture(scope="module")
def ps_model():
    return load_predictor(weights=shipped_weights("tiny_ps"), device="cpu", seq_len=SEQ_LEN).mlm


def _random_pair(seed: int, length: int = 128) -> tuple[str, str, int, str, str]:
    rng = np.random.default_rng(seed)
    seq = "".join(rng.choice(list("ACGT"), length))
    c = length // 2 - 3  # off-centre on purpose
    alt = "ACGT"[("ACGT".index(seq[c]) + 1) % 4]
    return seq, seq[:c] + alt + seq[c + 1 :], c, seq[c], alt


@pytest.mark.parametrize("rcps", [True, False], ids=["PS", "Ph"])
def test_scores_are_identical_for_the_opposite_strand(rcps: bool, ps_model) -> None:
    """Scoring the reverse-complemented windows with complemented alleles gives the same scores."""
    mlm = ps_model if rcps else tiny_model(seed=1, d_model=16, n_layer=2, rcps=False)
    ref, alt, c, r, a = _random_pair(0)
    ins_alt = ref[:c] + "GA" + ref[c + 1 : -1]  # an insertion-like pair (no LLR)
    length = len(ref)
    fwd = score_sequences(mlm, [ref, ref], [alt, ins_alt], [c, c], [(r, a), None], window=31)
    rev = score_sequences(
        mlm,
        [reverse_complement(ref)] * 2,
        [reverse_complement(alt), reverse_complement(ins_alt)],
        [length - 1 - c] * 2,
        [(complement(r), complement(a)), None],
        window=31,
    )
    assert np.isfinite(fwd["llr"][0]) and np.isnan(fwd["llr"][1]) and np.isnan(rev["llr"][1])
    np.testing.assert_allclose(rev["llr"][0], fwd["llr"][0], rtol=1e-6, atol=1e-9)
    tol = 2e-5 if rcps else 1e-9  # PS: strand symmetry of the weights (float rounding); Ph: exact conjoining
    np.testing.assert_allclose(rev["emb_l2"], fwd["emb_l2"], rtol=tol)
    np.testing.assert_allclose(rev["emb_cosine"], fwd["emb_cosine"], rtol=10 * tol, atol=1e-12)
    assert (fwd["emb_l2"] > 0).all()


def test_llr_definition(ps_model) -> None:
    """llr = log p(alt) - log p(ref) at the masked position: swapping REF and ALT negates it exactly (the masked
    input is the same), and for PS it equals the single-strand value."""
    ref, alt, c, r, a = _random_pair(3)
    s1 = score_sequences(ps_model, [ref], [alt], [c], [(r, a)], window=15)
    s2 = score_sequences(ps_model, [alt], [ref], [c], [(a, r)], window=15)
    np.testing.assert_allclose(s2["llr"], -s1["llr"], rtol=1e-12)
    np.testing.assert_allclose(s2["emb_l2"], s1["emb_l2"], rtol=1e-6)
    ids = seq_ids([ref])
    ids[0, c] = MASK_ID
    with torch.inference_mode():
        logp = ps_model(ids).logits[0, c].double().log_softmax(-1)
    direct = (logp[seq_ids([a])[0, 0]] - logp[seq_ids([r])[0, 0]]).item()
    assert s1["llr"][0] == pytest.approx(direct, rel=1e-5, abs=1e-7)


def test_score_variants_cli_on_real_1000_genomes_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = real_data(tmp_path)
    out = tmp_path / "scores.parquet"
    argv = ["score-variants", "--fasta", str(files["fasta"]), "--vcf", str(files["vcf"]), "--out", str(out)]
    opts = ["--weights", str(shipped_weights("tiny_ps")), "--seq-len", str(SEQ_LEN), "--window", "64"]
    assert main([*argv, *opts, "--batch-size", "32"]) == 0
    assert "wrote 30 alleles" in capsys.readouterr().out
    df = pl.read_parquet(out)
    vcf = [line.split("\t") for line in files["vcf"].read_text().splitlines() if not line.startswith("#")]
    assert df.select("pos", "id", "ref", "alt").rows() == [(int(v[1]), v[2], v[3], v[4]) for v in vcf]
    assert (df["status"] == "ok").all() and (df["fasta_ref"] == df["ref"]).all()
    snv = df.filter(pl.col("variant_type") == "snv")
    indel = df.filter(pl.col("variant_type") == "indel")
    assert snv.height == 27 and indel.height == 3
    assert np.isfinite(snv["llr"].to_numpy()).all() and indel["llr"].null_count() == 3
    assert np.isfinite(df["emb_l2"].to_numpy()).all() and (df["emb_l2"] > 0).all()
    assert snv["llr"].n_unique() > 20


def test_odd_records_are_split_checked_and_reported(tmp_path: Path, ps_model) -> None:
    files = real_data(tmp_path)
    g = Genome(files["fasta"])
    p = 1_100_000  # 1-based positions inside the real slice
    b = g.fetch("20", p - 1, p + 2)[0]
    wrong = "ACGT"[("ACGT".index(b[0]) + 1) % 4]
    others = [x for x in "ACGT" if x != b[0]]
    end = SLICE[1]
    last = g.fetch("20", end - 1, end)[0]
    records = [
        f"20\t{p}\tmulti\t{b[0]}\t{others[0]},{others[1]}",
        f"20\t{p}\tmismatch\t{wrong}\t{b[0]}",
        f"20\t{p}\tdel\t{b[:3]}\t{b[0]}",
        f"20\t{p}\tins\t{b[0]}\t{b[0]}TTT",
        f"20\t{p}\tsv\t{b[0]}\t<DEL>",
        f"20\t{end}\tedge\t{last}\t{'A' if last != 'A' else 'C'}",
        "X\t100\tother_chrom\tA\tC",
    ]
    header = [
        "##fileformat=VCFv4.2",
        "##contig=<ID=20>",
        "##contig=<ID=X>",
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    vcf = write_lines(tmp_path / "synthetic.vcf", header + [r + "\t.\t.\t." for r in records])
    predictor = load_predictor(weights=shipped_weights("tiny_ps"), device="cpu", seq_len=SEQ_LEN)
    df = score_variants(files["fasta"], vcf, tmp_path / "s.tsv", predictor=predictor, window=32)
    assert df["id"].to_list() == ["multi", "multi", "mismatch", "del", "ins", "sv", "edge", "other_chrom"]
    assert df["allele"].to_list()[:2] == [1, 2] and df["alt"].to_list()[:2] == others[:2]
    status = dict(zip(df["id"].to_list()[1:], df["status"].to_list()[1:]))
    assert status == {
        "multi": "ok",
        "mismatch": "ref_mismatch",
        "del": "ok",
        "ins": "ok",
        "sv": "skipped",
        "edge": "ok",
        "other_chrom": "skipped",
    }
    row = df.row(2, named=True)
    assert row["reason"] == f"REF {wrong} does not match the FASTA ({b[0]}) at 20:{p}" and row["fasta_ref"] == b[0]
    assert row["llr"] is None and row["emb_l2"] is None
    assert df.filter(pl.col("id").is_in(["del", "ins"]))["llr"].null_count() == 2
    assert df.filter(pl.col("id").is_in(["del", "ins"]))["emb_l2"].min() > 0
    edge = df.row(6, named=True)
    assert edge["padded_bp"] == SEQ_LEN - SEQ_LEN // 2 - 1 and np.isfinite(edge["llr"])
    assert "chromosome X is not in the FASTA" in df.row(7, named=True)["reason"]
    tsv = pl.read_csv(tmp_path / "s.tsv", separator="\t", schema_overrides={"chrom": pl.Utf8})
    assert tsv.height == 8 and tsv["status"].to_list() == df["status"].to_list()

    chr_vcf = write_lines(
        tmp_path / "chr.vcf", [*header[:1], "##contig=<ID=chr20>", header[-1], f"chr20\t{p}\t.\tA\tC\t.\t.\t."]
    )
    with pytest.raises(InputError, match=r"naming mismatch: chr.vcf has 'chr20' but the FASTA .* calls it '20'"):
        score_variants(files["fasta"], chr_vcf, tmp_path / "x.tsv", predictor=predictor)
    assert not (tmp_path / "x.tsv").exists()


def test_annotated_vcf_keeps_every_record_and_adds_info_fields(tmp_path: Path, capsys) -> None:
    import pysam

    files = real_data(tmp_path)
    vcf = tmp_path / "odd.vcf"
    seq = Genome(files["fasta"]).fetch("20", 1_010_000, 1_010_010)[0]
    header = [ln for ln in files["vcf"].read_text().splitlines() if ln.startswith("#")]
    body = [ln for ln in files["vcf"].read_text().splitlines() if not ln.startswith("#")][:4]
    other = [b for b in "ACGT" if b != seq[0]]
    body.insert(2, f"20\t1010001\tmulti\t{seq[0]}\t{other[0]},{other[1]},<DEL>\t.\tPASS\t.")
    vcf.write_text("\n".join([*header, *body]) + "\n")
    opts = ["--fasta", str(files["fasta"]), "--vcf", str(vcf), "--weights", str(shipped_weights("tiny_ps")),
            "--seq-len", str(SEQ_LEN), "--window", "64"]
    assert main(["score-variants", *opts, "--out", str(tmp_path / "s.parquet")]) == 0
    assert main(["score-variants", *opts, "--out", str(tmp_path / "s.vcf.gz")]) == 0
    table = pl.read_parquet(tmp_path / "s.parquet")
    assert {"abs_llr", "emb_dot", "emb_ref_norm", "emb_alt_norm"} <= set(table.columns)
    out = tmp_path / "s.vcf.gz"
    assert (tmp_path / "s.vcf.gz.tbi").is_file()
    with pysam.VariantFile(str(out)) as f:
        for key in ("CADUCEUS_LLR", "CADUCEUS_ABS_LLR", "CADUCEUS_EMB_L2", "CADUCEUS_EMB_COS", "CADUCEUS_STATUS"):
            assert f.header.info[key].number == "A"
        records = list(f)
        assert [r.id for r in records] == [ln.split("\t")[2] for ln in body]  # every record, in order
        assert next(iter(f.fetch("20", 1_010_000, 1_010_001))).id == "multi"  # tabix index works
    multi = next(r for r in records if r.id == "multi")
    assert multi.info["CADUCEUS_STATUS"][:2] == ("scored", "scored")
    assert multi.info["CADUCEUS_STATUS"][2].startswith("skipped_symbolic")
    assert multi.info["CADUCEUS_LLR"][2] is None
    rows = table.filter(pl.col("id") == "multi")
    for k in range(2):
        assert multi.info["CADUCEUS_LLR"][k] == pytest.approx(rows["llr"][k], rel=1e-5)
        assert multi.info["CADUCEUS_EMB_L2"][k] == pytest.approx(rows["emb_l2"][k], rel=1e-5)
        assert multi.info["CADUCEUS_ABS_LLR"][k] == pytest.approx(abs(rows["llr"][k]), rel=1e-5)


def test_annotated_vcf_from_a_hand_made_vcf_and_re_annotated(tmp_path: Path, capsys) -> None:
    """Records using INFO / FILTER / FORMAT keys the header never declares (htslib would end the process when
    copying them), then the annotated output annotated again: every record and field kept, one definition each,
    the same values; a CADUCEUS_* key declared otherwise is refused in one line."""
    import pysam

    files = real_data(tmp_path)
    seq = Genome(files["fasta"]).fetch("20", 1_010_000, 1_010_010)[0]
    alt = next(b for b in "ACGT" if b != seq[0])
    vcf = write_lines(tmp_path / "hand.vcf", [
        "##fileformat=VCFv4.2", "##contig=<ID=20>",
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1",
        f"20\t1010001\ta\t{seq[0]}\t{alt}\t50\tPASS\tDP=7;AA=g\tGT:AD\t0/1:3,4",
        f"20\t1010005\tb\t{seq[4]}\t{next(b for b in 'ACGT' if b != seq[4])}\t.\tq10\t.\tGT\t1/1",
    ])
    opts = ["--fasta", str(files["fasta"]), "--weights", str(shipped_weights("tiny_ps")), "--seq-len", str(SEQ_LEN),
            "--window", "64"]
    first, second = tmp_path / "a1.vcf.gz", tmp_path / "a2.vcf.gz"
    assert main(["score-variants", *opts, "--vcf", str(vcf), "--out", str(first)]) == 0
    assert main(["score-variants", *opts, "--vcf", str(first), "--out", str(second)]) == 0
    capsys.readouterr()
    with pysam.VariantFile(str(first)) as f1, pysam.VariantFile(str(second)) as f2:
        r1, r2 = list(f1), list(f2)
        text = str(f2.header)
    assert [r.id for r in r1] == [r.id for r in r2] == ["a", "b"]
    assert r1[0].info["DP"] == "7" and r1[0].samples["S1"]["AD"] == ("3", "4") and list(r1[1].filter) == ["q10"]
    assert r1[0].info["CADUCEUS_STATUS"] == ("scored",) and r1[0].info["CADUCEUS_LLR"][0] is not None
    for a, b in zip(r1, r2):
        assert a.info["CADUCEUS_LLR"] == pytest.approx(b.info["CADUCEUS_LLR"])
        assert dict(a.info).get("DP") == dict(b.info).get("DP") and list(a.filter) == list(b.filter)
    assert text.count("##INFO=<ID=CADUCEUS_LLR,") == 1 and text.count("##INFO=<ID=DP,") == 1

    clash = write_lines(tmp_path / "clash.vcf", [
        "##fileformat=VCFv4.2", '##INFO=<ID=CADUCEUS_LLR,Number=1,Type=String,Description="other tool">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO", f"20\t1010001\ta\t{seq[0]}\t{alt}\t.\t.\t.",
    ])
    out = tmp_path / "c.vcf.gz"
    assert main(["score-variants", *opts, "--vcf", str(clash), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "bcftools annotate -x INFO/CADUCEUS_LLR" in err
    assert not out.exists() and not Path(f"{out}.tbi").exists()
