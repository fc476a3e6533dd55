"""FASTA/BED/VCF handling of caduceus_plugin.genome (no model involved)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caduceus_plugin.errors import InputError
from caduceus_plugin.genome import Genome, is_bgzf, read_bed, read_vcf, resize
from caduceus_plugin.sequence import clean, onehot, reverse_complement
from tests.genomic_data import SLICE, random_genome, real_data, write_fasta, write_lines


def test_clean_sequence_uppercases_and_maps_non_acgt_to_n() -> None:
    assert clean("acgtNnRYKMswbdhv-.ACGT") == "ACGTNNNNNNNNNNNNNNACGT"
    assert reverse_complement("AACGTN") == "NACGTT"


def test_onehot_is_acgt_channels_first_with_n_as_zeros() -> None:
    x = onehot(["ACGTN"])
    assert x.shape == (1, 4, 5) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, :, :4], np.eye(4, dtype=np.float32))
    assert x[0, :, 4].sum() == 0


def test_plain_fasta_gets_an_index_and_pads_off_the_ends(tmp_path: Path) -> None:
    genome_seqs = random_genome()
    fa = write_fasta(tmp_path / "g.fa", genome_seqs)
    assert not (tmp_path / "g.fa.fai").exists()
    g = Genome(fa)
    assert (tmp_path / "g.fa.fai").exists()
    assert g.names == ["20", "21"] and g.lengths == {"20": 3000, "21": 500}
    seq = genome_seqs["20"]
    assert g.fetch("20", 100, 160) == (seq[100:160], 0)
    assert g.fetch("20", -5, 10) == ("N" * 5 + seq[:10], 5)
    assert g.fetch("20", 2995, 3003) == (seq[2995:] + "N" * 3, 3)
    assert g.fetch("20", 3100, 3110) == ("N" * 10, 10)
    assert g.padding("20", -5, 3003) == 8 and g.padding("20", 0, 3000) == 0
    minus, _ = g.extract("20", 100, 160, "-")
    assert minus == reverse_complement(seq[100:160])


def test_bgzip_fasta_is_read_and_plain_gzip_is_refused_with_a_fix(tmp_path: Path) -> None:
    seqs = random_genome(1)
    bgz = write_fasta(tmp_path / "g.fa.gz", seqs, compress="bgzf")
    assert is_bgzf(bgz)
    assert Genome(bgz).fetch("21", 10, 50)[0] == seqs["21"][10:50]
    gz = write_fasta(tmp_path / "plain.fa.gz", seqs, compress="gzip")
    with pytest.raises(InputError, match=r"not with bgzip.*bgzip >"):
        Genome(gz)


def test_crlf_fasta_reads_like_the_lf_one_and_a_binary_file_is_one_line(tmp_path: Path) -> None:
    """A FASTA saved on Windows (CRLF) gives the same bases; random bytes named .fa get one line, not a traceback."""
    seqs = random_genome(2)
    lf = write_fasta(tmp_path / "lf.fa", seqs)
    crlf = tmp_path / "crlf.fa"
    crlf.write_bytes(lf.read_bytes().replace(b"\n", b"\r\n"))
    for name, seq in seqs.items():
        assert Genome(crlf).fetch(name, 0, len(seq))[0] == seq
    junk = tmp_path / "junk.fa"
    junk.write_bytes(bytes(np.random.default_rng(0).integers(128, 256, 3000, dtype=np.uint8)))
    with pytest.raises(InputError) as err:
        Genome(junk)
    assert "junk.fa" in str(err.value) and "\n" not in str(err.value)


def test_soft_masked_and_iupac_bases_come_out_upper_case_acgtn(tmp_path: Path) -> None:
    fa = write_fasta(tmp_path / "g.fa", {"1": "acgtRYACGTnnkm"})
    assert Genome(fa).fetch("1", 0, 14)[0] == "ACGTNNACGTNNNN"


def test_chromosome_naming_mismatch_names_the_fasta_sequences(tmp_path: Path) -> None:
    g = Genome(write_fasta(tmp_path / "g.fa", random_genome()))
    with pytest.raises(InputError, match=r"naming mismatch: x.bed has 'chr20' but the FASTA g.fa calls it '20' "):
        g.check_chroms(["chr20"], "x.bed")
    with pytest.raises(InputError, match=r"FASTA sequences: 20, 21\)"):
        g.check_chroms(["chr20"], "x.bed")
    with pytest.raises(InputError, match=r"chromosome 'chrUn_gl1' of x.bed is not in the FASTA"):
        g.check_chroms(["20", "chrUn_gl1"], "x.bed")
    assert g.check_chroms(["20", "X"], "v.vcf", allow_partial=True) == ["X"]


def test_bed_reading_skips_headers_keeps_extra_columns_and_reads_gzip(tmp_path: Path) -> None:
    lines = [
        "track name=test",
        "browser position 20:1-100",
        "# comment",
        "",
        "20\t10\t20\tr1\t0\t+\tx\ty",
        "20\t30\t30\tr2\t5\t-\tz\tw",
    ]
    for gz in (False, True):
        bed = read_bed(write_lines(tmp_path / f"a{gz}.bed", lines, gz=gz))
        assert len(bed) == 2 and bed.lines == [5, 6]
        assert bed.start == [10, 30] and bed.end == [20, 30] and bed.strand == ["+", "-"]
        df = bed.to_polars()
        assert df.columns == ["chrom", "start", "end", "name", "score", "strand", "col7", "col8"]
        assert df["col8"].to_list() == ["y", "w"]
    bed3 = read_bed(write_lines(tmp_path / "b.bed", ["20 1 5"]))  # space-separated BED3 is accepted
    assert bed3.strand == ["."] and list(bed3.columns) == ["chrom", "start", "end"]


def test_bed_from_a_windows_editor_reads_like_a_plain_one(tmp_path: Path) -> None:
    """A UTF-8 byte-order mark and CRLF line ends (Notepad, Excel's "CSV UTF-8") change nothing, plain or gzip."""
    import gzip

    text = "20\t10\t20\tr1\r\n20\t30\t40\tr2\r\n"
    for gz in (False, True):
        path = tmp_path / f"win{gz}.bed"
        data = b"\xef\xbb\xbf" + text.encode()
        path.write_bytes(gzip.compress(data) if gz else data)
        bed = read_bed(path)
        assert bed.chrom == ["20", "20"] and bed.start == [10, 30] and bed.end == [20, 40]
        assert bed.columns["name"] == ["r1", "r2"]


@pytest.mark.parametrize("what", ["FASTA", "BED", "VCF"])
def test_foreign_compression_and_2bit_say_how_to_convert(what: str, tmp_path: Path) -> None:
    """bzip2, xz, zstd, zip and .2bit inputs are named, with the command that makes a readable file, instead of a
    decoder's or htslib's message; gzip passes."""
    import bz2
    import gzip
    import lzma

    from caduceus_plugin.errors import InputError
    from caduceus_plugin.genome.files import require_file

    text = b">20\nACGT\n" if what == "FASTA" else b"20\t1\t2\n"
    made = {"x.bz2": (bz2.compress(text), "is bzip2-compressed", "`bunzip2 -k x.bz2`"),
            "x.xz": (lzma.compress(text), "is xz-compressed", "`unxz -k x.xz`"),
            "x.zst": (b"\x28\xb5\x2f\xfd" + bytes(16), "is zstd-compressed", "`unzstd x.zst`"),
            "x.zip": (b"PK\x03\x04" + bytes(26), "is a zip archive", "`unzip x.zip`"),
            "x.2bit": (bytes.fromhex("4327411a") + bytes(12), "is a UCSC .2bit genome",
                       "`twoBitToFa x.2bit genome.fa`")}
    for name, (data, kind, fix) in made.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError) as err:
            require_file(tmp_path / name, what)
        msg = str(err.value)
        assert msg.startswith(f"{what} {tmp_path / name} {kind}, which is not read here") and fix in msg, msg
    (tmp_path / "x.gz").write_bytes(gzip.compress(text))
    assert require_file(tmp_path / "x.gz", what) == tmp_path / "x.gz"


