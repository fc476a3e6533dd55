"""``caduceus logits``: per-position log-probabilities on real GRCh37, strand agreement, bigWig tracks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from caduceus_plugin.cli import main
from caduceus_plugin.errors import InputError
from caduceus_plugin.jobs.logits import logits
from caduceus_plugin.registry.pretrained import shipped_weights
from tests.conftest import CADUCEUS_FIXTURES
from tests.genomic_data import SLICE, real_data, write_lines

TINY = shipped_weights("tiny_ps")
LOGP = ["logp_A", "logp_C", "logp_G", "logp_T"]


def _bed(tmp_path: Path, strand: str, n: int = 1, length: int = 30) -> Path:
    lo = SLICE[0] + 5000
    return write_lines(tmp_path / f"r{strand}.bed",
                       [f"20\t{lo + 97 * i}\t{lo + 97 * i + length}\tr{i}\t0\t{strand}" for i in range(n)])


@pytest.mark.parametrize("weights", [TINY, CADUCEUS_FIXTURES / "ph_d24_l2_fused"], ids=["PS", "Ph"])
def test_logprobs_are_finite_normalised_and_strands_agree(weights: Path, tmp_path: Path) -> None:
    files = real_data(tmp_path)
    plus = logits(files["fasta"], _bed(tmp_path, "+"), weights=weights, seq_len=96, stride=8, batch_size=16)
    minus = logits(files["fasta"], _bed(tmp_path, "-"), weights=weights, seq_len=96, stride=8, batch_size=16)
    lp = plus.select(LOGP).to_numpy()
    assert plus.height == 30 and np.isfinite(lp).all()
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, atol=1e-9)
    # minus-strand intervals run on the reverse complement and come back in genome orientation
    np.testing.assert_allclose(minus.select(LOGP).to_numpy(), lp, atol=1e-5)
    assert plus["pos"].to_list() == list(range(SLICE[0] + 5000, SLICE[0] + 5030))
    ref = plus["ref"].to_list()
    want = np.array([lp[i, "ACGT".index(b)] for i, b in enumerate(ref)])
    np.testing.assert_allclose(plus["logp_ref"].to_numpy(), want)
    entropy = -(np.exp(lp) * lp).sum(axis=1)
    np.testing.assert_allclose(plus["entropy"].to_numpy(), entropy)
    assert (entropy > 0).all() and (entropy <= np.log(4) + 1e-9).all()


def test_tiling_gives_each_position_its_own_masked_window(tmp_path: Path) -> None:
    """The score of a position does not depend on how positions are grouped into tiles, beyond the window's shift:
    with a stride of 1 every window is centred on its position; the first tile of a stride-8 run shares its window
    with 7 other positions, each masked alone."""
    files = real_data(tmp_path)
    bed = _bed(tmp_path, "+", length=8)
    one = logits(files["fasta"], bed, weights=TINY, seq_len=64, stride=8, batch_size=8).select(LOGP).to_numpy()
    again = logits(files["fasta"], bed, weights=TINY, seq_len=64, stride=8, batch_size=3).select(LOGP).to_numpy()
    np.testing.assert_allclose(again, one, atol=1e-6)  # batching changes nothing
    centred = logits(files["fasta"], bed, weights=TINY, seq_len=64, stride=1, batch_size=8).select(LOGP).to_numpy()
    assert not np.allclose(centred, one)  # the window moved, so the context did


def test_cli_parquet_and_bigwig_tracks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyBigWig

    files = real_data(tmp_path)
    bed = _bed(tmp_path, "+", n=2, length=12)
    base = ["logits", "--fasta", str(files["fasta"]), "--bed", str(bed), "--weights", str(TINY), "--seq-len", "64",
            "--stride", "6"]
    out = tmp_path / "l.parquet"
    assert main([*base, "--out", str(out)]) == 0
    assert "wrote 24 positions of 2 intervals" in capsys.readouterr().out
    table = pl.read_parquet(out)
    assert table.columns == ["interval", "chrom", "pos", "ref", *LOGP, "logp_ref", "entropy", "padded_bp"]
    assert main([*base, "--out", str(tmp_path / "l.bw")]) == 0
    for track in ("logp_ref", "entropy"):
        bw = pyBigWig.open(str(tmp_path / f"l.{track}.bw"))
        first = table.row(0, named=True)
        assert bw.values("20", first["pos"], first["pos"] + 1)[0] == pytest.approx(first[track], rel=1e-5)
        bw.close()


def test_bad_logits_input(tmp_path: Path) -> None:
    files = real_data(tmp_path)
    bed = _bed(tmp_path, "+")
    with pytest.raises(InputError, match="--stride 200 is longer than the model's window"):
        logits(files["fasta"], bed, weights=TINY, seq_len=64, stride=200)
    with pytest.raises(InputError, match="each costs one forward pass"):
        logits(files["fasta"], bed, weights=TINY, seq_len=64, max_positions=10)
    past = write_lines(tmp_path / "past.bed", ["20\t900000000\t900000010"])  # the contig ends at 1.2 Mb
    with pytest.raises(InputError, match=r"past.bed line 1: 20:900000000-900000010 starts past the end of 20"):
        logits(files["fasta"], past, weights=TINY, seq_len=64)
