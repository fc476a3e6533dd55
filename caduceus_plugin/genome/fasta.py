"""FASTA access through pyfaidx: :class:`Genome`, plain or BGZF-compressed (``bgzip``).

The ``.fai`` (and ``.gzi``) index is built next to the file when missing. A plain-gzip FASTA is refused with a
message saying how to recompress it. Sequences are cleaned (:func:`caduceus_plugin.sequence.clean`: upper case,
every base other than A/C/G/T becomes ``N``). :meth:`Genome.check_chroms` detects the ``chr20`` vs ``20`` mismatch
and lists the FASTA's names in the message. :meth:`Genome.fetch` pads with ``N`` where a window runs off a
chromosome end, and :meth:`Genome.extract` reverse-complements ``-`` strand windows.

Besides: :func:`fasta_records` (every record in turn, e.g. of a small multi-record FASTA), and for writing a cache
copy, :func:`copy_fasta_renamed` and :func:`index_fasta` (a ``.fai`` written where asked, e.g. a temporary name).
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from caduceus_plugin.errors import InputError
from caduceus_plugin.fileio import atomic_write
from caduceus_plugin.genome.files import is_bgzf, is_gzip, require_file
from caduceus_plugin.sequence import clean, reverse_complement


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
        path = require_file(self.path, "FASTA")
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
        self._fasta = self._pyfaidx(path)
        if not is_gzip(path) and not self._index_fits(path):
            # pyfaidx rebuilds an index older than its FASTA, but a FASTA copied with its old mtime (cp -p, rsync
            # -a) over a newer one keeps a stale index: the offsets would point at the wrong bases
            self._fasta.close()
            if not os.access(path.parent, os.W_OK):
                raise InputError(
                    f"the index {fai.name} does not match FASTA {path} (another file's index?) and its folder is not "
                    f"writable: delete it and run `samtools faidx {path}` where you can write"
                )
            fai.unlink()
            self._fasta = self._pyfaidx(path)
        self.names: list[str] = list(self._fasta.keys())
        if not self.names:
            raise InputError(f"FASTA {path} contains no sequences")
        self.lengths: dict[str, int] = {n: int(self._fasta.faidx.index[n].rlen) for n in self.names}
        self._pid = os.getpid()

    @staticmethod
    def _pyfaidx(path: Path) -> Any:
        import pyfaidx

        if path.is_file() and path.stat().st_size == 0:
            raise InputError(f"FASTA {path} is empty (0 bytes): was it written completely? Pass the genome FASTA")
        try:
            return pyfaidx.Fasta(str(path), as_raw=True, build_index=True, rebuild=True)
        except Exception as err:  # pyfaidx raises many types for malformed input
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            if first.startswith("Duplicate key"):  # two records with one name: which one a region means is unknown
                raise InputError(
                    f"cannot read FASTA {path}: {first.split(' ', 2)[-1]} names two sequences; rename or drop one "
                    "(sequence names must be unique)"
                ) from None
            first = first.rstrip(". ")
            raise InputError(f"cannot read FASTA {path}: {first}; is it a valid (bgzip or plain) FASTA?") from None

    def _index_fits(self, path: Path) -> bool:
        """The ``.fai`` describes this (uncompressed) file: its last record ends where the file does."""
        index = self._fasta.faidx.index
        if not index:
            return True
        last = max(index.values(), key=lambda r: r.offset)
        if last.lenc <= 0:
            return True
        full, rest = divmod(int(last.rlen), int(last.lenc))
        end = int(last.offset) + full * int(last.lenb) + rest
        size = path.stat().st_size
        return end <= size <= end + int(last.lenb) + 1  # the last line's end-of-line, if any

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

    def check_bed(self, bed: Any) -> None:
        """:meth:`check_chroms` for a :class:`~caduceus_plugin.genome.bed.Bed`, then refuse an interval that starts
        at or past its chromosome's end: nothing of it is in the FASTA, which is what a BED of another assembly
        gives (an interval that only overhangs the end is a window near it: padded with N and flagged later).

        Raises:
            InputError: the first such line, with the chromosome's length.
        """
        source = bed.path.name
        self.check_chroms(bed.chrom, source=source)
        for chrom, start, end, line in zip(bed.chrom, bed.start, bed.end, bed.lines):
            if start > self.lengths[chrom] or (start == self.lengths[chrom] and end > start):
                raise InputError(
                    f"{source} line {line}: {chrom}:{start}-{end} starts past the end of {chrom} "
                    f"({self.lengths[chrom]:,} bp in the FASTA {self.path.name}): are the BED and the FASTA of the "
                    "same assembly?"
                )

    def fetch(self, chrom: str, start: int, end: int) -> tuple[str, int]:
        """Bases ``[start, end)`` (0-based; may run past either chromosome end) and the number of ``N`` pads."""
        lo, hi = max(start, 0), min(end, self.lengths[chrom])
        if hi <= lo:  # nothing of the window is on the chromosome
            return "N" * (end - start), end - start
        if self._pid != os.getpid():  # a forked worker must not share the parent's file position
            self._open()
        left, right = lo - start, end - hi
        seq = "N" * left + clean(self._fasta[chrom][lo:hi]) + "N" * right
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


def write_fasta(path: str | os.PathLike[str], records: Iterable[tuple[str, str]], width: int = 60) -> None:
    """Write ``(header, sequence)`` records as a plain FASTA (``width`` bases a line), atomically.

    ``header`` is the text after ``>`` (name and optional description).
    """
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="ascii") as fh:
            for header, seq in records:
                fh.write(f">{header}\n")
                for i in range(0, len(seq), width):
                    fh.write(seq[i : i + width] + "\n")

    atomic_write(path, write)


def fasta_records(path: str | os.PathLike[str]) -> Iterator[tuple[str, str]]:
    """Every record of a FASTA (plain or bgzip) in file order as ``(name, sequence)``, read one at a time through
    :class:`Genome` (so cleaned: upper case, other than A/C/G/T -> ``N``; the index is built when missing).

    Raises:
        InputError: as :class:`Genome`.
    """
    genome = Genome(path)
    try:
        for name in genome.names:
            yield name, genome.fetch(name, 0, genome.lengths[name])[0]
    finally:
        genome.close()


def copy_fasta_renamed(source: str | os.PathLike[str], target: str | os.PathLike[str], name: str) -> str:
    """Copy a FASTA (plain or gzip) to the plain FASTA ``target`` with its first record named ``name``; every other
    byte is copied as it is. Returns the first record's old header line (without ``>`` and the line end).

    Raises:
        InputError: ``source`` does not start with a ``>`` header line.
    """
    source = Path(source)
    opener: Any = gzip.open if is_gzip(source) else open
    with opener(source, "rb") as inp:
        header = inp.readline()
        if not header.startswith(b">"):
            raise InputError(f"{source} is not a FASTA file: it starts with {header[:20]!r}, not a >NAME line")
        with open(target, "wb") as out:
            out.write(b">" + name.encode() + b"\n")
            shutil.copyfileobj(inp, out, 1 << 22)
    return header[1:].rstrip(b"\r\n").decode("ascii", "replace")


def index_fasta(fasta: str | os.PathLike[str], index: str | os.PathLike[str]) -> dict[str, int]:
    """Write the ``.fai`` index of the plain FASTA ``fasta`` to ``index`` (pyfaidx; a file there is replaced).
    Returns each sequence's length, in file order."""
    import pyfaidx

    Path(index).unlink(missing_ok=True)  # an existing (e.g. empty temporary) file would be taken as the index
    faidx = pyfaidx.Faidx(str(fasta), indexname=str(index))
    try:
        return {name: int(rec.rlen) for name, rec in faidx.index.items()}
    finally:
        faidx.close()