def test_bed_in_a_windows_code_page_names_the_line_and_the_fix(tmp_path: Path) -> None:
    """A spreadsheet's cp1252 BED: the error names the first non-UTF-8 line, even when it lies past the first chunk
    the text stream decodes, plain or gzip."""
    import gzip

    from caduceus_plugin.errors import InputError

    lines = [f"20\t{i}\t{i + 10}\tr{i}" for i in range(3000)]
    lines[2500] = "20\t5\t15\tcaf\u00e9"
    data = ("\n".join(lines) + "\n").encode("cp1252")
    for gz in (False, True):
        path = tmp_path / f"cp1252{gz}.bed"
        path.write_bytes(gzip.compress(data) if gz else data)
        with pytest.raises(InputError) as err:
            read_bed(path)
        msg = str(err.value)
        assert f"{path} line 2501 is not UTF-8 text (byte 0xe9 at column 12)" in msg, msg
        assert "save it as UTF-8" in msg and "\n" not in msg


def test_resize_is_centred_on_genomic_coordinates() -> None:
    """kipoiseq's centre of an odd-width interval rounds up; the strand is not used, so both strands of an
    interval get the same bases."""
    assert resize("20", 100, 200, 10) == (145, 155)
    assert resize("20", 100, 101, 8) == (97, 105)
    assert resize("20", 0, 2, 10) == (-4, 6)  # may run off the chromosome; padding is done at extraction


