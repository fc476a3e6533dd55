"""Genomic inputs: FASTA access, BED and VCF reading, interval resizing and strand-aware extraction.

* **FASTA** (:class:`Genome`): pyfaidx, plain or BGZF-compressed (``bgzip``); the ``.fai`` (and ``.gzi``) index is
  built next to the file when missing. A plain-gzip FASTA is refused with a message saying how to recompress it.
  Sequences are upper-cased and every base other than A/C/G/T (IUPAC codes, ``-``) becomes ``N``.
* **Chromosome names**: :meth:`Genome.check_chroms` detects the ``chr20`` vs ``20`` mismatch and lists the FASTA's
  names in the message.
* **BED** (:func:`read_bed`): plain or gzip; ``track``/``browser``/``#`` lines and blank lines are skipped; at least
  3 tab-separated columns (0-based, half-open, ``0 <= start <= end``); columns 4-6 are ``name``, ``score``,
  ``strand`` (``+``, ``-`` or ``.``); further columns are kept as ``col7``, ``col8``, ...
* **Windows**: :func:`resize` centres a window of the model's input length on each interval (kipoiseq
  ``Interval.resize`` on genomic coordinates, so a ``-`` and a ``+`` interval get the same bases);
  :meth:`Genome.fetch` pads with ``N`` where a window runs off a chromosome end, and :meth:`Genome.extract`
  reverse-complements ``-`` strand windows.
* **VCF** (:func:`read_vcf`): pysam, plain or gzip; multi-allelic records are split into one row per ALT allele.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from caduceus_plugin.errors import InputError

#: ``bytes.translate`` table: ACGT (any case) -> upper case, every other byte -> ``N``.
_CLEAN = bytes(b if b in b"ACGT" else (b - 32 if b in b"acgt" else ord("N")) for b in range(256))
_COMPLEMENT = bytes.maketrans(b"ACGTN", b"TGCAN")
BED_NAMES = ("chrom", "start", "end", "name", "score", "strand")
STRANDS = ("+", "-", ".")


def clean_sequence(seq: str | bytes) -> str:
    """Upper-case; every character other than A/C/G/T becomes ``N`` (soft-masking and IUPAC codes removed)."""
    raw = seq.encode("ascii", "replace") if isinstance(seq, str) else bytes(seq)
    return raw.translate(_CLEAN).decode("ascii")


def reverse_complement(seq: str) -> str:
    """Reverse complement of a cleaned (ACGTN) sequence."""
    return seq.encode("ascii").translate(_COMPLEMENT)[::-1].decode("ascii")


def onehot(seqs: list[str]) -> np.ndarray:
    """ACGTN strings of equal length -> ``(n, 4, l)`` float32 one-hot (A, C, G, T; N as an all-zero column)."""
    from kipoiseq.transforms.functional import one_hot_dna

    if not seqs:
        return np.zeros((0, 4, 0), dtype=np.float32)
    return np.stack([one_hot_dna(s, neutral_value=0.0, dtype=np.float32).T for s in seqs])


# ---------------------------------------------------------------------------------------------------------------
# compression sniffing


def _magic(path: Path, n: int = 18) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def is_gzip(path: Path) -> bool:
    return _magic(path, 2) == b"\x1f\x8b"


def is_bgzf(path: Path) -> bool:
    """BGZF = gzip with the FEXTRA flag and a ``BC`` extra subfield in the first block header."""
    head = _magic(path)
    return len(head) >= 14 and head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


# ---------------------------------------------------------------------------------------------------------------
# FASTA


class Genome:
    """Random access to a FASTA file (plain or bgzip) through pyfaidx; builds the index when missing.

    Safe in DataLoader workers: the file is reopened after unpickling or in a forked process.

    Raises:
        InputError: missing file, plain-gzip FASTA, unreadable or malformed FASTA, index that cannot be written.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._open()

    def _open(self) -> None:
        import pyfaidx

        path = self.path
        if not path.is_file():
            raise InputError(f"FASTA file {path} does not exist")
        if is_gzip(path) and not is_bgzf(path):
            raise InputError(
                f"FASTA {path} is gzip-compressed but not with bgzip, so it cannot be read at random positions: "
                f"recompress it with `gunzip -c {path} | bgzip > {path.with_suffix('.bgz')}` (bgzip comes with "
                "htslib/tabix), or decompress it with `gunzip`"
            )
        fai = Path(str(path) + ".fai")
        if not fai.exists() and not os.access(path.parent, os.W_OK):
            raise InputError(
                f"FASTA {path} has no index ({fai.name}) and its folder is not writable: index it once with "
                f"`samtools faidx {path}` where you can write, or copy the FASTA to a writable folder"
            )
        try:
            self._fasta = pyfaidx.Fasta(str(path), as_raw=True, build_index=True, rebuild=True)
        except Exception as err:  # pyfaidx raises many types for malformed input
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"cannot read FASTA {path}: {first}; is it a valid (bgzip or plain) FASTA?") from None
        self.names: list[str] = list(self._fasta.keys())
        if not self.names:
            raise InputError(f"FASTA {path} contains no sequences")
        self.lengths: dict[str, int] = {n: int(self._fasta.faidx.index[n].rlen) for n in self.names}
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._open()

    def close(self) -> None:
        self._fasta.close()

    def __contains__(self, chrom: str) -> bool:
        return chrom in self.lengths

    def describe_names(self, limit: int = 8) -> str:
        shown = ", ".join(self.names[:limit])
        return shown + (f", ... ({len(self.names)} in all)" if len(self.names) > limit else "")

    def check_chroms(self, chroms: Iterable[str], source: str, allow_partial: bool = False) -> list[str]:
        """Raise :class:`InputError` for a chromosome of ``source`` that the FASTA lacks; return the missing ones.

        A ``chr`` prefix mismatch (``chr20`` vs ``20``, ``chrM`` vs ``MT``) gets its own message saying which names
        the FASTA has and how to rename. With ``allow_partial`` only a file none of whose chromosomes is in the
        FASTA is an error; the missing names are returned.
        """
        wanted = list(dict.fromkeys(chroms))
        missing = [c for c in wanted if c not in self]
        if not missing or (allow_partial and len(missing) < len(wanted)):
            return missing
        name = missing[0]
        other = _other_naming(name)
        if other in self:
            if name.startswith("chr"):
                fix = f"remove the 'chr' prefix in {source} (e.g. `sed 's/^chr//'`)"
            else:
                fix = f"add a 'chr' prefix in {source} (e.g. `sed 's/^/chr/'`)"
            raise InputError(
                f"chromosome naming mismatch: {source} has '{name}' but the FASTA {self.path.name} calls it "
                f"'{other}' (FASTA sequences: {self.describe_names()}); {fix}, or use a FASTA named like {source}"
            )
        raise InputError(
            f"chromosome '{name}' of {source} is not in the FASTA {self.path.name} (FASTA sequences: "
            f"{self.describe_names()}); use the FASTA of the assembly the coordinates refer to"
        )

    def fetch(self, chrom: str, start: int, end: int) -> tuple[str, int]:
        """Bases ``[start, end)`` (0-based; may run past either chromosome end) and the number of ``N`` pads."""
        lo, hi = max(start, 0), min(end, self.lengths[chrom])
        if hi <= lo:  # nothing of the window is on the chromosome
            return "N" * (end - start), end - start
        if self._pid != os.getpid():  # a forked worker must not share the parent's file position
            self._open()
        left, right = lo - start, end - hi
        seq = "N" * left + clean_sequence(self._fasta[chrom][lo:hi]) + "N" * right
        return seq, left + right

    def extract(self, chrom: str, start: int, end: int, strand: str = "+") -> tuple[str, int]:
        """Like :meth:`fetch`, reverse-complemented for ``strand == '-'``."""
        seq, padded = self.fetch(chrom, start, end)
        return (reverse_complement(seq) if strand == "-" else seq), padded

    def padding(self, chrom: str, start: int, end: int) -> int:
        """How many positions of ``[start, end)`` lie off the chromosome (no reading)."""
        length = self.lengths[chrom]
        return max(0, min(end, 0) - start) + max(0, end - max(start, length))


