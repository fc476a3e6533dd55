"""VCF reading through pysam (:func:`read_vcf`): plain or gzip/bgzip; multi-allelic records are split into one row
per ALT allele. :func:`read_vcf_info` gives one INFO field per record; :func:`write_vcf` writes rows back as a
sites-only VCF."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caduceus_plugin.errors import InputError


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
    path = Path(path)
    if not path.is_file():
        raise InputError(f"VCF file {path} does not exist")
    with _variant_file(path) as vcf:
        rows = list(_iter_vcf(vcf, path))
    if not rows:
        raise InputError(f"VCF {path} has no variant records: nothing to score")
    return rows


def _iter_vcf(vcf: Any, path: Path) -> Iterator[VariantRow]:
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


@contextlib.contextmanager
def _variant_file(path: Path, mode: str = "r", **kwargs: Any) -> Iterator[Any]:
    """A pysam ``VariantFile`` with htslib's warnings silenced; a file that cannot be opened is an InputError."""
    import pysam

    verbosity = pysam.set_verbosity(0)
    try:
        try:
            vcf = pysam.VariantFile(str(path), mode, **kwargs)
        except (ValueError, OSError) as err:
            raise InputError(f"cannot read VCF {path} ({err}); is it a (bgzipped) VCF with a #CHROM header?") from None
        with vcf:
            yield vcf
    finally:
        pysam.set_verbosity(verbosity)


def read_vcf_info(path: str | os.PathLike[str], key: str) -> list[tuple[Any, ...]]:
    """The INFO field ``key`` of every record of a VCF (plain or gzip/bgzip), in file order: one tuple per record
    (not per split row of :func:`read_vcf`; a row's ``allele - 1`` indexes a per-ALT ``Number=A`` field), ``()``
    where the record lacks the field, ``None`` for a missing value (``.``).

    htslib holds ``Float`` fields in 32 bits; they come back as the float64 of their shortest decimal form, which is
    the number written in the file whenever that has at most 6 significant digits.

    Raises:
        InputError: missing or unreadable file, or ``key`` not declared in the header.
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise InputError(f"VCF file {path} does not exist")
    out: list[tuple[Any, ...]] = []
    with _variant_file(path) as vcf:
        if key not in vcf.header.info:
            raise InputError(f"VCF {path} declares no INFO field {key!r} in its header")
        is_float = vcf.header.info[key].type == "Float"
        try:
            for rec in vcf:
                value = rec.info.get(key)
                values = () if value is None else value if isinstance(value, tuple) else (value,)
                if is_float:
                    values = tuple(None if v is None else float(str(np.float32(v))) for v in values)
                out.append(values)
        except (ValueError, OSError) as err:
            raise InputError(f"cannot read VCF {path}: {err}") from None
    return out


def write_vcf(path: str | os.PathLike[str], rows: Sequence[VariantRow]) -> int:
    """Write ``rows`` as a sites-only VCF through pysam: one record per row (CHROM, POS, ID, REF, ALT; no QUAL,
    FILTER or INFO), contigs declared in order of first use; bgzip when ``path`` ends with ``.gz``, else plain text.
    Returns the number of records written."""
    import pysam

    header = pysam.VariantHeader()
    for chrom in dict.fromkeys(r.chrom for r in rows):
        header.contigs.add(chrom)
    mode = "wz" if str(path).endswith(".gz") else "w"
    with _variant_file(Path(path), mode, header=header) as vcf:
        for r in rows:
            alleles = (r.ref,) if r.alt in ("", ".") else (r.ref, r.alt)
            rec = vcf.new_record(contig=r.chrom, start=r.pos - 1, alleles=alleles, id=None if r.id == "." else r.id)
            vcf.write(rec)
    return len(rows)