def test_vcf_multiallelic_records_are_split(tmp_path: Path) -> None:
    vcf = write_lines(
        tmp_path / "v.vcf",
        [
            "##fileformat=VCFv4.2",
            "##contig=<ID=20>",
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
            "20\t5\trs1\tA\tC,G,T\t.\t.\t.",
            "20\t9\t.\tac\ta\t.\t.\t.",
        ],
    )
    rows = read_vcf(vcf)
    assert [(r.pos, r.ref, r.alt, r.allele, r.n_alts) for r in rows] == [
        (5, "A", "C", 1, 3),
        (5, "A", "G", 2, 3),
        (5, "A", "T", 3, 3),
        (9, "AC", "A", 1, 1),
    ]


def test_vcf_with_a_byte_order_mark_and_crlf_reads_like_a_plain_one(tmp_path: Path) -> None:
    """htslib does not see ``##fileformat`` behind a UTF-8 byte-order mark; the reader drops the mark (plain or
    gzip) and leaves the file itself alone."""
    import gzip

    text = "##fileformat=VCFv4.2\r\n##contig=<ID=20>\r\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\r\n"
    text += "20\t5\trs1\tA\tC\t.\t.\t.\r\n20\t9\trs2\tG\tT\t.\t.\t.\r\n"
    for gz in (False, True):
        path = tmp_path / ("bom.vcf.gz" if gz else "bom.vcf")
        written = gzip.compress(b"\xef\xbb\xbf" + text.encode()) if gz else b"\xef\xbb\xbf" + text.encode()
        path.write_bytes(written)
        rows = read_vcf(path)
        assert [(r.chrom, r.pos, r.id, r.ref, r.alt) for r in rows] == [("20", 5, "rs1", "A", "C"),
                                                                        ("20", 9, "rs2", "G", "T")]
        assert path.read_bytes() == written


def test_vcf_copy_errors_say_which_file_is_at_fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A truncated gzip VCF is called incomplete; a temporary folder with no room is named, with the fix."""
    import errno
    import gzip
    import shutil

    text = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "20\t5\t.\tA\tC\t.\t.\t.\n" * 500
    cut = tmp_path / "cut.vcf.gz"
    cut.write_bytes(gzip.compress(text.encode())[:-40])
    with pytest.raises(InputError, match=r"cannot decompress VCF .*is the gzip file complete"):
        read_vcf(cut)
    bom = tmp_path / "bom.vcf"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())

    def full(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", full)
    with pytest.raises(InputError, match=r"cannot copy VCF .*No space left.*TMPDIR") as info:
        read_vcf(bom)
    assert "decompress" not in str(info.value)
    assert bom.read_bytes().startswith(b"\xef\xbb\xbf")  # the input untouched


def test_real_slice_matches_1000_genomes_ref_alleles(tmp_path: Path) -> None:
    """The committed GRCh37 slice is real: every 1000 Genomes REF allele in it matches, and the BED is inside."""
    files = real_data(tmp_path)
    g = Genome(files["fasta"])
    assert g.lengths == {"20": SLICE[1]}
    rows = read_vcf(files["vcf"])
    assert len(rows) == 30
    for r in rows:
        assert g.fetch("20", r.pos - 1, r.pos - 1 + len(r.ref))[0] == r.ref
    bed = read_bed(files["bed"])
    assert len(bed) == 19 and set(bed.chrom) == {"20"}
    assert all(SLICE[0] <= s <= e <= SLICE[1] for s, e in zip(bed.start, bed.end))
    seq, padded = g.fetch("20", SLICE[0], SLICE[0] + 1000)
    assert padded == 0 and seq.count("N") == 0 and set(seq) == set("ACGT")