def _other_naming(name: str) -> str:
    special = {"chrM": "MT", "MT": "chrM", "M": "chrM"}
    if name in special:
        return special[name]
    return name[3:] if name.startswith("chr") else "chr" + name


# ---------------------------------------------------------------------------------------------------------------
# text input (BED, gz or not)


def open_text(path: str | os.PathLike[str], what: str) -> io.TextIOBase:
    """Open a plain or gzip-compressed text file, or raise :class:`InputError` saying why it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} file {path} does not exist")
    if path.is_dir():
        raise InputError(f"{what} path {path} is a directory, not a file")
    if is_gzip(path):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")  # type: ignore[arg-type]
    return open(path, encoding="utf-8")


@dataclass
class Bed:
    """Intervals of a BED file, in file order. ``columns`` maps a column name to one value per row (strings for
    every column but ``start``/``end``); ``lines`` holds the 1-based line number of each row."""

    path: Path
    columns: dict[str, list[Any]]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def chrom(self) -> list[str]:
        return self.columns["chrom"]

    @property
    def start(self) -> list[int]:
        return self.columns["start"]

    @property
    def end(self) -> list[int]:
        return self.columns["end"]

    @property
    def strand(self) -> list[str]:
        return [s if s in ("+", "-") else "." for s in self.columns.get("strand", ["."] * len(self))]

    def to_polars(self) -> Any:
        import polars as pl

        schema = {k: (pl.Int64 if k in ("start", "end") else pl.Utf8) for k in self.columns}
        return pl.DataFrame(self.columns, schema=schema)


def _column_name(i: int) -> str:
    return BED_NAMES[i] if i < len(BED_NAMES) else f"col{i + 1}"


def _parse_coord(value: str, what: str, where: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InputError(f"{where}: {what} {value!r} is not an integer (BED needs chrom, start, end)") from None
    if number < 0:
        raise InputError(f"{where}: {what} {number} is negative (BED coordinates are 0-based, >= 0)")
    return number


def read_bed(path: str | os.PathLike[str]) -> Bed:
    """Read a BED file (plain or gzip). See the module docstring for the accepted format.

    Raises:
        InputError: one line naming the file, the line number and what is wrong.
    """
    path = Path(path)
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        with open_text(path, "BED") as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.rstrip("\r\n")
                if not line.strip() or line.startswith(("#", "track", "browser")):
                    continue
                fields = line.split("\t") if "\t" in line else line.split()
                where = f"{path.name} line {lineno}"
                if len(fields) < 3:
                    raise InputError(
                        f"{where}: expected at least 3 tab-separated columns (chrom, start, end), found {len(fields)}"
                    )
                start = _parse_coord(fields[1], "start", where)
                end = _parse_coord(fields[2], "end", where)
                if start > end:
                    raise InputError(f"{where}: start {start} is greater than end {end}")
                if len(fields) >= 6 and fields[5] not in STRANDS:
                    raise InputError(f"{where}: strand (column 6) must be +, - or ., found {fields[5]!r}")
                fields[1], fields[2] = start, end  # type: ignore[call-overload]
                rows.append(fields)
                lines.append(lineno)
    except (UnicodeDecodeError, EOFError, OSError) as err:  # OSError includes gzip.BadGzipFile
        raise InputError(
            f"cannot read BED {path}: {type(err).__name__}: {err}; is it a (gzipped) text BED file?"
        ) from None
    if not rows:
        raise InputError(f"BED {path} has no intervals (it is empty or holds only header lines): nothing to do")
    width = max(len(r) for r in rows)
    columns: dict[str, list[Any]] = {
        _column_name(i): [r[i] if i < len(r) else None for r in rows] for i in range(width)
    }
    return Bed(path=path, columns=columns, lines=lines)


# ---------------------------------------------------------------------------------------------------------------
# windows


def resize(chrom: str, start: int, end: int, width: int) -> tuple[int, int]:
    """A ``width``-bp window centred on ``[start, end)`` (kipoiseq ``Interval.resize`` on genomic coordinates, so
    both strands get the same bases); may extend past the chromosome ends."""
    from kipoiseq import Interval

    window = Interval(chrom, int(start), int(end)).resize(int(width), use_strand=False)
    return int(window.start), int(window.end)


# ---------------------------------------------------------------------------------------------------------------
# VCF


@dataclass
class VariantRow:
    """One (split) VCF allele. ``pos`` is 1-based as in the VCF; ``allele`` is the ALT index (1 = first ALT)."""

    chrom: str
    pos: int
    id: str
    ref: str
    alt: str
    allele: int
    n_alts: int


def read_vcf(path: str | os.PathLike[str]) -> list[VariantRow]:
    """All records of a VCF (plain or gzip/bgzip), one row per ALT allele (multi-allelic records split).

    Raises:
        InputError: missing or unreadable file, no records.
    """
    import pysam

    path = Path(path)
    if not path.is_file():
        raise InputError(f"VCF file {path} does not exist")
    verbosity = pysam.set_verbosity(0)  # htslib warnings about headers would go straight to stderr
    try:
        try:
            vcf = pysam.VariantFile(str(path))
        except (ValueError, OSError) as err:
            raise InputError(f"cannot read VCF {path} ({err}); is it a (bgzipped) VCF with a #CHROM header?") from None
        rows = list(_iter_vcf(vcf, path))
    finally:
        pysam.set_verbosity(verbosity)
    if not rows:
        raise InputError(f"VCF {path} has no variant records: nothing to score")
    return rows


def _iter_vcf(vcf: Any, path: Path) -> Iterator[VariantRow]:
    with vcf:
        try:
            for rec in vcf:
                alts = rec.alts or (".",)
                for i, alt in enumerate(alts, start=1):
                    yield VariantRow(
                        chrom=rec.chrom,
                        pos=int(rec.pos),
                        id=rec.id or ".",
                        ref=(rec.ref or "").upper(),
                        alt=alt.upper() if alt and not alt.startswith("<") else alt,
                        allele=i,
                        n_alts=len(alts),
                    )
        except (ValueError, OSError) as err:
            raise InputError(f"cannot read VCF {path}: {err}") from None
